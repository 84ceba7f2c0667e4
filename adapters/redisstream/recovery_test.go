package redisstream

import (
	"context"
	"encoding/json"
	"errors"
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

// readRaw makes n entries pending for consumer in group, as a crashed
// process would leave them.
func readRaw(t *testing.T, rdb redis.UniversalClient, stream, group, consumer string, n int) []redis.XMessage {
	t.Helper()
	ctx := context.Background()
	err := rdb.XGroupCreateMkStream(ctx, stream, group, "0").Err()
	if err != nil && err.Error() != "BUSYGROUP Consumer Group name already exists" {
		require.NoError(t, err)
	}
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: consumer, Streams: []string{stream, ">"}, Count: int64(n), Block: -1}).Result()
	require.NoError(t, err)
	require.Len(t, res[0].Messages, n)
	return res[0].Messages
}

// deliveryCountProbe records, inside the handler, the entry's delivery
// count as Redis sees it.
func deliveryCountProbe(t *testing.T, rdb redis.UniversalClient, stream, group string, entryOf map[eventbus.EventID]string) func(context.Context, eventbus.Envelope, int) error {
	return func(ctx context.Context, env eventbus.Envelope, _ int) error {
		id := entryOf[env.EventID]
		p, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: group, Start: id, End: id, Count: 1}).Result()
		if err != nil || len(p) != 1 {
			return errors.New("probe: entry not pending")
		}
		if p[0].RetryCount < 2 {
			return eventbus.Permanent(errors.New("probe: delivery count below 2"))
		}
		return nil
	}
}

// A consumer restarted under its own name re-reads its pending entries
// first, with delivery counts carried on.
func TestOwnPendingReadFirst(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	envs := mkEnvs(t, 10)
	pub := f.bus(t, nil)
	require.NoError(t, pub.Publish(ctx, envs...))
	c := f.config()
	c.Consumer = "stable-a"
	msgs := readRaw(t, f.rdb, f.stream, "g", c.Consumer, 10)
	entryOf := map[eventbus.EventID]string{}
	for _, m := range msgs {
		entryOf[eventbus.MustParseEventID(m.Values[FieldID].(string))] = m.ID
	}
	// New entries published after the crash come after the own PEL.
	later := mkEnvs(t, 5)
	require.NoError(t, pub.Publish(ctx, later...))
	c.MinIdle = time.Hour // no claiming: only the PEL read can find them
	c.Concurrency = 1     // handled in the order read
	b := f.bus(t, c)
	probe := deliveryCountProbe(t, f.rdb, f.stream, "g", entryOf)
	rec := newRecorder(15, func(ctx context.Context, env eventbus.Envelope, call int) error {
		if _, old := entryOf[env.EventID]; old {
			return probe(ctx, env, call)
		}
		return nil
	})
	_, err := b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	rec.wait(t, 10*time.Second)
	rec.mu.Lock()
	for i, env := range rec.order[:len(entryOf)] {
		_, old := entryOf[env.EventID]
		require.True(t, old, "handled #%d is a new entry: the own pending entries come first", i)
	}
	rec.mu.Unlock()
	n, _ := f.dlq.Count(ctx, deadletter.Filter{})
	require.Zero(t, n)
	requirePendingZero(t, f.rdb, f.stream, "g")
}

