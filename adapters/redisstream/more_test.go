package redisstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/deadletter"
	"github.com/choicesherpa/eventkit/eventbus"
)

// One stream per event type: a subscription reads the streams of its types
// (and its replay stream) in one XREADGROUP, re-reads its pending entries
// from every stream, and other types' streams are never touched.
func TestStreamPerType(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.StreamPerType = true
	c.Consumer = "per-type"
	b := f.bus(t, c)
	_, err := b.Subscribe(ctx, "all", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { return nil }))
	require.ErrorIs(t, err, ErrConfig, "per-type streams need explicit types")

	a := mkEnvs(t, 20)
	other := make([]eventbus.Envelope, 20)
	for i := range other {
		other[i] = mkEnvType(t, "other.happened.v1", i, "o")
	}
	both := newRecorder(40, nil)
	onlyA := newRecorder(20, nil)
	_, err = b.Subscribe(ctx, "both", both, testType, "other.happened.v1")
	require.NoError(t, err)
	_, err = b.Subscribe(ctx, "only-a", onlyA, testType)
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, a[:10]...))
	require.NoError(t, b.Publish(ctx, other...))
	require.NoError(t, b.Publish(ctx, a[10:]...))
	both.wait(t, 10*time.Second)
	onlyA.wait(t, 10*time.Second)
	for _, e := range other {
		require.NotContains(t, onlyA.calls, e.EventID)
	}
	sA, sO := b.StreamFor(testType), b.StreamFor("other.happened.v1")
	require.NotEqual(t, sA, sO)
	n, err := f.rdb.XLen(ctx, sA).Result()
	require.NoError(t, err)
	require.EqualValues(t, 20, n)
	requirePendingZero(t, f.rdb, sA, "both")
	requirePendingZero(t, f.rdb, sO, "both")
	_, err = f.rdb.XInfoGroups(ctx, sO).Result()
	require.NoError(t, err)
	groups, _ := f.rdb.XInfoGroups(ctx, sO).Result()
	for _, g := range groups {
		require.NotEqual(t, "only-a", g.Name, "no group on streams of types it does not want")
	}

	// Own pending entries are re-read from every stream.
	require.NoError(t, b.Close())
	fresh := mkEnvType(t, "other.happened.v1", 99, "o")
	pub := f.bus(t, c)
	require.NoError(t, pub.Publish(ctx, fresh))
	res, err := f.rdb.XReadGroup(ctx, xreadArgs("both", "per-type", sO)).Result()
	require.NoError(t, err)
	require.Len(t, res[0].Messages, 1)
	c2 := *c
	c2.MinIdle = time.Hour
	b2 := f.bus(t, &c2)
	again := newRecorder(1, nil)
	_, err = b2.Subscribe(ctx, "both", again, testType, "other.happened.v1")
	require.NoError(t, err)
	again.wait(t, 10*time.Second)
	require.Contains(t, again.ok, fresh.EventID)
	requirePendingZero(t, f.rdb, sO, "both")
}

// Hooks see publish, deliver, ack, fail, retry and dead-letter.
func TestHooks(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	var publish, deliver, ack, fail, retry, dead atomic.Int64
	var mu sync.Mutex
	var retryAttempts []int
	c := f.config()
	c.MaxDeliveries = 3
	c.Hooks = &eventbus.Hooks{
		OnPublish: func(_ context.Context, _ eventbus.Envelope, err error) {
			if err == nil {
				publish.Add(1)
			}
		},
		OnDeliver: func(context.Context, string, eventbus.Envelope) { deliver.Add(1) },
		OnAck:     func(context.Context, string, eventbus.Envelope) { ack.Add(1) },
		OnFail:    func(context.Context, string, eventbus.Envelope, error) { fail.Add(1) },
		OnRetry: func(_ context.Context, _ string, _ eventbus.Envelope, attempt int, delay time.Duration, _ error) {
			mu.Lock()
			retryAttempts = append(retryAttempts, attempt)
			mu.Unlock()
			retry.Add(1)
		},
		OnDeadLetter: func(context.Context, string, eventbus.Envelope, error) { dead.Add(1) },
	}
	b := f.bus(t, c)
	good, bad := mkEnv(t, 1, "a"), mkEnv(t, 2, "b")
	_, err := b.Subscribe(ctx, "g", eventbus.HandlerFunc(func(_ context.Context, env eventbus.Envelope) error {
		if env.EventID == bad.EventID {
			return errors.New("no")
		}
		return nil
	}))
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, good, bad))
	eventually(t, 10*time.Second, func() bool { return dead.Load() == 1 && ack.Load() == 1 }, "hooks")
	require.EqualValues(t, 2, publish.Load())
	require.EqualValues(t, 4, deliver.Load())
	require.EqualValues(t, 3, fail.Load())
	require.EqualValues(t, 2, retry.Load())
	mu.Lock()
	require.Equal(t, []int{1, 2}, retryAttempts, "retries carry the delivery count")
	mu.Unlock()
	requirePendingZero(t, f.rdb, f.stream, "g")
	eventually(t, 5*time.Second, func() bool { st, _ := b.Stats(ctx); return st.Acked == 2 }, "the good entry and the dead-lettered one are acked")
	st, err := b.Stats(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, st.DeadLettered)
	require.Len(t, st.Streams, 2) // the stream and g's replay stream
	for _, s := range st.Streams {
		if s.Stream == f.stream {
			require.Len(t, s.Groups, 1)
			require.Zero(t, s.Groups[0].Pending)
			require.Zero(t, s.Groups[0].Lag)
		}
	}
}

