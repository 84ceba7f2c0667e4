package redisstream

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/deadletter"
	"github.com/choicesherpa/eventkit/eventbus"
)

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	_, err := New(nil, nil)
	require.ErrorIs(t, err, ErrConfig)
	_, err = New(rdb, &Config{HandlerTimeout: 10 * time.Second, MinIdle: 10 * time.Second})
	require.ErrorIs(t, err, ErrConfig)
	require.Contains(t, err.Error(), "MinIdle")
	_, err = New(rdb, &Config{HandlerTimeout: 10 * time.Second, MinIdle: 10*time.Second + MinIdleMargin})
	require.ErrorIs(t, err, ErrConfig, "MinIdle must exceed HandlerTimeout + margin, not equal it")
	_, err = New(rdb, &Config{StartID: "later"})
	require.ErrorIs(t, err, ErrConfig)
	_, err = New(rdb, &Config{ReconnectBackoff: eventbus.Backoff{Initial: time.Millisecond}})
	require.ErrorIs(t, err, ErrConfig)
	b, err := New(rdb, nil)
	require.NoError(t, err)
	require.Equal(t, DefaultStream, b.cfg.Stream)
	require.Greater(t, b.cfg.MinIdle, b.cfg.HandlerTimeout+MinIdleMargin)
	require.NoError(t, b.Close())
}

func TestStreamNamingSharesHashTag(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	b, err := New(rdb, &Config{Stream: "choice-sherpa:events", StreamPerType: true})
	require.NoError(t, err)
	defer b.Close()
	require.Equal(t, "{choice-sherpa:events}:session.created.v1", b.StreamFor("session.created.v1"))
	require.Equal(t, "{choice-sherpa:events}:replay:dashboard", b.ReplayStream("dashboard"))
	b2, err := New(rdb, &Config{Stream: "{cs}:events"})
	require.NoError(t, err)
	defer b2.Close()
	require.Equal(t, "{cs}:events", b2.StreamFor("a.b.v1"))
	require.Equal(t, "{cs}:events:replay:g", b2.ReplayStream("g"))
}

// D1: publish/subscribe, byte-equal payloads and metadata, topic isolation,
// a wire format other languages can read, and Close ending delivery.
func TestPublishSubscribeRoundTrip(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	b := f.bus(t, nil)

	envsA := mkEnvs(t, 100)
	envB := mkEnvType(t, "other.happened.v1", 1, "b")
	recA := newRecorder(len(envsA), nil)
	recB := newRecorder(1, nil)
	subA, err := b.Subscribe(ctx, "ga", recA, testType)
	require.NoError(t, err)
	_, err = b.Subscribe(ctx, "gb", recB, "other.happened.v1")
	require.NoError(t, err)

	require.NoError(t, b.Publish(ctx, envsA[:50]...))
	require.NoError(t, b.Publish(ctx, envB))
	require.NoError(t, b.Publish(ctx, envsA[50:]...))
	recA.wait(t, 10*time.Second)
	recB.wait(t, 10*time.Second)

	for _, want := range envsA {
		got, ok := recA.ok[want.EventID]
		require.True(t, ok)
		wj, _ := json.Marshal(want)
		gj, _ := json.Marshal(got)
		require.JSONEq(t, string(wj), string(gj))
		require.Equal(t, string(want.Payload), string(got.Payload))
		require.Equal(t, want.Metadata, got.Metadata)
	}
	require.Len(t, recB.ok, 1)
	require.Contains(t, recB.ok, envB.EventID)
	requirePendingZero(t, f.rdb, f.stream, "ga")
	requirePendingZero(t, f.rdb, f.stream, "gb")

	// The entry format: type, id and the envelope JSON.
	msgs, err := f.rdb.XRangeN(ctx, f.stream, "-", "+", 1).Result()
	require.NoError(t, err)
	require.Len(t, msgs[0].Values, 3)
	require.Equal(t, testType, msgs[0].Values[FieldType])
	require.Equal(t, envsA[0].EventID.String(), msgs[0].Values[FieldID])
	var decoded map[string]any
	require.NoError(t, json.Unmarshal([]byte(msgs[0].Values[FieldData].(string)), &decoded))
	require.Equal(t, envsA[0].EventID.String(), decoded["event_id"])

	// Close ends delivery promptly; later events stay for the group.
	start := time.Now()
	require.NoError(t, subA.Close())
	require.Less(t, time.Since(start), 2*time.Second)
	require.NoError(t, b.Publish(ctx, mkEnv(t, 1000, "x")))
	require.Equal(t, 100, recA.count())

	st, err := b.Stats(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 102, st.Published)
	require.Len(t, st.Streams, 3, "the stream and the two groups' replay streams")
	require.Equal(t, f.stream, st.Streams[0].Stream)
	require.EqualValues(t, 102, st.Streams[0].Length)
}