// Entries another consumer left idle are claimed after MinIdle with their
// delivery count >= 2; consumers are deleted only with zero pending.
func TestClaimIdleEntriesAndConsumerCleanup(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	envs := mkEnvs(t, 10)
	pub := f.bus(t, nil)
	require.NoError(t, pub.Publish(ctx, envs...))
	msgs := readRaw(t, f.rdb, f.stream, "g", "dead", 10)
	entryOf := map[eventbus.EventID]string{}
	for _, m := range msgs {
		entryOf[eventbus.MustParseEventID(m.Values[FieldID].(string))] = m.ID
	}
	// While "dead" holds entries it is never deleted.
	n, err := deleteConsumerIfIdle(ctx, f.rdb, f.stream, "g", "dead", 0)
	require.NoError(t, err)
	require.Zero(t, n)

	c := f.config()
	c.HandlerTimeout = 200 * time.Millisecond
	c.MinIdle = 1500 * time.Millisecond
	c.ConsumerIdleTTL = time.Millisecond
	start := time.Now()
	b := f.bus(t, c)
	rec := newRecorder(10, deliveryCountProbe(t, f.rdb, f.stream, "g", entryOf))
	_, err = b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	rec.wait(t, 15*time.Second)
	require.GreaterOrEqual(t, time.Since(start), 1400*time.Millisecond, "claimed only after MinIdle")
	requirePendingZero(t, f.rdb, f.stream, "g")
	// The idle cleanup now removes "dead" (0 pending), keeping ourselves.
	eventually(t, 5*time.Second, func() bool {
		cs, err := f.rdb.XInfoConsumers(ctx, f.stream, "g").Result()
		if err != nil {
			return false
		}
		for _, c := range cs {
			if c.Name == "dead" {
				return false
			}
		}
		return true
	}, "idle consumer with 0 pending not deleted")
}

// D6 (second half): a pending entry deleted under its id is counted as
// lost; the claim loop and the rest of the entries carry on.
func TestDeletedPendingEntryCountedLost(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	envs := mkEnvs(t, 10)
	pub := f.bus(t, nil)
	require.NoError(t, pub.Publish(ctx, envs...))
	msgs := readRaw(t, f.rdb, f.stream, "g", "dead", 10)
	require.NoError(t, f.rdb.XDel(ctx, f.stream, msgs[3].ID).Err())
	c := f.config()
	c.HandlerTimeout = 200 * time.Millisecond
	c.MinIdle = 1500 * time.Millisecond
	b := f.bus(t, c)
	rec := newRecorder(9, nil)
	_, err := b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	rec.wait(t, 15*time.Second)
	requirePendingZero(t, f.rdb, f.stream, "g")
	st, err := b.Stats(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, st.LostEntries)
}

// NOGROUP (the group vanished, as after a Redis restart without
// persistence): the subscription re-creates it and carries on.
func TestNoGroupRecreated(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	b := f.bus(t, nil)
	rec := newRecorder(20, nil)
	_, err := b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	envs := mkEnvs(t, 20)
	require.NoError(t, b.Publish(ctx, envs[:10]...))
	eventually(t, 10*time.Second, func() bool { return rec.count() == 10 }, "first half")
	require.NoError(t, f.rdb.Del(ctx, f.stream).Err())
	require.NoError(t, b.Publish(ctx, envs[10:]...))
	rec.wait(t, 10*time.Second)
	requirePendingZero(t, f.rdb, f.stream, "g")
}

