package redisstream

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultTrimBatch caps how many entries one length-target pass removes
// from one stream (TrimOptions.Batch).
const DefaultTrimBatch = 10_000

// TrimOptions configures Trim.
type TrimOptions struct {
	// MaxLen is the length target: keep at most this many newest entries,
	// and never fewer than every consumer group still needs. 0 removes
	// everything every group has acknowledged. A stream without groups
	// (broadcast only) is trimmed to MaxLen, and left alone when MaxLen is
	// 0. Defaults to 0.
	MaxLen int64
	// Approx trims with "~": Redis removes only whole internal nodes, which
	// is cheaper and may keep a few more entries. Defaults to false.
	Approx bool
	// Batch caps how many entries one pass removes per stream when MaxLen
	// is set (the rest goes on the next pass). Defaults to DefaultTrimBatch.
	Batch int64
	// Streams to trim. Defaults to every stream this bus has published to,
	// subscribed to or replayed into.
	Streams []string
}

// TrimResult reports one stream's trim.
type TrimResult struct {
	Stream string
	// MinID is the MINID used ("" when nothing was trimmed).
	MinID string
	// Removed is how many entries XTRIM removed.
	Removed int64
	// NoGroups is set when the stream has no consumer group (it is read
	// with XREAD only, as broadcast subscriptions do): only MaxLen trims it,
	// and with MaxLen 0 nothing is removed.
	NoGroups bool
}

// trimScript computes, atomically, the lowest id some group still needs
// (the smaller of its oldest pending entry and its last-delivered id: later
// entries are undelivered, and a group rewound with XGROUP SETID has its
// last-delivered id below its pending ones) and trims below the smaller of
// that and the length target's cut (a stream without groups has only the
// cut). Redis 7 has no group-aware trim; doing it in one script closes the
// race with a group being created or reading between the check and XTRIM.
var trimScript = redis.NewScript(`
local key = KEYS[1]
local maxlen = tonumber(ARGV[1])
local approx = ARGV[2] == '1'
local batch = tonumber(ARGV[3])
if redis.call('EXISTS', key) == 0 then return {0, '', 0} end
local groups = redis.call('XINFO', 'GROUPS', key)
local nogroups = 0
if #groups == 0 then
  -- Read only with XREAD (broadcast): no group to protect, and only the
  -- length target says what to keep.
  if maxlen <= 0 then return {0, '', 1} end
  nogroups = 1
end
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local safe = nil
for _, g in ipairs(groups) do
  local name, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i+1] elseif g[i] == 'last-delivered-id' then last = g[i+1] end
  end
  local cand = last
  local p = redis.call('XPENDING', key, name)
  if p[1] > 0 and less(p[2], cand) then cand = p[2] end
  if safe == nil or less(cand, safe) then safe = cand end
end
local minid = safe
if maxlen > 0 then
  local len = redis.call('XLEN', key)
  if len <= maxlen then return {0, '', nogroups} end
  local k = math.min(len - maxlen, batch)
  local r = redis.call('XRANGE', key, '-', '+', 'COUNT', k + 1)
  local cut = r[#r][1]
  if minid == nil or less(cut, minid) then minid = cut end
end
if minid == '0-0' then return {0, '', nogroups} end
local n
if approx then n = redis.call('XTRIM', key, 'MINID', '~', minid)
else n = redis.call('XTRIM', key, 'MINID', minid) end
return {n, minid, nogroups}
`)

// TrimStream trims stream without ever removing an entry some consumer
// group has not acknowledged (see TrimOptions). It works on any stream, not
// only this package's.
func TrimStream(ctx context.Context, rdb redis.UniversalClient, stream string, opts TrimOptions) (TrimResult, error) {
	res := TrimResult{Stream: stream}
	batch := opts.Batch
	if batch <= 0 {
		batch = DefaultTrimBatch
	}
	approx := "0"
	if opts.Approx {
		approx = "1"
	}
	v, err := trimScript.Run(ctx, rdb, []string{stream}, opts.MaxLen, approx, batch).Slice()
	if err != nil {
		return res, fmt.Errorf("redisstream: trim %s: %w", stream, err)
	}
	if len(v) != 3 {
		return res, fmt.Errorf("redisstream: trim %s: unexpected reply %v", stream, v)
	}
	res.Removed, _ = v[0].(int64)
	res.MinID, _ = v[1].(string)
	ng, _ := v[2].(int64)
	res.NoGroups = ng == 1
	return res, nil
}

// Trim trims the bus's streams safely (see TrimStream and TrimOptions).
func (b *Bus) Trim(ctx context.Context, opts TrimOptions) ([]TrimResult, error) {
	streams := opts.Streams
	if len(streams) == 0 {
		b.mu.Lock()
		streams = slices.Sorted(maps.Keys(b.streams))
		b.mu.Unlock()
	}
	var out []TrimResult
	var errs []error
	for _, st := range streams {
		r, err := TrimStream(ctx, b.rdb, st, opts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// RunTrimmer calls Trim every interval until ctx is done or the bus is
// closed, logging failures. It returns ctx's error or eventbus.ErrClosed.
func (b *Bus) RunTrimmer(ctx context.Context, interval time.Duration, opts TrimOptions) error {
	if interval <= 0 {
		return fmt.Errorf("%w: trim interval must be positive", ErrConfig)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-b.closing:
			return errClosed
		case <-t.C:
			tctx, cancel := context.WithTimeout(ctx, max(b.cfg.WriteTimeout, interval/2))
			res, err := b.Trim(tctx, opts)
			cancel()
			if err != nil {
				b.log.Warn("redisstream: trim failed", "err", err)
			}
			for _, r := range res {
				if r.Removed > 0 {
					b.log.Debug("redisstream: trimmed", "stream", r.Stream, "removed", r.Removed, "min_id", r.MinID)
				}
			}
		}
	}
}
