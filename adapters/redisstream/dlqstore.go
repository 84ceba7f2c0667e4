package redisstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/choicesherpa/eventkit/deadletter"
	"github.com/choicesherpa/eventkit/eventbus"
)

// Defaults of DeadLetterConfig.
const (
	// DefaultDeadLetterKeyPrefix is where the dead-letter store keeps its keys.
	// The braces are a Redis Cluster hash tag: every key of the store lives
	// in one slot, so its scripts may touch several of them.
	DefaultDeadLetterKeyPrefix = "{choice-sherpa:dlq}"
	// DefaultDeadLetterScanBatch is how many index entries List reads per round trip.
	DefaultDeadLetterScanBatch = 200
)

// DeadLetterConfig configures a DeadLetterStore. The zero value (or nil) is valid.
type DeadLetterConfig struct {
	// KeyPrefix starts every key of the store. It should contain a hash tag
	// ("{...}"); when it does not, "{dlq}" is appended so all keys share a
	// Redis Cluster slot. Defaults to DefaultDeadLetterKeyPrefix.
	KeyPrefix string
	// ScanBatch is how many index entries List, Count and Purge read per
	// round trip when a filter cannot be answered from one index alone.
	// Defaults to DefaultDeadLetterScanBatch.
	ScanBatch int
	// Now stamps records that arrive without LastFailedAt. Defaults to time.Now.
	Now func() time.Time
}

// DeadLetterStore is a deadletter.Store on Redis.
//
// Each record is a hash (<prefix>:r:<id>) whose fields hold the record's
// columns, the envelope and raw fields as JSON. Sorted sets scored by the
// last failure time in microseconds index the records: one over all of
// them (<prefix>:idx) and one per handler, event type and status
// (<prefix>:idx:h:<handler>, :t:<type>, :s:<status>). Put, MarkReplayed and
// Delete are Lua scripts, so each is atomic and the indexes never disagree
// with the records; Put is idempotent by record ID and merges as Store.Put
// documents. Times are kept to the microsecond.
//
// List walks the narrowest index that answers the filter (handler, else
// type, else status, else all) newest first, with ZREVRANGEBYSCORE over
// the failure-time bounds, and applies the rest of the filter to the
// records it reads. Cursors are (score, id) positions, so pages stay stable
// while records are added or removed.
//
// The store never closes the client it was given. It is safe for
// concurrent use.
type DeadLetterStore struct {
	rdb    redis.UniversalClient
	prefix string
	idx    string // all-records index; also the prefix of the other indexes
	batch  int
	now    func() time.Time
}

var _ deadletter.Store = (*DeadLetterStore)(nil)