// D6: trimming never drops an entry a group has not acknowledged.
func TestTrimNeverDropsUnacked(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	b := f.bus(t, nil)
	paused := size(500)
	more := size(5000)
	require.NoError(t, b.Publish(ctx, mkEnvs(t, paused)...))
	// A paused consumer of group "slow" holds the first entries pending.
	readRaw(t, f.rdb, f.stream, "slow", "paused", paused)
	// Group "fast" consumes everything.
	fast := newRecorder(paused+more, nil)
	_, err := b.Subscribe(ctx, "fast", fast)
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, mkEnvs(t, more)...))
	fast.wait(t, 30*time.Second)
	requirePendingZero(t, f.rdb, f.stream, "fast")

	res, err := b.Trim(ctx, TrimOptions{Streams: []string{f.stream}})
	require.NoError(t, err)
	require.Len(t, res, 1)
	n, err := f.rdb.XLen(ctx, f.stream).Result()
	require.NoError(t, err)
	require.EqualValues(t, paused+more, n, "slow's pending and undelivered entries are all kept")

	// slow resumes (same consumer name), handles everything; then a trim
	// removes what everyone acknowledged.
	c := f.config()
	c.Consumer = "paused"
	b2 := f.bus(t, c)
	slow := newRecorder(paused+more, nil)
	_, err = b2.Subscribe(ctx, "slow", slow)
	require.NoError(t, err)
	slow.wait(t, 30*time.Second)
	requirePendingZero(t, f.rdb, f.stream, "slow")
	// The length target keeps the newest 100.
	res, err = b.Trim(ctx, TrimOptions{MaxLen: 100, Streams: []string{f.stream}})
	require.NoError(t, err)
	require.Positive(t, res[0].Removed)
	n, err = f.rdb.XLen(ctx, f.stream).Result()
	require.NoError(t, err)
	require.EqualValues(t, 100, n)
	res, err = b.Trim(ctx, TrimOptions{})
	require.NoError(t, err)
	n, err = f.rdb.XLen(ctx, f.stream).Result()
	require.NoError(t, err)
	require.LessOrEqual(t, n, int64(1), "all acknowledged entries removed (the last delivered may stay)")

	// Undelivered entries of a group are kept too.
	require.NoError(t, f.rdb.XGroupCreate(ctx, f.stream, "late", "$").Err())
	require.NoError(t, b.Publish(ctx, mkEnvs(t, 10)...))
	_, err = b.Trim(ctx, TrimOptions{})
	require.NoError(t, err)
	n, err = f.rdb.XLen(ctx, f.stream).Result()
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, int64(10))

	// No groups: nothing is trimmed.
	other := f.prefix + "nogroups"
	require.NoError(t, f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: other, Values: []any{"a", "1"}}).Err())
	r, err := TrimStream(ctx, f.rdb, other, TrimOptions{})
	require.NoError(t, err)
	require.True(t, r.NoGroups)
	require.Zero(t, r.Removed)
	// A broadcast-only stream (no groups) keeps to the length target.
	for i := range 9 {
		require.NoError(t, f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: other, Values: []any{"a", i}}).Err())
	}
	r, err = TrimStream(ctx, f.rdb, other, TrimOptions{MaxLen: 4})
	require.NoError(t, err)
	require.True(t, r.NoGroups)
	require.EqualValues(t, 6, r.Removed)
	n, err = f.rdb.XLen(ctx, other).Result()
	require.NoError(t, err)
	require.EqualValues(t, 4, n)
}

// A group rewound with XGROUP SETID below its pending entries reads the
// entries after its new last-delivered id again: the trim keeps them.
func TestTrimKeepsWhatARewoundGroupWillReread(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	var ids []string
	for i := range 10 {
		id, err := f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: f.stream, Values: []any{"n", i}}).Result()
		require.NoError(t, err)
		ids = append(ids, id)
	}
	read := readRaw(t, f.rdb, f.stream, "g", "c", 10)
	require.Len(t, read, 10)
	require.NoError(t, f.rdb.XAck(ctx, f.stream, "g", ids[:5]...).Err())
	// Oldest pending: ids[5]. Rewound: the group reads from after ids[2].
	require.NoError(t, f.rdb.XGroupSetID(ctx, f.stream, "g", ids[2]).Err())

	res, err := TrimStream(ctx, f.rdb, f.stream, TrimOptions{})
	require.NoError(t, err)
	require.Equal(t, ids[2], res.MinID)
	again, err := f.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{f.stream, ">"}, Count: 1}).Result()
	require.NoError(t, err)
	require.Equal(t, ids[3], again[0].Messages[0].ID, "the rewound group's next entry was not trimmed")
}