func TestPublishValidationAndOversize(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.MaxPayloadBytes = 1024
	b := f.bus(t, c)

	good := mkEnv(t, 1, "a")
	big := mkEnv(t, 2, "a")
	big.Payload = json.RawMessage(`{"s":"` + strings.Repeat("x", 2000) + `"}`)
	err := b.Publish(ctx, good, big)
	var tooLarge *PayloadTooLargeError
	require.ErrorAs(t, err, &tooLarge)
	require.True(t, eventbus.IsPermanent(err))
	require.Equal(t, big.EventID, tooLarge.EventID)

	noID := mkEnv(t, 3, "a")
	noID.EventID = eventbus.EventID{}
	require.ErrorIs(t, b.Publish(ctx, noID), eventbus.ErrInvalidEnvelope)
	badVersion := mkEnv(t, 4, "a")
	badVersion.SchemaVersion = 3
	require.ErrorIs(t, b.Publish(ctx, badVersion), eventbus.ErrInvalidEnvelope)

	n, err := f.rdb.XLen(ctx, f.stream).Result()
	require.NoError(t, err)
	require.Zero(t, n, "a failed call writes nothing")

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, b.Publish(cctx, good), context.Canceled)

	require.NoError(t, b.Close())
	require.ErrorIs(t, b.Publish(ctx, good), eventbus.ErrClosed)
	require.NoError(t, f.rdb.Ping(ctx).Err(), "the caller's client stays open")
}

// Concurrent publishers are coalesced into pipelines and every accepted
// entry is in the stream, each call's entries in order.
func TestConcurrentPublish(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	b := f.bus(t, nil)
	const goroutines = 50
	per := size(1000)
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := "g" + strconv.Itoa(g)
			for i := 0; i < per; {
				// Single-event calls (recycled requests) and pairs.
				envs := []eventbus.Envelope{mkEnv(t, i, key), mkEnv(t, i+1, key)}
				if i%3 == 0 {
					envs = envs[:1]
				}
				if err := b.Publish(ctx, envs...); err != nil {
					errs <- err
					return
				}
				i += len(envs)
			}
		}()
	}
	// Callers that give up while queued: their requests must never be
	// reused while a writer still holds them (entries stay well formed).
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				cctx, cancel := context.WithTimeout(ctx, time.Duration(i%50)*time.Microsecond)
				_ = b.Publish(cctx, mkEnvType(t, "other.happened.v1", i, "q"+strconv.Itoa(g)))
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// Per-publisher order; every entry's fields agree with its envelope.
	msgs, err := f.rdb.XRange(ctx, f.stream, "-", "+").Result()
	require.NoError(t, err)
	last := map[string]int{}
	n := 0
	for _, m := range msgs {
		env, err := decodeEntry(m.ID, m.Values)
		require.NoError(t, err)
		if env.EventType != testType {
			continue
		}
		n++
		var p payload
		require.NoError(t, json.Unmarshal(env.Payload, &p))
		if prev, ok := last[p.Key]; ok {
			require.Greater(t, p.N, prev)
		}
		last[p.Key] = p.N
	}
	require.Equal(t, goroutines*per, n)
}