// NewDeadLetterStore returns a store on rdb. cfg may be nil.
func NewDeadLetterStore(rdb redis.UniversalClient, cfg *DeadLetterConfig) (*DeadLetterStore, error) {
	if rdb == nil {
		return nil, errors.New("redisstream: NewDeadLetterStore needs a client")
	}
	var c DeadLetterConfig
	if cfg != nil {
		c = *cfg
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultDeadLetterKeyPrefix
	}
	if !dlqHasHashTag(c.KeyPrefix) {
		c.KeyPrefix += "{dlq}"
	}
	if c.ScanBatch == 0 {
		c.ScanBatch = DefaultDeadLetterScanBatch
	}
	if c.ScanBatch < 1 || c.ScanBatch > 10000 {
		return nil, fmt.Errorf("redisstream: dead-letter ScanBatch %d out of range [1, 10000]", c.ScanBatch)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &DeadLetterStore{rdb: rdb, prefix: c.KeyPrefix, idx: c.KeyPrefix + ":idx", batch: c.ScanBatch, now: c.Now}, nil
}

func dlqHasHashTag(s string) bool {
	i := strings.IndexByte(s, '{')
	return i >= 0 && strings.IndexByte(s[i+1:], '}') > 0
}

// KeyPrefix returns the prefix of every key the store uses.
func (s *DeadLetterStore) KeyPrefix() string { return s.prefix }

func (s *DeadLetterStore) recKey(id string) string { return s.prefix + ":r:" + id }

func (s *DeadLetterStore) handlerIdx(h string) string { return s.idx + ":h:" + h }
func (s *DeadLetterStore) typeIdx(t string) string    { return s.idx + ":t:" + t }
func (s *DeadLetterStore) statusIdx(st string) string { return s.idx + ":s:" + st }

// Hash field names.
const (
	dlqFID          = "id"
	dlqFHandler     = "handler"
	dlqFEventID     = "event_id"
	dlqFEventType   = "event_type"
	dlqFSource      = "source"
	dlqFSourceID    = "source_id"
	dlqFReason      = "reason"
	dlqFAttempts    = "attempts"
	dlqFLastError   = "last_error"
	dlqFFirstUS     = "first_us"
	dlqFLastUS      = "last_us"
	dlqFStatus      = "status"
	dlqFReplayCount = "replay_count"
	dlqFReplayedUS  = "replayed_us"
	dlqFEnvelope    = "envelope"
	dlqFRaw         = "raw"
)

// dlqPutScript writes or merges one record and its index entries.
//
// KEYS: 1 record hash, 2 all index, 3 handler index, 4 type index (or the
// all index when the type is empty), 5 dead-status index.
// ARGV: 1 index prefix, 2 id, 3 handler, 4 event id, 5 event type,
// 6 source, 7 source id, 8 reason, 9 attempts, 10 last error, 11 first us,
// 12 last us, 13 envelope JSON, 14 raw JSON, 15 replay count, 16 replayed us.
// Empty optional ARGVs (4, 5, 6, 13, 14, 16) keep what is stored. Indexes of
// a previous handler, type or status are computed from ARGV[1]; they share
// the hash tag, hence the slot.
var dlqPutScript = redis.NewScript(`
local rec, p, id = KEYS[1], ARGV[1], ARGV[2]
local old = redis.call('HMGET', rec, 'handler', 'event_type', 'status')
local etype = ARGV[5]
if old[1] then
  if etype == '' and old[2] then etype = old[2] end
  if old[1] ~= ARGV[3] then redis.call('ZREM', p .. ':h:' .. old[1], id) end
  if old[2] and old[2] ~= '' and old[2] ~= etype then redis.call('ZREM', p .. ':t:' .. old[2], id) end
  if old[3] and old[3] ~= 'dead' then redis.call('ZREM', p .. ':s:' .. old[3], id) end
else
  redis.call('HSET', rec, 'id', id, 'first_us', ARGV[11], 'replay_count', ARGV[15])
  if ARGV[16] ~= '' then redis.call('HSET', rec, 'replayed_us', ARGV[16]) end
end
redis.call('HSET', rec, 'handler', ARGV[3], 'event_type', etype, 'source_id', ARGV[7], 'reason', ARGV[8],
  'attempts', ARGV[9], 'last_error', ARGV[10], 'last_us', ARGV[12], 'status', 'dead')
if ARGV[4] ~= '' then redis.call('HSET', rec, 'event_id', ARGV[4]) end
if ARGV[6] ~= '' then redis.call('HSET', rec, 'source', ARGV[6]) end
if ARGV[13] ~= '' then redis.call('HSET', rec, 'envelope', ARGV[13]) end
if ARGV[14] ~= '' then redis.call('HSET', rec, 'raw', ARGV[14]) end
redis.call('ZADD', KEYS[2], ARGV[12], id)
redis.call('ZADD', KEYS[3], ARGV[12], id)
if etype ~= '' then redis.call('ZADD', p .. ':t:' .. etype, ARGV[12], id) end
redis.call('ZADD', KEYS[5], ARGV[12], id)
return 1
`)

// dlqMarkScript marks a record replayed. KEYS: 1 record, 2 replayed-status
// index. ARGV: 1 index prefix, 2 id, 3 replay time us. Returns 0 if absent.
var dlqMarkScript = redis.NewScript(`
local old = redis.call('HMGET', KEYS[1], 'handler', 'status', 'last_us')
if not old[1] then return 0 end
if old[2] ~= 'replayed' then
  if old[2] then redis.call('ZREM', ARGV[1] .. ':s:' .. old[2], ARGV[2]) end
  redis.call('ZADD', KEYS[2], old[3], ARGV[2])
end
redis.call('HSET', KEYS[1], 'status', 'replayed', 'replayed_us', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'replay_count', 1)
return 1
`)

// dlqDeleteScript removes a record and its index entries. KEYS: 1 record,
// 2 all index. ARGV: 1 index prefix, 2 id, and optionally 3 status and
// 4 last failure us the record must still have (Purge deletes only the
// version it matched: a failure written since is not lost). Returns 0 if
// absent or changed.
var dlqDeleteScript = redis.NewScript(`
local old = redis.call('HMGET', KEYS[1], 'handler', 'event_type', 'status', 'last_us')
if not old[1] then return 0 end
if ARGV[3] and (old[3] ~= ARGV[3] or old[4] ~= ARGV[4]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', ARGV[1] .. ':h:' .. old[1], ARGV[2])
if old[2] and old[2] ~= '' then redis.call('ZREM', ARGV[1] .. ':t:' .. old[2], ARGV[2]) end
if old[3] then redis.call('ZREM', ARGV[1] .. ':s:' .. old[3], ARGV[2]) end
return 1
`)

// dlqMicros is t in microseconds since the epoch, rounded up, so that for a
// stored (whole-microsecond) time x: x >= t  <=>  micros(x) >= dlqMicros(t).
func dlqMicros(t time.Time) int64 {
	us := t.UnixMicro()
	if t.Sub(time.UnixMicro(us)) > 0 {
		us++
	}
	return us
}

// Put implements deadletter.Store.
func (s *DeadLetterStore) Put(ctx context.Context, rec deadletter.Record) error {
	rec, err := deadletter.Normalize(rec, s.now())
	if err != nil {
		return err
	}
	var envJSON, rawJSON, replayedUS string
	if rec.Envelope != nil {
		b, err := json.Marshal(rec.Envelope)
		if err != nil {
			return fmt.Errorf("redisstream: dead-letter put %q: encode envelope: %w", rec.ID, err)
		}
		envJSON = string(b)
	}
	if rec.Raw != nil {
		b, err := json.Marshal(rec.Raw)
		if err != nil {
			return fmt.Errorf("redisstream: dead-letter put %q: encode raw: %w", rec.ID, err)
		}
		rawJSON = string(b)
	}
	if rec.ReplayedAt != nil {
		replayedUS = strconv.FormatInt(rec.ReplayedAt.UnixMicro(), 10)
	}
	typeKey := s.idx
	if rec.EventType != "" {
		typeKey = s.typeIdx(rec.EventType)
	}
	keys := []string{s.recKey(rec.ID), s.idx, s.handlerIdx(rec.Handler), typeKey, s.statusIdx(deadletter.StatusDead)}
	err = dlqPutScript.Run(ctx, s.rdb, keys,
		s.idx, rec.ID, rec.Handler, rec.EventID, rec.EventType,
		rec.Source, rec.SourceID, rec.Reason, rec.Attempts, rec.LastError,
		rec.FirstFailedAt.UnixMicro(), rec.LastFailedAt.UnixMicro(),
		envJSON, rawJSON, rec.ReplayCount, replayedUS,
	).Err()
	if err != nil {
		return fmt.Errorf("redisstream: dead-letter put %q: %w", rec.ID, err)
	}
	return nil
}

// Get implements deadletter.Store.
func (s *DeadLetterStore) Get(ctx context.Context, id string) (deadletter.Record, error) {
	m, err := s.rdb.HGetAll(ctx, s.recKey(id)).Result()
	if err != nil {
		return deadletter.Record{}, fmt.Errorf("redisstream: dead-letter get %q: %w", id, err)
	}
	if len(m) == 0 {
		return deadletter.Record{}, fmt.Errorf("%w: %q", deadletter.ErrNotFound, id)
	}
	return dlqDecode(id, m)
}

func dlqDecode(id string, m map[string]string) (deadletter.Record, error) {
	atoi := func(k string) (int64, error) {
		v, ok := m[k]
		if !ok || v == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("redisstream: dead-letter record %q: field %s: %w", id, k, err)
		}
		return n, nil
	}
	rec := deadletter.Record{
		ID:        id,
		EventID:   m[dlqFEventID],
		EventType: m[dlqFEventType],
		Handler:   m[dlqFHandler],
		Source:    m[dlqFSource],
		SourceID:  m[dlqFSourceID],
		Reason:    m[dlqFReason],
		LastError: m[dlqFLastError],
		Status:    m[dlqFStatus],
	}
	var nums [5]int64
	for i, k := range []string{dlqFAttempts, dlqFFirstUS, dlqFLastUS, dlqFReplayCount, dlqFReplayedUS} {
		n, err := atoi(k)
		if err != nil {
			return deadletter.Record{}, err
		}
		nums[i] = n
	}
	rec.Attempts = int(nums[0])
	rec.FirstFailedAt = time.UnixMicro(nums[1]).UTC()
	rec.LastFailedAt = time.UnixMicro(nums[2]).UTC()
	rec.ReplayCount = int(nums[3])
	if v := m[dlqFReplayedUS]; v != "" {
		t := time.UnixMicro(nums[4]).UTC()
		rec.ReplayedAt = &t
	}
	if v := m[dlqFEnvelope]; v != "" {
		var env eventbus.Envelope
		if err := json.Unmarshal([]byte(v), &env); err != nil {
			return deadletter.Record{}, fmt.Errorf("redisstream: dead-letter record %q: envelope: %w", id, err)
		}
		rec.Envelope = &env
	}
	if v := m[dlqFRaw]; v != "" {
		if err := json.Unmarshal([]byte(v), &rec.Raw); err != nil {
			return deadletter.Record{}, fmt.Errorf("redisstream: dead-letter record %q: raw: %w", id, err)
		}
	}
	return rec, nil
}