// Replay goes to the failing group only and keeps the event id.
func TestReplayToFailingGroupOnly(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.MaxDeliveries = 1
	b := f.bus(t, c)
	var broken atomic.Bool
	broken.Store(true)
	failing := newRecorder(1, func(context.Context, eventbus.Envelope, int) error {
		if broken.Load() {
			return errors.New("not yet")
		}
		return nil
	})
	other := newRecorder(1, nil)
	_, err := b.Subscribe(ctx, "failing", failing)
	require.NoError(t, err)
	_, err = b.Subscribe(ctx, "other", other)
	require.NoError(t, err)
	env := mkEnv(t, 1, "a")
	require.NoError(t, b.Publish(ctx, env))
	other.wait(t, 10*time.Second)
	eventually(t, 10*time.Second, func() bool { n, _ := f.dlq.Count(ctx, deadletter.Filter{}); return n == 1 }, "no DLQ record")
	rec, err := f.dlq.Get(ctx, deadletter.RecordID("failing", env.EventID.String()))
	require.NoError(t, err)

	broken.Store(false)
	require.NoError(t, b.Replay(ctx, rec))
	failing.wait(t, 10*time.Second)
	require.Contains(t, failing.ok, env.EventID, "same event id")
	other.mu.Lock()
	require.Equal(t, 1, other.calls[env.EventID], "the other group never sees the replay")
	other.mu.Unlock()
	requirePendingZero(t, f.rdb, b.ReplayStream("failing"), "failing")
	require.ErrorIs(t, b.Replay(ctx, deadletter.Record{Handler: "x"}), deadletter.ErrNoEnvelope)
}

// Broadcast: every "process" (bus) sees every event.
func TestBroadcastEveryProcess(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	envs := mkEnvs(t, 50)
	var recs []*recorder
	var buses []*Bus
	for range 3 {
		b := f.bus(t, nil)
		buses = append(buses, b)
		r := newRecorder(len(envs), nil)
		recs = append(recs, r)
		_, err := b.SubscribeBroadcast(ctx, "live", r)
		require.NoError(t, err)
	}
	require.NoError(t, buses[0].Publish(ctx, envs...))
	for _, r := range recs {
		r.wait(t, 10*time.Second)
		// per-aggregate order
		last := map[string]int{}
		for _, e := range r.order {
			var p payload
			require.NoError(t, json.Unmarshal(e.Payload, &p))
			if prev, ok := last[p.Key]; ok {
				require.Greater(t, p.N, prev)
			}
			last[p.Key] = p.N
		}
	}
	groups, err := f.rdb.XInfoGroups(ctx, f.stream).Result()
	require.NoError(t, err)
	require.Empty(t, groups, "broadcast creates no consumer group")
}

// D5: with OrderByAggregate a single consumer keeps per-key order.
func TestOrderByAggregate(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.OrderByAggregate = true
	b := f.bus(t, c)
	envs := mkEnvs(t, 1000)
	rec := newRecorder(len(envs), nil)
	_, err := b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	for i := 0; i < len(envs); i += 50 {
		require.NoError(t, b.Publish(ctx, envs[i:i+50]...))
	}
	rec.wait(t, 20*time.Second)
	last := map[string]int{}
	for _, e := range rec.order {
		var p payload
		require.NoError(t, json.Unmarshal(e.Payload, &p))
		if prev, ok := last[p.Key]; ok {
			require.Greater(t, p.N, prev, "order of %s", p.Key)
		}
		last[p.Key] = p.N
	}
}

// C2: a handler running longer than MinIdle (ignoring its context) is
// never run twice at once: the heartbeat keeps its entry claimed.
func TestLongHandlerNeverRunsTwiceAtOnce(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	var running sync.Map
	var overlap atomic.Int64
	var calls atomic.Int64
	mk := func() *Bus {
		c := f.config()
		c.HandlerTimeout = 100 * time.Millisecond
		c.MinIdle = 1200 * time.Millisecond
		c.Buffer = -1 // every slot busy: the claim loop must still heartbeat
		c.Concurrency = 1
		return f.bus(t, c)
	}
	rec := newRecorder(2, func(_ context.Context, env eventbus.Envelope, _ int) error {
		calls.Add(1)
		if _, busy := running.LoadOrStore(env.EventID, true); busy {
			overlap.Add(1)
		}
		defer running.Delete(env.EventID)
		time.Sleep(3 * 1200 * time.Millisecond) // ignores ctx: 3x MinIdle
		return nil
	})
	b1, b2 := mk(), mk()
	_, err := b1.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	_, err = b2.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	require.NoError(t, b1.Publish(ctx, mkEnvs(t, 2)...))
	// An idle third consumer would claim any entry whose claim lapsed.
	eventually(t, 10*time.Second, func() bool { return calls.Load() == 2 }, "both entries started")
	b3 := mk()
	_, err = b3.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	rec.wait(t, 30*time.Second)
	require.Zero(t, overlap.Load())
	require.EqualValues(t, 2, calls.Load(), "each entry handled once")
	requirePendingZero(t, f.rdb, f.stream, "g")
}

