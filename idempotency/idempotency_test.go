package idempotency_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/idempotency"
)

type paid struct {
	OrderID string `json:"order_id"`
}

func (paid) EventType() string     { return "idemtest.order.paid.v1" }
func (p paid) AggregateID() string { return p.OrderID }
func (paid) AggregateType() string { return "order" }

func newEnv() eventbus.Envelope {
	return eventbus.MustEnvelope(context.Background(), paid{OrderID: "o-1"})
}

// counter is a handler whose effect is a counter.
type counter struct {
	n   atomic.Int64
	err error
}

func (c *counter) Handle(context.Context, eventbus.Envelope) error {
	if c.err != nil {
		return c.err
	}
	c.n.Add(1)
	return nil
}

func TestDuplicateIsSkippedAndAcknowledged(t *testing.T) {
	t.Parallel()
	store := idempotency.NewMemoryStore(nil)
	var effect counter
	var dups []eventbus.EventID
	h := idempotency.Wrap(&effect, store, "billing")
	h.OnDuplicate = func(_ context.Context, env eventbus.Envelope) { dups = append(dups, env.EventID) }
	env := newEnv()

	require.NoError(t, h.Handle(context.Background(), env))
	require.NoError(t, h.Handle(context.Background(), env), "a duplicate is reported as success")
	require.NoError(t, h.Handle(context.Background(), env))
	require.EqualValues(t, 1, effect.n.Load(), "the effect is applied once")
	require.Equal(t, []eventbus.EventID{env.EventID, env.EventID}, dups)

	ok, err := store.IsProcessed(context.Background(), "billing", env.EventID)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 1, store.Len())

	// Another event is not a duplicate.
	require.NoError(t, h.Handle(context.Background(), newEnv()))
	require.EqualValues(t, 2, effect.n.Load())
}

func TestFailedHandlerIsNotMarked(t *testing.T) {
	t.Parallel()
	store := idempotency.NewMemoryStore(nil)
	boom := errors.New("db down")
	effect := &counter{err: boom}
	h := idempotency.Wrap(effect, store, "billing")
	env := newEnv()

	err := h.Handle(context.Background(), env)
	require.ErrorIs(t, err, boom, "the handler's error is returned as is")
	ok, _ := store.IsProcessed(context.Background(), "billing", env.EventID)
	require.False(t, ok, "a failure leaves no marker")
	require.Zero(t, store.Len())

	effect.err = nil
	require.NoError(t, h.Handle(context.Background(), env), "the redelivery runs the handler again")
	require.EqualValues(t, 1, effect.n.Load())
	require.NoError(t, h.Handle(context.Background(), env))
	require.EqualValues(t, 1, effect.n.Load())
}

func TestPanickingHandlerIsNotMarked(t *testing.T) {
	t.Parallel()
	store := idempotency.NewMemoryStore(nil)
	calls := 0
	h := eventbus.Chain(idempotency.Wrap(eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		calls++
		if calls == 1 {
			panic("first delivery blows up")
		}
		return nil
	}), store, "billing"), eventbus.Recover())
	env := newEnv()
	require.ErrorIs(t, h.Handle(context.Background(), env), eventbus.ErrPanic)

	done := make(chan error, 1)
	go func() { done <- h.Handle(context.Background(), env) }()
	select {
	case err := <-done:
		require.NoError(t, err, "the panic released the in-flight claim; the redelivery runs")
	case <-time.After(5 * time.Second):
		t.Fatal("a redelivery after a panic blocked on the stale in-flight claim")
	}
	require.Equal(t, 2, calls)
}

func TestConcurrentDuplicatesApplyOnce(t *testing.T) {
	t.Parallel()
	store := idempotency.NewMemoryStore(nil)
	var effect atomic.Int64
	var running atomic.Int64
	var overlap atomic.Bool
	h := idempotency.Wrap(eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		if running.Add(1) > 1 {
			overlap.Store(true)
		}
		defer running.Add(-1)
		time.Sleep(5 * time.Millisecond) // widen the window for duplicates to pile up
		effect.Add(1)
		return nil
	}), store, "billing")
	var dups atomic.Int64
	h.OnDuplicate = func(context.Context, eventbus.Envelope) { dups.Add(1) }
	env := newEnv()

	const deliveries = 50
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, deliveries)
	for range deliveries {
		wg.Go(func() {
			<-start
			errs <- h.Handle(context.Background(), env)
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err, "every duplicate is acknowledged")
	}
	require.EqualValues(t, 1, effect.Load(), "50 concurrent deliveries apply the effect once")
	require.EqualValues(t, deliveries-1, dups.Load())
	require.False(t, overlap.Load(), "the handler never ran twice at once for one event")
}

func TestConcurrentDuplicateRunsWhenFirstFails(t *testing.T) {
	t.Parallel()
	store := idempotency.NewMemoryStore(nil)
	entered := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int64
	h := idempotency.Wrap(eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
			return errors.New("first attempt failed")
		}
		return nil
	}), store, "billing")
	env := newEnv()

	first := make(chan error, 1)
	go func() { first <- h.Handle(context.Background(), env) }()
	<-entered
	second := make(chan error, 1)
	go func() { second <- h.Handle(context.Background(), env) }()
	// The second delivery waits for the first; it has not run yet.
	select {
	case err := <-second:
		t.Fatalf("the concurrent duplicate did not wait: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	require.Error(t, <-first)
	select {
	case err := <-second:
		require.NoError(t, err, "after the first failed, the waiting duplicate runs")
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting duplicate never ran")
	}
	require.EqualValues(t, 2, calls.Load())
}

func TestCancelWhileWaitingForConcurrentDelivery(t *testing.T) {
	t.Parallel()
	store := idempotency.NewMemoryStore(nil)
	entered := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int64
	h := idempotency.Wrap(eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		calls.Add(1)
		close(entered)
		<-release
		return nil
	}), store, "billing")
	env := newEnv()

	first := make(chan error, 1)
	go func() { first <- h.Handle(context.Background(), env) }()
	<-entered

	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() { second <- h.Handle(ctx, env) }()
	cancel()
	select {
	case err := <-second:
		require.ErrorIs(t, err, context.Canceled)
		require.False(t, eventbus.IsPermanent(err), "a cancelled wait is retryable")
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting duplicate ignored its context")
	}
	close(release)
	require.NoError(t, <-first)
	require.EqualValues(t, 1, calls.Load())
}