// indexFor picks the narrowest single index for f and reports whether the
// index and the time bounds alone answer f (no other field to check).
func (s *DeadLetterStore) indexFor(f deadletter.Filter) (key string, exact bool) {
	fields := 0
	for _, v := range []string{f.Handler, f.EventType, f.Status} {
		if v != "" {
			fields++
		}
	}
	switch {
	case f.Handler != "":
		key = s.handlerIdx(f.Handler)
	case f.EventType != "":
		key = s.typeIdx(f.EventType)
	case f.Status != "":
		key = s.statusIdx(f.Status)
	default:
		key = s.idx
	}
	return key, fields <= 1
}

// dlqBounds renders f's time bounds as ZRANGEBYSCORE min / max.
func dlqBounds(f deadletter.Filter) (minS, maxS string, maxUS int64, maxSet bool) {
	minS, maxS = "-inf", "+inf"
	if !f.FailedAfter.IsZero() {
		minS = strconv.FormatInt(dlqMicros(f.FailedAfter), 10)
	}
	if !f.FailedBefore.IsZero() {
		maxUS, maxSet = dlqMicros(f.FailedBefore), true
		maxS = "(" + strconv.FormatInt(maxUS, 10)
	}
	return minS, maxS, maxUS, maxSet
}

// dlqHit is a matching record and its index score.
type dlqHit struct {
	rec   deadletter.Record
	score int64
}