// C8: Close while handlers are in flight: finished work is acked, the rest
// stays pending, nothing is acked without its effect; the client stays open.
func TestCloseWithHandlersInFlight(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.Concurrency = 20
	c.ShutdownTimeout = 500 * time.Millisecond
	c.HandlerTimeout = 5 * time.Second
	c.MinIdle = 10 * time.Second
	b := f.bus(t, c)
	started := make(chan struct{}, 40)
	var effects sync.Map
	_, err := b.Subscribe(ctx, "g", eventbus.HandlerFunc(func(hctx context.Context, env eventbus.Envelope) error {
		started <- struct{}{}
		var p payload
		_ = json.Unmarshal(env.Payload, &p)
		if p.N%2 == 0 {
			time.Sleep(100 * time.Millisecond) // finishes within the shutdown timeout
			effects.Store(env.EventID, true)
			return nil
		}
		<-hctx.Done() // cut off at the shutdown timeout: no effect
		return hctx.Err()
	}))
	require.NoError(t, err)
	envs := mkEnvs(t, 20)
	require.NoError(t, b.Publish(ctx, envs...))
	for range 20 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("handlers did not start")
		}
	}
	start := time.Now()
	require.NoError(t, b.Close())
	require.Less(t, time.Since(start), c.ShutdownTimeout+2*time.Second)
	require.NoError(t, f.rdb.Ping(ctx).Err())
	pend, err := f.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: f.stream, Group: "g", Start: "-", End: "+", Count: 100}).Result()
	require.NoError(t, err)
	pendingIDs := map[string]bool{}
	for _, p := range pend {
		pendingIDs[p.ID] = true
	}
	msgs, err := f.rdb.XRange(ctx, f.stream, "-", "+").Result()
	require.NoError(t, err)
	for _, m := range msgs {
		id := eventbus.MustParseEventID(m.Values[FieldID].(string))
		_, effect := effects.Load(id)
		if !effect {
			require.True(t, pendingIDs[m.ID], "entry without effect must stay pending")
		} else {
			require.False(t, pendingIDs[m.ID], "finished entries are acked")
		}
	}
	require.Len(t, pend, 10)
}

// C8: Subscribe/Close from many goroutines; no race, panic or leak.
func TestStartStopStress(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.Concurrency = 2
	c.Buffer = 2
	b := f.bus(t, c)
	rounds := size(100)
	var wg sync.WaitGroup
	for g := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "g" + string(rune('a'+g))
			for range rounds {
				s, err := b.Subscribe(ctx, name, eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { return nil }))
				if err != nil {
					t.Error(err)
					return
				}
				if err := s.Close(); err != nil {
					t.Error(err)
					return
				}
				_ = s.Close()
			}
		}()
	}
	wg.Wait()
	require.NoError(t, b.Close())
	require.NoError(t, b.Close())
	require.NoError(t, f.rdb.Ping(ctx).Err())
}