// D2: competing consumers in one group, fan-out to another; exactly once
// per group without faults.
func TestCompetingConsumersAndGroups(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	envs := mkEnvs(t, size(5000))
	var g1calls sync.Map
	var dup atomic.Int64
	g1 := newRecorder(len(envs), func(_ context.Context, env eventbus.Envelope, _ int) error {
		if _, loaded := g1calls.LoadOrStore(env.EventID, true); loaded {
			dup.Add(1)
		}
		return nil
	})
	g2 := newRecorder(len(envs), nil)
	var members []*Bus
	for range 3 {
		b := f.bus(t, nil)
		members = append(members, b)
		_, err := b.Subscribe(ctx, "g1", g1)
		require.NoError(t, err)
	}
	_, err := members[0].Subscribe(ctx, "g2", g2)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(envs); i += 10 {
				if err := members[i%3].Publish(ctx, envs[i]); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	g1.wait(t, 30*time.Second)
	g2.wait(t, 30*time.Second)
	require.Zero(t, dup.Load())
	g2.mu.Lock()
	for id := range ids(envs) {
		require.Equal(t, 1, g2.calls[id])
	}
	g2.mu.Unlock()
	requirePendingZero(t, f.rdb, f.stream, "g1")
	requirePendingZero(t, f.rdb, f.stream, "g2")
	info, err := f.rdb.XInfoConsumers(ctx, f.stream, "g1").Result()
	require.NoError(t, err)
	require.Len(t, info, 3)
}

// D3: failures are redelivered with a growing delivery count, and nothing
// is dead-lettered before MaxDeliveries.
func TestRedeliveryAfterErrors(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.MaxDeliveries = 5
	b := f.bus(t, c)
	envs := mkEnvs(t, 100)
	var fails atomic.Int64
	rec := newRecorder(len(envs), func(_ context.Context, env eventbus.Envelope, call int) error {
		if call <= 2 || (env.AggregateID == "k3" && call <= 4) {
			fails.Add(1)
			return errors.New("transient")
		}
		return nil
	})
	_, err := b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, envs...))
	rec.wait(t, 30*time.Second)
	n, err := f.dlq.Count(ctx, deadletter.Filter{})
	require.NoError(t, err)
	require.Zero(t, n)
	requirePendingZero(t, f.rdb, f.stream, "g")
	st, err := b.Stats(ctx)
	require.NoError(t, err)
	require.EqualValues(t, fails.Load(), st.Failed)
}