// scan calls fn with the records matching f, newest first, strictly after
// the cursor position (when hasCur), until fn returns false or the index
// is exhausted.
func (s *DeadLetterStore) scan(ctx context.Context, f deadletter.Filter, hasCur bool, curScore int64, curID string, fn func(dlqHit) bool) error {
	key, _ := s.indexFor(f)
	minS, maxS, maxUS, maxSet := dlqBounds(f)
	if hasCur && (!maxSet || curScore < maxUS) {
		maxS = strconv.FormatInt(curScore, 10)
	}
	// visit reads the records of one index batch and calls fn with those
	// that match, reporting whether fn wants more.
	visit := func(zs []redis.Z) (bool, error) {
		type cand struct {
			id    string
			score int64
		}
		cands := make([]cand, 0, len(zs))
		for _, z := range zs {
			id, _ := z.Member.(string)
			sc := int64(z.Score)
			if hasCur && sc == curScore && id >= curID {
				continue // at or before the cursor
			}
			cands = append(cands, cand{id, sc})
		}
		for len(cands) > 0 {
			chunk := cands[:min(len(cands), s.batch)]
			cands = cands[len(chunk):]
			pipe := s.rdb.Pipeline()
			cmds := make([]*redis.MapStringStringCmd, len(chunk))
			for i, c := range chunk {
				cmds[i] = pipe.HGetAll(ctx, s.recKey(c.id))
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return false, fmt.Errorf("redisstream: dead-letter list: %w", err)
			}
			for i, c := range chunk {
				m := cmds[i].Val()
				if len(m) == 0 {
					continue // deleted since the index was read
				}
				rec, err := dlqDecode(c.id, m)
				if err != nil {
					return false, err
				}
				if f.Match(rec) && !fn(dlqHit{rec: rec, score: c.score}) {
					return false, nil
				}
			}
		}
		return true, nil
	}
	for {
		zs, err := s.rdb.ZRevRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Min: minS, Max: maxS, Count: int64(s.batch)}).Result()
		if err != nil {
			return fmt.Errorf("redisstream: dead-letter list: %w", err)
		}
		if len(zs) == 0 {
			return nil
		}
		if hasCur && int64(zs[len(zs)-1].Score) == curScore {
			// The whole batch ties with the cursor's score: read that
			// score's entries at once (a batch of records failing in one
			// microsecond is rare). Stepping with an OFFSET instead would
			// skip an entry when one before it is deleted meanwhile.
			score := strconv.FormatInt(curScore, 10)
			if zs, err = s.rdb.ZRevRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Min: score, Max: score}).Result(); err != nil {
				return fmt.Errorf("redisstream: dead-letter list: %w", err)
			}
			if more, err := visit(zs); err != nil || !more {
				return err
			}
			// Then strictly older entries.
			hasCur, maxS = false, "("+score
			continue
		}
		if more, err := visit(zs); err != nil || !more {
			return err
		}
		if len(zs) < s.batch {
			return nil
		}
		// Continue from the last entry read: same score, smaller ids, then older.
		last := zs[len(zs)-1]
		lastID, _ := last.Member.(string)
		hasCur, curScore, curID = true, int64(last.Score), lastID
		maxS = strconv.FormatInt(curScore, 10)
	}
}

