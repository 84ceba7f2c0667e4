package redisstream_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/adapters/redisstream"
	"github.com/choicesherpa/eventkit/deadletter"
	"github.com/choicesherpa/eventkit/deadletter/deadlettertest"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/internal/testinfra"
)

func newDLQStore(t *testing.T) (*redisstream.DeadLetterStore, string) {
	t.Helper()
	rdb, prefix := testinfra.Redis(t)
	s, err := redisstream.NewDeadLetterStore(rdb, &redisstream.DeadLetterConfig{KeyPrefix: prefix, ScanBatch: 7})
	require.NoError(t, err)
	return s, prefix
}

func TestDLQStoreConformance(t *testing.T) {
	t.Parallel()
	deadlettertest.RunStore(t, func(t *testing.T) deadletter.Store {
		s, _ := newDLQStore(t)
		return s
	})
}

func TestDLQStoreConfig(t *testing.T) {
	t.Parallel()
	rdb, prefix := testinfra.Redis(t)
	_, err := redisstream.NewDeadLetterStore(nil, nil)
	require.Error(t, err)
	_, err = redisstream.NewDeadLetterStore(rdb, &redisstream.DeadLetterConfig{ScanBatch: -1})
	require.Error(t, err)
	s, err := redisstream.NewDeadLetterStore(rdb, nil)
	require.NoError(t, err)
	require.Equal(t, redisstream.DefaultDeadLetterKeyPrefix, s.KeyPrefix())
	s, err = redisstream.NewDeadLetterStore(rdb, &redisstream.DeadLetterConfig{KeyPrefix: prefix + "{x}"})
	require.NoError(t, err)
	require.Equal(t, prefix+"{x}", s.KeyPrefix())
}

// Every key the store writes sits under its prefix and one hash tag (one
// Redis Cluster slot), and the store never closes the caller's client.
func TestDLQStoreKeysShareHashTag(t *testing.T) {
	t.Parallel()
	rdb, prefix := testinfra.Redis(t)
	s, err := redisstream.NewDeadLetterStore(rdb, &redisstream.DeadLetterConfig{KeyPrefix: prefix})
	require.NoError(t, err)
	require.Equal(t, prefix+"{dlq}", s.KeyPrefix())
	ctx := context.Background()
	rec := deadlettertest.NewRecord("dashboard", "session.created.v1", 1)
	require.NoError(t, s.Put(ctx, rec))
	require.NoError(t, s.MarkReplayed(ctx, rec.ID, time.Now()))
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 5, "record, all, handler, type and replayed indexes (the emptied dead index is gone): %v", keys)
	for _, k := range keys {
		require.True(t, strings.HasPrefix(k, prefix+"{dlq}:"), k)
	}
	n, err := rdb.ZCard(ctx, prefix+"{dlq}:idx:s:replayed").Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the entry moved from the dead index to the replayed one")
	require.NoError(t, s.Delete(ctx, rec.ID))
	keys, err = rdb.Keys(ctx, prefix+"*").Result()
	require.NoError(t, err)
	require.Empty(t, keys, "Delete leaves no index entries behind")
	require.NoError(t, rdb.Ping(ctx).Err(), "the client is still open")
}

// Q3 on the Redis store: replay keeps the id, a double replay applies once,
// a re-failure comes back with its replay count.
func TestDLQStoreQueueReplay(t *testing.T) {
	t.Parallel()
	s, _ := newDLQStore(t)
	ctx := context.Background()
	var applied, calls int
	failing := true
	rp, err := deadletter.NewHandlerReplayer(s, nil)
	require.NoError(t, err)
	seen := map[string]bool{}
	rp.Register("dashboard", dlqHandler(func(id string) error {
		calls++
		if failing {
			return dlqErrFailing
		}
		if !seen[id] {
			seen[id] = true
			applied++
		}
		return nil
	}))
	q, err := deadletter.NewQueue(s, rp, &deadletter.Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	rec := deadlettertest.NewRecord("dashboard", "session.created.v1", 1)
	require.NoError(t, s.Put(ctx, rec))

	got, err := q.Replay(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, deadletter.StatusDead, got.Status)
	require.Equal(t, 1, got.ReplayCount)
	require.Equal(t, 1, calls)
	depth, err := q.Depth(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, depth)

	failing = false
	for range 2 {
		got, err = q.Replay(ctx, rec.ID)
		require.NoError(t, err)
	}
	require.Equal(t, deadletter.StatusReplayed, got.Status)
	require.Equal(t, 3, got.ReplayCount)
	require.Equal(t, 1, applied)
	require.Equal(t, rec.EventID, got.EventID)
	depth, err = q.Depth(ctx)
	require.NoError(t, err)
	require.Zero(t, depth)
}

var dlqErrFailing = errors.New("downstream unavailable")

// dlqHandler adapts a function of the event id to an eventbus.Handler.
func dlqHandler(fn func(id string) error) eventbus.Handler {
	return eventbus.HandlerFunc(func(_ context.Context, env eventbus.Envelope) error {
		return fn(env.EventID.String())
	})
}

// beforeScriptPipeline runs fn once, just before the client's first
// pipeline of scripts (Purge's deletes; its scan pipelines are reads).
type beforeScriptPipeline struct {
	once sync.Once
	fn   func()
}

func (h *beforeScriptPipeline) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *beforeScriptPipeline) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *beforeScriptPipeline) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && cmds[0].Name() == "evalsha" {
			h.once.Do(h.fn)
		}
		return next(ctx, cmds)
	}
}