func TestKeyedPerHandlerName(t *testing.T) {
	t.Parallel()
	store := idempotency.NewMemoryStore(nil)
	var billing, email counter
	hb := idempotency.Wrap(&billing, store, "billing")
	he := idempotency.Wrap(&email, store, "email")
	env := newEnv()
	for range 3 {
		require.NoError(t, hb.Handle(context.Background(), env))
		require.NoError(t, he.Handle(context.Background(), env))
	}
	require.EqualValues(t, 1, billing.n.Load(), "each handler applies its effect once")
	require.EqualValues(t, 1, email.n.Load(), "one handler's marker does not skip another")
	require.Equal(t, 2, store.Len(), "markers: (billing, id) and (email, id)")
}

func TestWrapOnInMemoryBus(t *testing.T) {
	t.Parallel()
	bus := eventbus.NewInMemoryBus(nil)
	t.Cleanup(func() { _ = bus.Close() })
	store := idempotency.NewMemoryStore(nil)
	ctx := context.Background()
	var billing, email counter
	_, err := bus.Subscribe(ctx, "billing", idempotency.Wrap(&billing, store, "billing"), "idemtest.order.paid.v1")
	require.NoError(t, err)
	_, err = bus.Subscribe(ctx, "email", idempotency.Wrap(&email, store, "email"), "idemtest.order.paid.v1")
	require.NoError(t, err)

	env := newEnv()
	require.NoError(t, bus.Publish(ctx, env))
	require.NoError(t, bus.Publish(ctx, env), "a redelivered duplicate is acknowledged")
	require.EqualValues(t, 1, billing.n.Load())
	require.EqualValues(t, 1, email.n.Load())
}

func TestDeleteBeforeRetention(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	store := idempotency.NewMemoryStore(clock)
	var effect counter
	h := idempotency.Wrap(&effect, store, "billing")
	old, recent := newEnv(), newEnv()
	require.NoError(t, h.Handle(context.Background(), old)) // marked at t0
	advance(2 * time.Hour)
	require.NoError(t, h.Handle(context.Background(), recent)) // marked at t0+2h
	require.EqualValues(t, 2, effect.n.Load())

	// A window of 90 minutes at t0+2h: the cutoff is t0+30m.
	window := 90 * time.Minute
	n, err := store.DeleteBefore(context.Background(), clock().Add(-window))
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "only the marker older than the window goes")

	ok, _ := store.IsProcessed(context.Background(), "billing", old.EventID)
	require.False(t, ok)
	ok, _ = store.IsProcessed(context.Background(), "billing", recent.EventID)
	require.True(t, ok)

	// Within the window a redelivery is still deduplicated...
	require.NoError(t, h.Handle(context.Background(), recent))
	require.EqualValues(t, 2, effect.n.Load())
	// ...after it, the documented behaviour: the handler runs again.
	require.NoError(t, h.Handle(context.Background(), old))
	require.EqualValues(t, 3, effect.n.Load())

	// A cutoff exactly at a marker's time keeps it (strictly older only).
	n, err = store.DeleteBefore(context.Background(), t0.Add(2*time.Hour))
	require.NoError(t, err)
	require.Zero(t, n)
}

// With a retention the store stays bounded on its own: expired markers go
// in sweeps as new ones arrive, recent ones stay.
func TestMemoryStoreRetentionBoundsItself(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	store := idempotency.NewMemoryStore(clock)
	store.SetRetention(time.Hour)
	ctx := context.Background()
	mark := func() eventbus.EventID {
		id := eventbus.NewEventID()
		_, err := store.Process(ctx, "dashboard", id, func(context.Context) error { return nil })
		require.NoError(t, err)
		return id
	}
	for range 5000 {
		mark()
	}
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	var recent eventbus.EventID
	for range 5000 {
		recent = mark()
	}
	require.LessOrEqual(t, store.Len(), 5000+1024, "the expired markers were swept")
	ok, err := store.IsProcessed(ctx, "dashboard", recent)
	require.NoError(t, err)
	require.True(t, ok)
}

func TestMisconfiguredHandler(t *testing.T) {
	t.Parallel()
	store := idempotency.NewMemoryStore(nil)
	var c counter
	cases := map[string]*idempotency.Handler{
		"no name":  idempotency.Wrap(&c, store, ""),
		"no store": idempotency.Wrap(&c, nil, "x"),
		"no next":  idempotency.Wrap(nil, store, "x"),
	}
	for name, h := range cases {
		err := h.Handle(context.Background(), newEnv())
		require.ErrorIs(t, err, idempotency.ErrMisconfigured, name)
		require.True(t, eventbus.IsPermanent(err), name)
	}
	h := idempotency.Wrap(&c, store, "x")
	env := newEnv()
	env.EventID = eventbus.EventID{}
	err := h.Handle(context.Background(), env)
	require.ErrorIs(t, err, eventbus.ErrInvalidEnvelope)
	require.True(t, eventbus.IsPermanent(err))
	require.Zero(t, c.n.Load())
}