// Q1: a crash between the DLQ write and the ack (seeded: the record exists,
// the entry is still pending and out of deliveries) yields one record, not
// two, and the entry is acked without calling the handler again.
func TestDeadLetterWrittenButNotAcked(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	env := mkEnv(t, 1, "a")
	pub := f.bus(t, nil)
	require.NoError(t, pub.Publish(ctx, env))
	msgs := readRaw(t, f.rdb, f.stream, "g", "crashed", 1)
	for range 4 { // delivery count 5 = MaxDeliveries
		require.NoError(t, f.rdb.XClaim(ctx, &redis.XClaimArgs{Stream: f.stream, Group: "g", Consumer: "crashed", Messages: []string{msgs[0].ID}}).Err())
	}
	e := env
	require.NoError(t, f.dlq.Put(ctx, deadletter.Record{
		ID: deadletter.RecordID("g", env.EventID.String()), Envelope: &e, EventID: env.EventID.String(), EventType: env.EventType,
		Handler: "g", Source: f.stream, SourceID: msgs[0].ID, Reason: deadletter.ReasonMaxDeliveries, Attempts: 5,
		LastError: "broken", FirstFailedAt: time.Now().UTC(), LastFailedAt: time.Now().UTC(), Status: deadletter.StatusDead,
	}))
	c := f.config()
	c.MaxDeliveries = 5
	c.HandlerTimeout = 200 * time.Millisecond
	c.MinIdle = 500 * time.Millisecond
	b := f.bus(t, c)
	var calls atomic.Int64
	_, err := b.Subscribe(ctx, "g", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		calls.Add(1)
		return nil
	}))
	require.NoError(t, err)
	requirePendingZero(t, f.rdb, f.stream, "g")
	n, err := f.dlq.Count(ctx, deadletter.Filter{})
	require.NoError(t, err)
	require.Equal(t, 1, n, "deduplicated by (handler, event id)")
	require.Zero(t, calls.Load(), "out of deliveries: straight to the DLQ")
}

// The heartbeat keeps held entries claimed but never takes back an entry
// another consumer claimed in the meantime.
func TestHeartbeatDoesNotStealBack(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	pub := f.bus(t, nil)
	require.NoError(t, pub.Publish(ctx, mkEnvs(t, 2)...))
	c := f.config()
	c.Consumer = "me"
	b := f.bus(t, c)
	msgs := readRaw(t, f.rdb, f.stream, "g", "me", 2)
	s := &subscription{bus: b, name: "g", held: map[string]map[string]struct{}{}}
	s.hold(f.stream, entriesFromMessages(msgs))
	// Someone else takes the second entry.
	require.NoError(t, f.rdb.XClaim(ctx, &redis.XClaimArgs{Stream: f.stream, Group: "g", Consumer: "other", Messages: []string{msgs[1].ID}}).Err())
	time.Sleep(50 * time.Millisecond) // idle >= 50ms unless the heartbeat resets it
	beat := time.Now()
	s.heartbeat()
	p, err := f.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: f.stream, Group: "g", Start: "-", End: "+", Count: 10}).Result()
	sinceBeat := time.Since(beat)
	require.NoError(t, err)
	require.Len(t, p, 2)
	require.Equal(t, "me", p[0].Consumer)
	// Reset: idle counts from the heartbeat, not from the read 50ms before
	// it (1ms for Redis's millisecond clock), however slow the box is.
	require.LessOrEqual(t, p[0].Idle, sinceBeat+time.Millisecond, "own entry's idle time reset")
	require.EqualValues(t, 1, p[0].RetryCount, "JUSTID keeps the delivery count")
	require.Equal(t, "other", p[1].Consumer, "not stolen back")
	s.heldMu.Lock()
	_, still := s.held[f.stream][msgs[1].ID]
	s.heldMu.Unlock()
	require.False(t, still)
}

// Entries delivered to this consumer whose XREADGROUP reply was lost (a
// dropped connection) are recovered at once after the read error, not
// after MinIdle.
func TestRecoverLostReadReply(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.Consumer = "me"
	c.MinIdle = time.Hour
	b := f.bus(t, c)
	rec := newRecorder(5, nil)
	sub, err := b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	envs := mkEnvs(t, 5)
	// XADD and a read by "me" in one transaction: the entries are pending
	// for "me" but the running subscription never saw the reply.
	_, err = f.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i := range envs {
			fields, err := encodeEntry(&envs[i], 0)
			require.NoError(t, err)
			p.XAdd(ctx, &redis.XAddArgs{Stream: f.stream, Values: fields})
		}
		p.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "me", Streams: []string{f.stream, ">"}, Count: 10, Block: -1})
		return nil
	})
	require.NoError(t, err)
	require.EqualValues(t, 5, pendingCount(t, f.rdb, f.stream, "g"))
	sub.(*subscription).recoverUnheld()
	rec.wait(t, 10*time.Second)
	requirePendingZero(t, f.rdb, f.stream, "g")
}