func TestSubscribeValidation(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	b := f.bus(t, nil)
	h := eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { return nil })
	_, err := b.Subscribe(ctx, "", h)
	require.Error(t, err)
	_, err = b.Subscribe(ctx, "g", nil)
	require.Error(t, err)
	_, err = b.Subscribe(ctx, "g", h, "Not A Type")
	require.ErrorIs(t, err, eventbus.ErrInvalidEnvelope)
	s, err := b.Subscribe(ctx, "g", h)
	require.NoError(t, err)
	_, err = b.Subscribe(ctx, "g", h)
	require.ErrorIs(t, err, eventbus.ErrDuplicateSubscription)
	require.Equal(t, "g", s.Name())
	require.NoError(t, s.Close())
	s2, err := b.Subscribe(ctx, "g", h)
	require.NoError(t, err, "the name is free again after Close")
	cctx, cancel := context.WithCancel(ctx)
	s3, err := b.Subscribe(cctx, "h", h)
	require.NoError(t, err)
	cancel()
	eventually(t, 5*time.Second, func() bool {
		_, err := b.Subscribe(ctx, "h", h)
		return err == nil
	}, "ctx cancel closes the subscription")
	require.NoError(t, s3.Close())
	require.NoError(t, b.Close())
	require.NoError(t, s2.Close())
	_, err = b.Subscribe(ctx, "x", h)
	require.ErrorIs(t, err, eventbus.ErrClosed)
}

// RunTrimmer trims periodically and stops with ctx.
func TestRunTrimmer(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	b := f.bus(t, nil)
	rec := newRecorder(200, nil)
	_, err := b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, mkEnvs(t, 200)...))
	rec.wait(t, 10*time.Second)
	requirePendingZero(t, f.rdb, f.stream, "g")
	tctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.RunTrimmer(tctx, 20*time.Millisecond, TrimOptions{MaxLen: 50}) }()
	eventually(t, 5*time.Second, func() bool { n, _ := f.rdb.XLen(ctx, f.stream).Result(); return n == 50 }, "trimmed to 50")
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.ErrorIs(t, b.RunTrimmer(ctx, 0, TrimOptions{}), ErrConfig)
	n, err := f.dlq.Count(ctx, deadletter.Filter{})
	require.NoError(t, err)
	require.Zero(t, n)
}

// Bus.Close while Subscribe is still starting: no crash, no hang, and the
// subscription either started (and Close stopped it) or failed with
// ErrClosed. Before, Close could reach a half-built subscription.
func TestCloseDuringSubscribe(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for i := range 30 {
		b, err := New(f.rdb, f.config())
		require.NoError(t, err)
		errc := make(chan error, 2)
		go func() {
			_, err := b.Subscribe(context.Background(), "g"+strconv.Itoa(i), eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { return nil }))
			errc <- err
		}()
		go func() {
			_, err := b.SubscribeBroadcast(context.Background(), "b"+strconv.Itoa(i), eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { return nil }))
			errc <- err
		}()
		if i%2 == 1 {
			time.Sleep(time.Duration(i) * 100 * time.Microsecond)
		}
		closed := make(chan error, 1)
		go func() { closed <- b.Close() }()
		select {
		case err := <-closed:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Fatalf("round %d: Close hung", i)
		}
		for range 2 {
			if err := <-errc; err != nil {
				require.ErrorIs(t, err, eventbus.ErrClosed, "round %d", i)
			}
		}
		b.mu.Lock()
		require.Empty(t, b.subs, "round %d: a subscription outlived Close", i)
		b.mu.Unlock()
	}
}