// Q1: a handler that always fails ends in exactly one DLQ record, written
// before the ack, with origin, attempts and error.
func TestMaxDeliveriesDeadLetter(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.MaxDeliveries = 5
	var pendingAtPut atomic.Int64
	pendingAtPut.Store(-1)
	store := &hookStore{Store: f.dlq, before: func(rec deadletter.Record) error {
		pendingAtPut.Store(pendingCount(t, f.rdb, f.stream, "g"))
		return nil
	}}
	c.DeadLetters = store
	var dlHook atomic.Int64
	c.Hooks = &eventbus.Hooks{OnDeadLetter: func(context.Context, string, eventbus.Envelope, error) { dlHook.Add(1) }}
	b := f.bus(t, c)
	var calls atomic.Int64
	var callMu sync.Mutex
	var callAt []time.Time
	sub, err := b.Subscribe(ctx, "g", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		calls.Add(1)
		callMu.Lock()
		callAt = append(callAt, time.Now())
		callMu.Unlock()
		return errors.New("always broken")
	}))
	require.NoError(t, err)
	env := mkEnv(t, 1, "a")
	require.NoError(t, b.Publish(ctx, env))
	eventually(t, 20*time.Second, func() bool { n, _ := f.dlq.Count(ctx, deadletter.Filter{}); return n == 1 }, "no DLQ record")
	requirePendingZero(t, f.rdb, f.stream, "g")
	require.EqualValues(t, 1, pendingAtPut.Load(), "the entry was still pending when the DLQ record was written")
	require.EqualValues(t, 5, calls.Load())
	rec, err := f.dlq.Get(ctx, deadletter.RecordID("g", env.EventID.String()))
	require.NoError(t, err)
	require.Equal(t, deadletter.ReasonMaxDeliveries, rec.Reason)
	require.Equal(t, 5, rec.Attempts)
	require.Equal(t, f.stream, rec.Source)
	require.NotEmpty(t, rec.SourceID)
	require.Equal(t, "g", rec.Handler)
	require.Contains(t, rec.LastError, "always broken")
	// The record spans the failures: the first one, not the write time.
	callMu.Lock()
	first, second, last := callAt[0], callAt[1], callAt[len(callAt)-1]
	callMu.Unlock()
	require.True(t, !rec.FirstFailedAt.Before(first.Truncate(time.Millisecond)) && rec.FirstFailedAt.Before(second),
		"first failure %s, calls at %s and %s", rec.FirstFailedAt, first, second)
	require.False(t, rec.LastFailedAt.Before(last.Truncate(time.Millisecond)), "last failure %s, last call %s", rec.LastFailedAt, last)
	require.NotNil(t, rec.Envelope)
	require.Equal(t, env.EventID, rec.Envelope.EventID)
	require.EqualValues(t, 1, dlHook.Load())
	eventually(t, 5*time.Second, func() bool { return failureTimesKept(sub) == 0 }, "failure time kept after the ack")
	time.Sleep(300 * time.Millisecond) // nothing else may arrive
	require.EqualValues(t, 5, calls.Load())
	n, _ := f.dlq.Count(ctx, deadletter.Filter{})
	require.Equal(t, 1, n)
}

type hookStore struct {
	deadletter.Store
	before func(rec deadletter.Record) error
	puts   atomic.Int64
}

func (s *hookStore) Put(ctx context.Context, rec deadletter.Record) error {
	s.puts.Add(1)
	if s.before != nil {
		if err := s.before(rec); err != nil {
			return err
		}
	}
	return s.Store.Put(ctx, rec)
}

// Q2: while the DLQ store fails, the entry stays pending; once it works,
// the record is written and the entry acknowledged.
func TestDeadLetterStoreFailureKeepsPending(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.MaxDeliveries = 2
	var broken atomic.Bool
	broken.Store(true)
	store := &hookStore{Store: f.dlq, before: func(deadletter.Record) error {
		if broken.Load() {
			return errors.New("store down")
		}
		return nil
	}}
	c.DeadLetters = store
	b := f.bus(t, c)
	_, err := b.Subscribe(ctx, "g", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		return errors.New("fails")
	}))
	require.NoError(t, err)
	env := mkEnv(t, 1, "a")
	require.NoError(t, b.Publish(ctx, env))
	eventually(t, 10*time.Second, func() bool { return store.puts.Load() >= 3 }, "DLQ write not retried")
	require.EqualValues(t, 1, pendingCount(t, f.rdb, f.stream, "g"), "not acked while the store fails")
	broken.Store(false)
	eventually(t, 10*time.Second, func() bool { n, _ := f.dlq.Count(ctx, deadletter.Filter{}); return n == 1 }, "no DLQ record")
	requirePendingZero(t, f.rdb, f.stream, "g")
	rec, err := f.dlq.Get(ctx, deadletter.RecordID("g", env.EventID.String()))
	require.NoError(t, err)
	require.Equal(t, deadletter.ReasonMaxDeliveries, rec.Reason)
}