// List implements deadletter.Store.
func (s *DeadLetterStore) List(ctx context.Context, f deadletter.Filter, p deadletter.Page) ([]deadletter.Record, string, error) {
	var (
		hasCur   bool
		curScore int64
		curID    string
	)
	if p.Cursor != "" {
		k, id, err := deadletter.DecodeCursor(p.Cursor)
		if err != nil {
			return nil, "", err
		}
		hasCur, curScore, curID = true, k, id
	}
	limit := p.Limit
	if limit <= 0 {
		limit = deadletter.DefaultPageSize
	}
	hits := make([]dlqHit, 0, min(limit+1, 1024))
	err := s.scan(ctx, f, hasCur, curScore, curID, func(h dlqHit) bool {
		hits = append(hits, h)
		return len(hits) <= limit
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(hits) > limit {
		hits = hits[:limit]
		last := hits[limit-1]
		next = deadletter.EncodeCursor(last.score, last.rec.ID)
	}
	out := make([]deadletter.Record, len(hits))
	for i, h := range hits {
		out[i] = h.rec
	}
	return out, next, nil
}

// MarkReplayed implements deadletter.Store.
func (s *DeadLetterStore) MarkReplayed(ctx context.Context, id string, at time.Time) error {
	n, err := dlqMarkScript.Run(ctx, s.rdb, []string{s.recKey(id), s.statusIdx(deadletter.StatusReplayed)},
		s.idx, id, at.UnixMicro()).Int()
	if err != nil {
		return fmt.Errorf("redisstream: dead-letter mark %q replayed: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %q", deadletter.ErrNotFound, id)
	}
	return nil
}

// Delete implements deadletter.Store.
func (s *DeadLetterStore) Delete(ctx context.Context, id string) error {
	n, err := dlqDeleteScript.Run(ctx, s.rdb, []string{s.recKey(id), s.idx}, s.idx, id).Int()
	if err != nil {
		return fmt.Errorf("redisstream: dead-letter delete %q: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %q", deadletter.ErrNotFound, id)
	}
	return nil
}

// Purge implements deadletter.Store. It deletes in batches; records added
// while it runs may or may not be removed, and a record that changed after
// it matched (a new failure, a replay) is left alone.
func (s *DeadLetterStore) Purge(ctx context.Context, f deadletter.Filter) (int, error) {
	// Make sure the script is loaded so the pipelined EVALSHAs succeed.
	if err := dlqDeleteScript.Load(ctx, s.rdb).Err(); err != nil {
		return 0, fmt.Errorf("redisstream: dead-letter purge: %w", err)
	}
	// Delete a batch at a time while scanning, so memory stays bounded.
	// The scan goes on from its last position, not an offset, so the
	// deletes do not make it skip anything.
	type version struct {
		id, status string
		lastUS     int64
	}
	matched := make([]version, 0, s.batch)
	purged := 0
	flush := func() error {
		if len(matched) == 0 {
			return nil
		}
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(matched))
		for i, v := range matched {
			cmds[i] = dlqDeleteScript.EvalSha(ctx, pipe, []string{s.recKey(v.id), s.idx}, s.idx, v.id, v.status, strconv.FormatInt(v.lastUS, 10))
		}
		matched = matched[:0]
		_, err := pipe.Exec(ctx)
		for _, c := range cmds {
			if n, _ := c.Int(); n == 1 {
				purged++
			}
		}
		if err != nil {
			return fmt.Errorf("redisstream: dead-letter purge: %w", err)
		}
		return nil
	}
	var flushErr error
	err := s.scan(ctx, f, false, 0, "", func(h dlqHit) bool {
		matched = append(matched, version{h.rec.ID, h.rec.Status, h.score})
		if len(matched) == s.batch {
			flushErr = flush()
		}
		return flushErr == nil
	})
	if err == nil {
		err = flushErr
	}
	if err == nil {
		err = flush()
	}
	return purged, err
}

// Count implements deadletter.Store. A filter on at most one of handler,
// type and status (plus time bounds) is one ZCOUNT; others scan.
func (s *DeadLetterStore) Count(ctx context.Context, f deadletter.Filter) (int, error) {
	if key, exact := s.indexFor(f); exact {
		minS, maxS, _, _ := dlqBounds(f)
		n, err := s.rdb.ZCount(ctx, key, minS, maxS).Result()
		if err != nil {
			return 0, fmt.Errorf("redisstream: dead-letter count: %w", err)
		}
		return int(n), nil
	}
	n := 0
	err := s.scan(ctx, f, false, 0, "", func(dlqHit) bool { n++; return true })
	return n, err
}