// Entries waiting for a dead-letter store that is missing (or down) stay
// pending without holding worker slots: the subscription goes on handling
// the rest. Before, each held its slot and Concurrency+Buffer of them
// stalled the subscription for good.
func TestDeadLetterStoreMissingDoesNotStall(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.DeadLetters = nil
	c.Concurrency, c.Buffer = 2, 3
	b := f.bus(t, c)
	for i := range 5 {
		require.NoError(t, f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: f.stream, Values: []any{FieldType, testType, FieldID, "x" + strconv.Itoa(i), FieldData, "{not json"}}).Err())
	}
	valid := mkEnvs(t, 10)
	require.NoError(t, b.Publish(ctx, valid...))
	rec := newRecorder(len(valid), nil)
	_, err := b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	rec.wait(t, 10*time.Second)
	eventually(t, 5*time.Second, func() bool { return pendingCount(t, f.rdb, f.stream, "g") == 5 }, "the valid entries acked, the malformed ones still pending")
}

// Concurrent Publish calls share pipelines.
func TestConcurrentPublishesCoalesce(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	b := f.bus(t, nil)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				if err := b.Publish(ctx, mkEnv(t, w*100+i, "k")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	published, pipelines := b.counters.published.Load(), b.counters.pipelines.Load()
	require.EqualValues(t, 1600, published)
	require.GreaterOrEqual(t, float64(published)/float64(pipelines), 1.5, "%d entries in %d pipelines", published, pipelines)
}

// A failing entry is redelivered after Retry's backoff, growing with its
// delivery count.
func TestRetryBacksOff(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.Retry = eventbus.Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: -1}
	b := f.bus(t, c)
	var mu sync.Mutex
	var at []time.Time
	rec := newRecorder(1, func(_ context.Context, _ eventbus.Envelope, call int) error {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		if call < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	sub, err := b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, mkEnv(t, 1, "k")))
	rec.wait(t, 10*time.Second)
	// The failure time kept for a dead-letter record goes with the ack.
	eventually(t, 5*time.Second, func() bool { return failureTimesKept(sub) == 0 }, "failure time kept after the ack")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, at, 3)
	require.GreaterOrEqual(t, at[1].Sub(at[0]), 190*time.Millisecond, "first retry after Initial")
	require.GreaterOrEqual(t, at[2].Sub(at[1]), 380*time.Millisecond, "second after twice that")
}

// COUNT applies to each stream: a read over several streams (one per event
// type, or the main and the replay stream) can return more entries than
// the slots it took. The slots must cover them, or a release blocks for
// good and Close waits out its ShutdownTimeout (or hangs).
func TestReadOverSeveralStreamsKeepsSlotsBalanced(t *testing.T) {
	t.Parallel()
	for _, perType := range []bool{true, false} {
		t.Run(fmt.Sprintf("StreamPerType=%v", perType), func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			ctx := ctxT(t)
			c := f.config()
			c.StreamPerType, c.Concurrency, c.Buffer, c.Count = perType, 1, -1, 1
			c.ShutdownTimeout = 5 * time.Second
			b := f.bus(t, c)
			const tA, tB = "a.happened.v1", "b.happened.v1"
			types := []string{tA}
			if perType {
				types = append(types, tB)
				require.NoError(t, b.Publish(ctx, mkEnvType(t, tA, 1, "k1"), mkEnvType(t, tB, 2, "k2")))
			} else {
				e := mkEnvType(t, tA, 2, "k2")
				require.NoError(t, b.Publish(ctx, mkEnvType(t, tA, 1, "k1")))
				require.NoError(t, b.Replay(ctx, deadletter.Record{ID: "r", Handler: "g", Envelope: &e}))
			}
			rec := newRecorder(2, nil)
			sub, err := b.Subscribe(ctx, "g", rec, types...)
			require.NoError(t, err)
			rec.wait(t, 10*time.Second)
			start := time.Now()
			require.NoError(t, sub.Close())
			require.Less(t, time.Since(start), 2*time.Second, "Close waited for a stuck reader")
		})
	}
}

// failureTimesKept is how many entries' first-failure times s keeps.
func failureTimesKept(s eventbus.Subscription) int {
	sub := s.(*subscription)
	sub.heldMu.Lock()
	defer sub.heldMu.Unlock()
	n := 0
	for _, m := range sub.failedAt {
		n += len(m)
	}
	return n
}