// A record that fails again between Purge's scan and its delete is a new
// failure: Purge leaves it (it no longer matches a purge of replayed ones).
func TestDLQStorePurgeKeepsARecordThatChangedAfterItMatched(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := testinfra.Redis(t)
	other, _ := testinfra.Redis(t)
	cfg := &redisstream.DeadLetterConfig{KeyPrefix: prefix}
	s, err := redisstream.NewDeadLetterStore(rdb, cfg)
	require.NoError(t, err)
	bus, err := redisstream.NewDeadLetterStore(other, cfg)
	require.NoError(t, err)
	rec := deadlettertest.NewRecord("h", "x.y.v1", 1)
	require.NoError(t, s.Put(ctx, rec))
	require.NoError(t, s.MarkReplayed(ctx, rec.ID, time.Now()))
	// The replayed event fails again and the bus writes it back, after the
	// purge's scan matched the replayed record and before it deletes.
	rdb.AddHook(&beforeScriptPipeline{fn: func() {
		again := rec
		again.Attempts, again.LastError, again.LastFailedAt = 1, "failed again after replay", time.Now()
		require.NoError(t, bus.Put(ctx, again))
	}})
	n, err := s.Purge(ctx, deadletter.Filter{Status: deadletter.StatusReplayed})
	require.NoError(t, err)
	require.Zero(t, n)
	got, err := s.Get(ctx, rec.ID)
	require.NoError(t, err, "the new failure is not lost")
	require.Equal(t, deadletter.StatusDead, got.Status)
	require.Equal(t, "failed again after replay", got.LastError)

	// Unchanged records are purged as before.
	n, err = s.Purge(ctx, deadletter.Filter{Status: deadletter.StatusDead})
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

// onCommand runs fn before the n-th command named name (not pipelined).
type onCommand struct {
	name string
	n    int
	seen int
	fn   func()
	mu   sync.Mutex
}

func (h *onCommand) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *onCommand) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *onCommand) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.mu.Lock()
		if cmd.Name() == h.name {
			h.seen++
			if h.seen == h.n {
				h.fn()
			}
		}
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}

// Records failing in the same microsecond are paged through without a gap
// even when one of them is deleted while the scan steps over their tie.
func TestDLQStoreListSkipsNothingWhenATieShrinks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := testinfra.Redis(t)
	cfg := &redisstream.DeadLetterConfig{KeyPrefix: prefix, ScanBatch: 1}
	s, err := redisstream.NewDeadLetterStore(rdb, cfg)
	require.NoError(t, err)
	other, _ := testinfra.Redis(t)
	admin, err := redisstream.NewDeadLetterStore(other, cfg)
	require.NoError(t, err)
	var ids []string
	for range 3 {
		rec := deadlettertest.NewRecord("h", "x.y.v1", 1) // one failure time for all
		require.NoError(t, s.Put(ctx, rec))
		ids = append(ids, rec.ID)
	}
	slices.Sort(ids)
	// Listed newest first, ties by descending id: ids[2], ids[1], ids[0].
	// ids[2] is deleted after it was listed, as the scan goes on.
	rdb.AddHook(&onCommand{name: "zrevrangebyscore", n: 3, fn: func() {
		require.NoError(t, admin.Delete(ctx, ids[2]))
	}})
	recs, next, err := s.List(ctx, deadletter.Filter{}, deadletter.Page{Limit: 10})
	require.NoError(t, err)
	require.Empty(t, next)
	var listed []string
	for _, r := range recs {
		listed = append(listed, r.ID)
	}
	require.Subset(t, listed, ids[:2], "records never deleted are all listed: %v", listed)
}

// Purge deletes while it scans, a batch at a time: every match goes, ties
// included, and nothing else.
func TestDLQStorePurgeAcrossBatchesAndTies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newDLQStore(t) // ScanBatch 7
	for i := range 25 {
		require.NoError(t, s.Put(ctx, deadlettertest.NewRecord("gone", "x.y.v1", i/3))) // ties of three
	}
	for i := range 5 {
		require.NoError(t, s.Put(ctx, deadlettertest.NewRecord("kept", "x.y.v1", i)))
	}
	n, err := s.Purge(ctx, deadletter.Filter{Handler: "gone"})
	require.NoError(t, err)
	require.Equal(t, 25, n)
	left, err := s.Count(ctx, deadletter.Filter{})
	require.NoError(t, err)
	require.Equal(t, 5, left)
	kept, err := s.Count(ctx, deadletter.Filter{Handler: "kept"})
	require.NoError(t, err)
	require.Equal(t, 5, kept)
}