// B1: malformed entries and permanent errors go to the DLQ on the first
// delivery; valid events around them are processed; nothing stalls.
func TestBadInputDeadLetteredOnFirstDelivery(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	b := f.bus(t, nil)
	valid := mkEnvs(t, 100)
	var unknownCalls atomic.Int64
	rec := newRecorder(len(valid), func(_ context.Context, env eventbus.Envelope, _ int) error {
		if env.EventType != testType {
			unknownCalls.Add(1)
			return eventbus.ErrUnknownEventType
		}
		return nil
	})
	_, err := b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)

	unknown := mkEnvType(t, "nobody.knows.v1", 1, "u")
	unknownData, _ := json.Marshal(unknown)
	missingID := mkEnv(t, 2, "m")
	missingIDData, _ := json.Marshal(missingID)
	missingIDData = []byte(strings.Replace(string(missingIDData), `"event_id":"`+missingID.EventID.String()+`",`, "", 1))
	badVersion := mkEnv(t, 3, "v")
	badVersionData, _ := json.Marshal(badVersion)
	badVersionData = []byte(strings.Replace(string(badVersionData), `"schema_version":1`, `"schema_version":7`, 1))
	bad := []map[string]any{
		{FieldType: testType, FieldID: "x", FieldData: "{not json"},
		{FieldType: unknown.EventType, FieldID: unknown.EventID.String(), FieldData: string(unknownData)},
		{FieldType: testType, FieldID: missingID.EventID.String(), FieldData: string(missingIDData)},
		{FieldType: testType, FieldID: badVersion.EventID.String(), FieldData: string(badVersionData)},
		{FieldType: testType, "color": "blue"},
	}
	for i, env := range valid {
		require.NoError(t, b.Publish(ctx, env))
		if i%20 == 10 {
			require.NoError(t, f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: f.stream, Values: bad[i/20]}).Err())
		}
	}
	rec.wait(t, 20*time.Second)
	eventually(t, 10*time.Second, func() bool { n, _ := f.dlq.Count(ctx, deadletter.Filter{}); return n == len(bad) }, "want %d DLQ records", len(bad))
	requirePendingZero(t, f.rdb, f.stream, "g")
	recs, _, err := f.dlq.List(ctx, deadletter.Filter{}, deadletter.Page{Limit: 100})
	require.NoError(t, err)
	for _, r := range recs {
		require.Equal(t, 1, r.Attempts, "dead-lettered on the first delivery: %+v", r)
		if r.EventType == unknown.EventType {
			require.Equal(t, deadletter.ReasonPermanent, r.Reason)
			require.NotNil(t, r.Envelope)
		} else {
			require.Equal(t, deadletter.ReasonPermanent, r.Reason, "%+v", r)
			require.Contains(t, r.LastError, "malformed entry", "the detail says it was undecodable")
			require.Nil(t, r.Envelope)
			require.NotEmpty(t, r.Raw)
		}
	}
	require.EqualValues(t, 1, unknownCalls.Load())
}

// B2: panics are recovered, count as failed attempts, and end in the DLQ
// with the stack; other events are unaffected.
func TestHandlerPanics(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.MaxDeliveries = 3
	b := f.bus(t, c)
	envs := mkEnvs(t, 100)
	var panics atomic.Int64
	rec := newRecorder(90, func(_ context.Context, env eventbus.Envelope, _ int) error {
		var p payload
		_ = json.Unmarshal(env.Payload, &p)
		if p.N%10 == 0 {
			panics.Add(1)
			panic("boom " + strconv.Itoa(p.N))
		}
		return nil
	})
	_, err := b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, envs...))
	rec.wait(t, 20*time.Second)
	eventually(t, 20*time.Second, func() bool { n, _ := f.dlq.Count(ctx, deadletter.Filter{}); return n == 10 }, "want 10 DLQ records")
	requirePendingZero(t, f.rdb, f.stream, "g")
	require.EqualValues(t, 30, panics.Load())
	recs, _, err := f.dlq.List(ctx, deadletter.Filter{}, deadletter.Page{Limit: 100})
	require.NoError(t, err)
	for _, r := range recs {
		require.Equal(t, deadletter.ReasonMaxDeliveries, r.Reason)
		require.Equal(t, 3, r.Attempts)
		require.Contains(t, r.LastError, "boom")
		require.Contains(t, r.LastError, "goroutine", "the stack is kept")
	}
}