// Every Close call, concurrent or later, waits for the shutdown and returns
// its outcome: a second caller used to wake with the publish loops and
// could return nil before the first had recorded ErrShutdownTimeout.
func TestConcurrentCloseReturnsSameError(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.ShutdownTimeout = 100 * time.Millisecond
	c.HandlerTimeout = 5 * time.Second
	c.MinIdle = 10 * time.Second
	b := f.bus(t, c)
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{}, 1)
	_, err := b.Subscribe(ctx, "g", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		select {
		case started <- struct{}{}:
		default:
		}
		<-release // ignores its context: Close times out
		return nil
	}))
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, mkEnv(t, 1, "a")))
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not start")
	}
	const callers = 8
	errs := make(chan error, callers)
	for range callers {
		go func() { errs <- b.Close() }()
	}
	for range callers {
		select {
		case err := <-errs:
			require.ErrorIs(t, err, ErrShutdownTimeout)
		case <-time.After(20 * time.Second):
			t.Fatal("Close did not return")
		}
	}
	require.ErrorIs(t, b.Close(), ErrShutdownTimeout, "a later Close reports it too")
}

// A consumer restarted under its own name, whose pending entries are idle
// past MinIdle, gets them from two sides at once: phase 1 re-reads its PEL
// (id 0) while the claim loop's first XAUTOCLAIM takes the same idle
// entries. Each must still be handled once, not twice concurrently.
func TestRestartOwnPendingNotHandledTwice(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	const rounds, per = 6, 5
	for r := range rounds {
		group, stream := "g", f.stream+strconv.Itoa(r) // a fresh stream per round
		envs := mkEnvs(t, per)
		pc := f.config()
		pc.Stream = stream
		pub := f.bus(t, pc)
		require.NoError(t, pub.Publish(ctx, envs...))
		readRaw(t, f.rdb, stream, group, "me", per) // the crashed "me"
		c := f.config()
		c.Stream = stream
		c.Consumer = "me"
		c.HandlerTimeout = 50 * time.Millisecond
		c.MinIdle = 400 * time.Millisecond
		time.Sleep(c.MinIdle + 50*time.Millisecond) // idle past MinIdle, as after a crash
		b := f.bus(t, c)
		rec := newRecorder(per, nil)
		_, err := b.Subscribe(ctx, group, rec)
		require.NoError(t, err)
		rec.wait(t, 10*time.Second)
		requirePendingZero(t, f.rdb, stream, group)
		require.NoError(t, b.Close()) // every delivery already routed has run
		rec.mu.Lock()
		for _, env := range envs {
			require.Equal(t, 1, rec.calls[env.EventID], "round %d: event %s handled more than once", r, env.EventID)
		}
		rec.mu.Unlock()
	}
}

// Entries read but not started when Close begins stay pending with their
// delivery count given back: a reader that shuts down does not use up
// MaxDeliveries of entries its handler never saw.
func TestCloseGivesBackUnstartedDeliveries(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.Concurrency = 1
	c.MinIdle = 10 * time.Second
	b := f.bus(t, c)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var calls atomic.Int64
	sub, err := b.Subscribe(ctx, "g", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		if calls.Add(1) == 1 {
			entered <- struct{}{}
			<-release
		}
		return nil
	}))
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, mkEnvs(t, 5)...))
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not start")
	}
	// The other four are read and queued behind the running one.
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, f.rdb, f.stream, "g") == 5 }, "entries not read")
	closed := make(chan error, 1)
	go func() { closed <- sub.Close() }()
	s := sub.(*subscription)
	eventually(t, 10*time.Second, s.stopping, "Close did not begin")
	close(release)
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return")
	}
	require.EqualValues(t, 1, calls.Load())
	p, err := f.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: f.stream, Group: "g", Start: "-", End: "+", Count: 10}).Result()
	require.NoError(t, err)
	require.Len(t, p, 4, "the finished entry is acked, the unstarted ones stay pending")
	for _, x := range p {
		require.EqualValues(t, 0, x.RetryCount, "delivery given back: %+v", x)
		require.Equal(t, c.Consumer, x.Consumer)
	}
}
