package eventbus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/eventbus"
)

func newBus(t *testing.T, cfg *eventbus.InMemoryConfig) *eventbus.InMemoryBus {
	t.Helper()
	b := eventbus.NewInMemoryBus(cfg)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// collect is a handler that appends what it receives.
type collect struct {
	mu   sync.Mutex
	envs []eventbus.Envelope
}

func (c *collect) Handle(_ context.Context, env eventbus.Envelope) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.envs = append(c.envs, env)
	return nil
}

func (c *collect) got() []eventbus.Envelope {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.envs)
}

func (c *collect) types() []string {
	var out []string
	for _, e := range c.got() {
		out = append(out, e.EventType)
	}
	return out
}

func ids(envs []eventbus.Envelope) []eventbus.EventID {
	out := make([]eventbus.EventID, len(envs))
	for i, e := range envs {
		out[i] = e.EventID
	}
	return out
}

func TestInMemoryHandlerInvocation(t *testing.T) {
	t.Parallel()
	bus := newBus(t, nil)
	ctx := context.Background()
	var c collect
	var handlerCtx context.Context
	_, err := bus.Subscribe(ctx, "h", eventbus.HandlerFunc(func(ctx context.Context, env eventbus.Envelope) error {
		handlerCtx = ctx
		return c.Handle(ctx, env)
	}), "order.placed.v1")
	require.NoError(t, err)

	env := eventbus.MustEnvelope(ctx, orderPlaced{OrderID: "o1", Seq: 1})
	require.NoError(t, bus.Publish(ctx, env))
	got := c.got()
	require.Len(t, got, 1, "delivery is synchronous: done when Publish returns")
	require.Equal(t, env.EventID, got[0].EventID)
	require.Equal(t, string(env.Payload), string(got[0].Payload))
	id, ok := eventbus.CausingEvent(handlerCtx)
	require.True(t, ok, "the handler context knows the event it handles")
	require.Equal(t, env.EventID, id)

	// Other types do not reach it.
	require.NoError(t, eventbus.PublishEvents(ctx, bus, orderPaid{OrderID: "o1"}))
	require.Len(t, c.got(), 1)
}

func TestInMemoryEventOrdering(t *testing.T) {
	t.Parallel()
	bus := newBus(t, nil)
	ctx := context.Background()
	var c collect
	_, err := bus.Subscribe(ctx, "h", &c)
	require.NoError(t, err)

	var evs []eventbus.DomainEvent
	for i := range 50 {
		evs = append(evs, orderPlaced{OrderID: "o", Seq: i})
	}
	envs, err := eventbus.NewEnvelopes(ctx, evs...)
	require.NoError(t, err)
	require.NoError(t, bus.Publish(ctx, envs[:20]...))
	for _, e := range envs[20:] {
		require.NoError(t, bus.Publish(ctx, e))
	}
	require.Equal(t, ids(envs), ids(c.got()), "events arrive in publish order")
	require.Equal(t, ids(envs), ids(bus.Published()))
}

func TestInMemoryRegistrationOrderAndSeveralSubscribers(t *testing.T) {
	t.Parallel()
	bus := newBus(t, nil)
	ctx := context.Background()
	var mu sync.Mutex
	var calls []string
	for _, name := range []string{"first", "second", "third"} {
		_, err := bus.Subscribe(ctx, name, eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
			mu.Lock()
			calls = append(calls, name)
			mu.Unlock()
			return nil
		}), "order.placed.v1", "order.paid.v1")
		require.NoError(t, err)
	}
	require.NoError(t, eventbus.PublishEvents(ctx, bus, orderPlaced{OrderID: "o"}, orderPaid{OrderID: "o"}))
	require.Equal(t, []string{"first", "second", "third", "first", "second", "third"}, calls,
		"every subscriber gets every event, in registration order")
}

func TestInMemorySubscribeAllAndPublishAll(t *testing.T) {
	t.Parallel()
	bus := newBus(t, nil)
	ctx := context.Background()
	var all, placed collect
	_, err := bus.Subscribe(ctx, "audit", &all)
	require.NoError(t, err)
	_, err = bus.Subscribe(ctx, "placed", &placed, "order.placed.v1", "order.placed.v1")
	require.NoError(t, err)

	envs, err := eventbus.NewEnvelopes(ctx, orderPlaced{OrderID: "a"}, orderPaid{OrderID: "a"}, sessionCreated{SessionID: "s"}, orderPlaced{OrderID: "b"})
	require.NoError(t, err)
	require.NoError(t, bus.Publish(ctx, envs...))

	require.Equal(t, ids(envs), ids(all.got()), "an all-types subscription sees everything, in order")
	require.Equal(t, []string{"order.placed.v1", "order.placed.v1"}, placed.types())
	require.Equal(t, "b", placed.got()[1].AggregateID)
	require.NoError(t, bus.Publish(ctx), "publishing nothing is fine")
}

func TestInMemoryFailingHandlerDoesNotStopOthers(t *testing.T) {
	t.Parallel()
	bus := newBus(t, nil)
	ctx := context.Background()
	boom := errors.New("boom")
	var before, after collect
	_, err := bus.Subscribe(ctx, "before", &before)
	require.NoError(t, err)
	_, err = bus.Subscribe(ctx, "fails", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { return boom }))
	require.NoError(t, err)
	_, err = bus.Subscribe(ctx, "panics", eventbus.HandlerFunc(func(_ context.Context, env eventbus.Envelope) error {
		if env.EventType == "order.paid.v1" {
			panic("paid twice")
		}
		return nil
	}))
	require.NoError(t, err)
	_, err = bus.Subscribe(ctx, "after", &after)
	require.NoError(t, err)

	envs, err := eventbus.NewEnvelopes(ctx, orderPlaced{OrderID: "o"}, orderPaid{OrderID: "o"})
	require.NoError(t, err)
	err = bus.Publish(ctx, envs...)
	require.Error(t, err)

	require.Len(t, before.got(), 2)
	require.Len(t, after.got(), 2, "handlers after the failing one still run")
	require.Len(t, bus.Published(), 2, "every event is published")

	// Every failure comes back as a *HandlerError, joined.
	var hes []*eventbus.HandlerError
	var walk func(error)
	walk = func(err error) {
		if he, ok := err.(*eventbus.HandlerError); ok {
			hes = append(hes, he)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	require.Len(t, hes, 3, "fails x2 + panics x1: %v", err)
	require.Equal(t, "fails", hes[0].Handler)
	require.Equal(t, envs[0].EventID, hes[0].EventID)
	require.Equal(t, "order.placed.v1", hes[0].EventType)
	require.ErrorIs(t, err, boom)
	require.ErrorIs(t, err, eventbus.ErrPanic, "a panic becomes an error")
	var pe *eventbus.PanicError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "paid twice", pe.Value)
	require.NotEmpty(t, pe.Stack)
}

func TestInMemoryCompetingSubscriptions(t *testing.T) {
	t.Parallel()
	bus := newBus(t, nil)
	ctx := context.Background()
	members := make([]*collect, 3)
	for i := range members {
		members[i] = &collect{}
		sub, err := bus.Subscribe(ctx, "workers", members[i], "order.placed.v1")
		require.NoError(t, err)
		require.Equal(t, "workers", sub.Name())
	}
	var fan collect
	_, err := bus.Subscribe(ctx, "fanout", &fan, "order.placed.v1")
	require.NoError(t, err)

	var evs []eventbus.DomainEvent
	for i := range 30 {
		evs = append(evs, orderPlaced{OrderID: "o", Seq: i})
	}
	envs, err := eventbus.NewEnvelopes(ctx, evs...)
	require.NoError(t, err)
	require.NoError(t, bus.Publish(ctx, envs...))

	seen := map[eventbus.EventID]int{}
	for _, m := range members {
		require.Len(t, m.got(), 10, "round robin shares the events evenly")
		for _, e := range m.got() {
			seen[e.EventID]++
		}
	}
	require.Len(t, seen, 30)
	for id, n := range seen {
		require.Equal(t, 1, n, "event %s went to one member only", id)
	}
	require.Len(t, fan.got(), 30, "a different name gets every event")

	_, err = bus.Subscribe(ctx, "workers", &collect{}, "order.paid.v1")
	require.ErrorIs(t, err, eventbus.ErrDuplicateSubscription, "members of one name must agree on the types")
}

func TestInMemorySubscriptionClose(t *testing.T) {
	t.Parallel()
	bus := newBus(t, nil)
	ctx := context.Background()
	var c collect
	sub, err := bus.Subscribe(ctx, "h", &c)
	require.NoError(t, err)
	require.NoError(t, eventbus.PublishEvents(ctx, bus, orderPlaced{}))
	require.NoError(t, sub.Close())
	require.NoError(t, sub.Close(), "Close is idempotent")
	require.NoError(t, eventbus.PublishEvents(ctx, bus, orderPlaced{}))
	require.Len(t, c.got(), 1, "no delivery after Close")

	// The name can be used again after its last member closed.
	_, err = bus.Subscribe(ctx, "h", &c, "order.paid.v1")
	require.NoError(t, err)
	require.NoError(t, eventbus.PublishEvents(ctx, bus, orderPaid{}))
	require.Len(t, c.got(), 2)
}

func TestInMemorySubscriptionEndsWithContext(t *testing.T) {
	t.Parallel()
	bus := newBus(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var c collect
	_, err := bus.Subscribe(ctx, "h", &c, "order.placed.v1")
	require.NoError(t, err)
	require.NoError(t, eventbus.PublishEvents(context.Background(), bus, orderPlaced{}))
	cancel()
	// The subscription is removed asynchronously (context.AfterFunc);
	// publish until an event is no longer delivered, bounded.
	deadline := time.Now().Add(5 * time.Second)
	for {
		before := len(c.got())
		require.NoError(t, eventbus.PublishEvents(context.Background(), bus, orderPlaced{}))
		if len(c.got()) == before {
			break
		}
		require.True(t, time.Now().Before(deadline), "subscription still active 5s after its ctx was cancelled")
		time.Sleep(time.Millisecond)
	}
	n := len(c.got())
	require.NoError(t, eventbus.PublishEvents(context.Background(), bus, orderPlaced{}))
	require.Len(t, c.got(), n)

	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	_, err = bus.Subscribe(done, "late", &c)
	require.ErrorIs(t, err, context.Canceled)
}

func TestInMemoryBusClose(t *testing.T) {
	t.Parallel()
	bus := eventbus.NewInMemoryBus(nil)
	ctx := context.Background()
	var c collect
	_, err := bus.Subscribe(ctx, "h", &c)
	require.NoError(t, err)
	require.NoError(t, eventbus.PublishEvents(ctx, bus, orderPlaced{}))
	require.NoError(t, bus.Close())
	require.NoError(t, bus.Close(), "Close is idempotent")

	require.ErrorIs(t, eventbus.PublishEvents(ctx, bus, orderPlaced{}), eventbus.ErrClosed)
	_, err = bus.Subscribe(ctx, "h2", &c)
	require.ErrorIs(t, err, eventbus.ErrClosed)
	require.Len(t, c.got(), 1)
	require.Equal(t, 1, bus.Count(), "history stays readable after Close")
}

func TestInMemoryHandlerPublishesFollowUps(t *testing.T) {
	t.Parallel()
	bus := newBus(t, nil)
	ctx := context.Background()
	// placed -> paid (raised by a handler) -> audited by an all-types handler;
	// the handler also subscribes from inside Handle.
	_, err := eventbus.Subscribe(ctx, bus, "payer", func(ctx context.Context, ev orderPlaced, _ eventbus.Envelope) error {
		if _, err := bus.Subscribe(ctx, fmt.Sprintf("late-%d", ev.Seq), &collect{}, "order.paid.v1"); err != nil {
			return err
		}
		return eventbus.PublishEvents(ctx, bus, orderPaid{OrderID: ev.OrderID, Amount: ev.Seq})
	})
	require.NoError(t, err)
	var audit collect
	_, err = bus.Subscribe(ctx, "audit", &audit)
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() {
		done <- eventbus.PublishEvents(ctx, bus, orderPlaced{OrderID: "o", Seq: 1}, orderPlaced{OrderID: "o", Seq: 2})
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("publishing from inside a handler deadlocked")
	}
	// Depth-first: the follow-up is delivered before the next top-level event.
	require.Equal(t, []string{"order.paid.v1", "order.placed.v1", "order.paid.v1", "order.placed.v1"}, audit.types())
	paid := bus.EventsOfType("order.paid.v1")
	require.Len(t, paid, 2)
	placed := bus.EventsOfType("order.placed.v1")
	require.Equal(t, placed[0].EventID.String(), paid[0].Metadata.CausationID)
	require.Equal(t, placed[1].EventID.String(), paid[1].Metadata.CausationID)
}

func TestInMemoryConcurrentPublishSubscribe(t *testing.T) {
	t.Parallel()
	bus := newBus(t, &eventbus.InMemoryConfig{History: -1})
	ctx := context.Background()
	var stable atomic.Int64
	_, err := bus.Subscribe(ctx, "stable", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		stable.Add(1)
		return nil
	}), "order.placed.v1")
	require.NoError(t, err)
	var group atomic.Int64
	_, err = bus.Subscribe(ctx, "group", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		group.Add(1)
		return nil
	}), "order.placed.v1")
	require.NoError(t, err)

	const publishers, perPublisher = 8, 250
	stop := make(chan struct{})
	var churn sync.WaitGroup
	churn.Add(2)
	go func() { // churn: subscriptions come and go while events flow
		defer churn.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			sub, err := bus.Subscribe(ctx, fmt.Sprintf("churn-%d", i%4), &collect{}, "order.placed.v1")
			if err == nil {
				_ = sub.Close()
			}
		}
	}()
	go func() { // extra competing members of "group" come and go
		defer churn.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			sub, err := bus.Subscribe(ctx, "group", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
				group.Add(1)
				return nil
			}), "order.placed.v1")
			if err == nil {
				_ = sub.Close()
			}
		}
	}()

	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range perPublisher {
				if err := eventbus.PublishEvents(ctx, bus, orderPlaced{OrderID: fmt.Sprint(p), Seq: i}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	churn.Wait()
	require.EqualValues(t, publishers*perPublisher, stable.Load(), "no event lost under concurrency")
	require.EqualValues(t, publishers*perPublisher, group.Load(), "competing members share, never drop, never duplicate")
}

func TestInMemoryValidatesEnvelopes(t *testing.T) {
	t.Parallel()
	bus := newBus(t, nil)
	ctx := context.Background()
	var c collect
	_, err := bus.Subscribe(ctx, "h", &c)
	require.NoError(t, err)

	good := eventbus.MustEnvelope(ctx, orderPlaced{})
	noID := good
	noID.EventID = eventbus.EventID{}
	badType := good
	badType.EventType = "OrderPlaced"
	mismatch := good
	mismatch.SchemaVersion = 3
	for name, env := range map[string]eventbus.Envelope{"no id": noID, "bad type": badType, "version mismatch": mismatch} {
		err := bus.Publish(ctx, env)
		require.ErrorIs(t, err, eventbus.ErrInvalidEnvelope, name)
		require.True(t, eventbus.IsPermanent(err), name)
	}
	require.Empty(t, c.got())
	require.Zero(t, bus.Count())

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, bus.Publish(cctx, good), context.Canceled)
	require.Empty(t, c.got())
}

func TestInMemorySubscribeValidates(t *testing.T) {
	t.Parallel()
	bus := newBus(t, nil)
	ctx := context.Background()
	_, err := bus.Subscribe(ctx, "", &collect{})
	require.Error(t, err)
	_, err = bus.Subscribe(ctx, "h", nil)
	require.Error(t, err)
	_, err = bus.Subscribe(ctx, "h", &collect{}, "not versioned")
	require.ErrorIs(t, err, eventbus.ErrInvalidEnvelope)
}

func TestInMemoryHooks(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var log []string
	add := func(s string) { mu.Lock(); log = append(log, s); mu.Unlock() }
	bus := newBus(t, &eventbus.InMemoryConfig{Hooks: &eventbus.Hooks{
		OnPublish: func(_ context.Context, env eventbus.Envelope, err error) {
			add(fmt.Sprintf("publish %s err=%v", env.EventType, err != nil))
		},
		OnDeliver: func(_ context.Context, h string, _ eventbus.Envelope) { add("deliver " + h) },
		OnAck:     func(_ context.Context, h string, _ eventbus.Envelope) { add("ack " + h) },
		OnFail:    func(_ context.Context, h string, _ eventbus.Envelope, _ error) { add("fail " + h) },
	}})
	ctx := context.Background()
	_, err := bus.Subscribe(ctx, "ok", &collect{})
	require.NoError(t, err)
	_, err = bus.Subscribe(ctx, "bad", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { return errors.New("x") }))
	require.NoError(t, err)
	require.Error(t, eventbus.PublishEvents(ctx, bus, orderPlaced{}))
	bad := eventbus.MustEnvelope(ctx, orderPlaced{})
	bad.EventID = eventbus.EventID{}
	require.Error(t, bus.Publish(ctx, bad))
	require.Equal(t, []string{
		"publish order.placed.v1 err=false", "deliver ok", "ack ok", "deliver bad", "fail bad",
		"publish order.placed.v1 err=true",
	}, log)
}

func TestInMemoryHistoryHelpers(t *testing.T) {
	t.Parallel()
	bus := newBus(t, nil)
	ctx := context.Background()
	envs, err := eventbus.NewEnvelopes(ctx,
		orderPlaced{OrderID: "a", Seq: 1}, orderPaid{OrderID: "a"}, orderPlaced{OrderID: "b", Seq: 2}, sessionCreated{SessionID: "a"})
	require.NoError(t, err)
	require.NoError(t, bus.Publish(ctx, envs...), "publishing with no subscriber is fine")

	require.Equal(t, 4, bus.Count())
	require.Equal(t, ids(envs), ids(bus.Published()))
	require.Equal(t, []eventbus.EventID{envs[0].EventID, envs[2].EventID}, ids(bus.EventsOfType("order.placed.v1")))
	require.Equal(t, []eventbus.EventID{envs[0].EventID, envs[1].EventID, envs[3].EventID}, ids(bus.EventsForAggregate("a")))
	require.Empty(t, bus.EventsOfType("nothing.v1"))
	require.Equal(t, []eventbus.EventID{envs[1].EventID}, ids(bus.Filter(func(e eventbus.Envelope) bool { return e.EventType == "order.paid.v1" })))
	require.True(t, bus.HasPublished(envs[3].EventID))
	require.False(t, bus.HasPublished(eventbus.NewEventID()))

	// Published returns a copy.
	p := bus.Published()
	p[0].AggregateID = "mutated"
	require.Equal(t, "a", bus.Published()[0].AggregateID)

	bus.Clear()
	require.Zero(t, bus.Count())
	require.Empty(t, bus.Published())
	require.NoError(t, eventbus.PublishEvents(ctx, bus, orderPaid{OrderID: "c"}))
	require.Equal(t, 1, bus.Count(), "recording continues after Clear")
}

func TestInMemoryHistoryRing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bus := newBus(t, &eventbus.InMemoryConfig{History: 3})
	var evs []eventbus.DomainEvent
	for i := range 7 {
		evs = append(evs, orderPlaced{OrderID: "o", Seq: i})
	}
	envs, err := eventbus.NewEnvelopes(ctx, evs...)
	require.NoError(t, err)
	for i, e := range envs {
		require.NoError(t, bus.Publish(ctx, e))
		want := envs[max(0, i-2) : i+1]
		require.Equal(t, ids(want), ids(bus.Published()), "after %d publishes the newest 3 are kept, oldest first", i+1)
	}
	bus.Clear()
	require.NoError(t, bus.Publish(ctx, envs[0]))
	require.Equal(t, ids(envs[:1]), ids(bus.Published()))

	none := newBus(t, &eventbus.InMemoryConfig{History: -1})
	require.NoError(t, none.Publish(ctx, envs...))
	require.Zero(t, none.Count(), "a negative History keeps nothing")
	require.Empty(t, none.Published())

	def := newBus(t, nil)
	for range 3 {
		require.NoError(t, def.Publish(ctx, envs...))
	}
	require.Equal(t, 21, def.Count(), "the default keeps DefaultHistory (%d)", eventbus.DefaultHistory)
}

func TestInMemoryWaitFor(t *testing.T) {
	t.Parallel()
	bus := newBus(t, nil)
	ctx := context.Background()
	release := make(chan struct{})
	go func() {
		<-release
		for i := range 5 {
			_ = eventbus.PublishEvents(ctx, bus, orderPlaced{OrderID: "o", Seq: i})
		}
		_ = eventbus.PublishEvents(ctx, bus, orderPaid{OrderID: "o"})
	}()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	close(release)
	got, err := bus.WaitForCount(wctx, "order.placed.v1", 5)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(got), 5)
	for _, e := range got {
		require.Equal(t, "order.placed.v1", e.EventType)
	}
	snap, err := bus.WaitFor(wctx, func(es []eventbus.Envelope) bool {
		return slices.ContainsFunc(es, func(e eventbus.Envelope) bool { return e.EventType == "order.paid.v1" })
	})
	require.NoError(t, err)
	require.Len(t, snap, 6)
	all, err := bus.WaitForCount(wctx, "", 6)
	require.NoError(t, err)
	require.Len(t, all, 6)

	// A condition that never holds returns when ctx ends, with the last snapshot.
	short, cancel2 := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel2()
	snap, err = bus.WaitFor(short, func([]eventbus.Envelope) bool { return false })
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Len(t, snap, 6)
	_, err = bus.WaitForCount(short, "order.placed.v1", 100)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// Clear wakes a WaitFor whose condition holds once the history is empty.
func TestInMemoryWaitForWakesOnClear(t *testing.T) {
	t.Parallel()
	bus := newBus(t, nil)
	ctx := context.Background()
	require.NoError(t, eventbus.PublishEvents(ctx, bus, orderPlaced{OrderID: "o"}))
	done := make(chan error, 1)
	go func() {
		_, err := bus.WaitFor(ctx, func(es []eventbus.Envelope) bool { return len(es) == 0 })
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it check once and wait
	bus.Clear()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("WaitFor was not woken by Clear")
	}
}

func TestInMemoryPublishRejectsBatchWithInvalidEnvelopeBeforeDelivering(t *testing.T) {
	t.Parallel()
	bus := eventbus.NewInMemoryBus(nil)
	ctx := context.Background()
	var delivered int
	if _, err := bus.Subscribe(ctx, "h", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		delivered++
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	good := eventbus.MustEnvelope(ctx, benchEvent{ID: "a"})
	bad := good
	bad.EventID = eventbus.EventID{}
	err := bus.Publish(ctx, good, bad)
	if !errors.Is(err, eventbus.ErrInvalidEnvelope) {
		t.Fatalf("Publish = %v, want ErrInvalidEnvelope", err)
	}
	if delivered != 0 || bus.Count() != 0 {
		t.Fatalf("delivered %d, recorded %d; want nothing from a rejected batch", delivered, bus.Count())
	}
}

// A subscription closed while a Publish is dispatching (here: by a handler
// that runs before it) gets no delivery once Close returned; a competing
// member of its name gets the event instead.
func TestInMemoryNoDeliveryAfterCloseWithinDispatch(t *testing.T) {
	t.Parallel()
	bus := newBus(t, nil)
	ctx := context.Background()
	var toClose []eventbus.Subscription
	_, err := bus.Subscribe(ctx, "closer", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		for _, s := range toClose {
			require.NoError(t, s.Close())
		}
		return nil
	}), "order.placed.v1")
	require.NoError(t, err)
	var alone, memberA, memberB collect
	subAlone, err := bus.Subscribe(ctx, "alone", &alone, "order.placed.v1")
	require.NoError(t, err)
	subA, err := bus.Subscribe(ctx, "workers", &memberA, "order.placed.v1")
	require.NoError(t, err)
	_, err = bus.Subscribe(ctx, "workers", &memberB, "order.placed.v1")
	require.NoError(t, err)
	toClose = []eventbus.Subscription{subAlone, subA}

	for range 2 {
		require.NoError(t, eventbus.PublishEvents(ctx, bus, orderPlaced{}))
	}
	require.Empty(t, alone.got(), "a closed subscription received an event")
	require.Empty(t, memberA.got(), "a closed member received an event")
	require.Len(t, memberB.got(), 2, "the open member of the group got every event")
}

// A context cancelled in the middle of a batch stops it, and the errors of
// the envelopes already delivered are not lost.
func TestInMemoryCancelMidBatchKeepsHandlerErrors(t *testing.T) {
	t.Parallel()
	bus := newBus(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	boom := errors.New("boom")
	var calls atomic.Int64
	_, err := bus.Subscribe(ctx, "h", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		calls.Add(1)
		cancel()
		return boom
	}), "order.placed.v1")
	require.NoError(t, err)
	envs, err := eventbus.NewEnvelopes(context.Background(), orderPlaced{Seq: 1}, orderPlaced{Seq: 2})
	require.NoError(t, err)
	err = bus.Publish(ctx, envs...)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, boom, "the first envelope's handler error is reported too")
	var he *eventbus.HandlerError
	require.ErrorAs(t, err, &he)
	require.Equal(t, envs[0].EventID, he.EventID)
	require.EqualValues(t, 1, calls.Load(), "the second envelope was not delivered")
}

// A context ending while Subscribe runs closes the new subscription
// without racing with Subscribe (run with -race).
func TestSubscribeWhileItsContextEnds(t *testing.T) {
	b := newBus(t, nil)
	h := eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { return nil })
	for range 2000 {
		ctx, cancel := context.WithCancel(context.Background())
		go cancel()
		if sub, err := b.Subscribe(ctx, "racer", h); err == nil {
			_ = sub.Close()
		}
	}
}

// The test double rejects what the Redis bus and the outbox reject.
func TestInMemoryPublishValidatesPayloadAndTime(t *testing.T) {
	t.Parallel()
	bus := newBus(t, nil)
	ctx := context.Background()
	var delivered atomic.Int64
	_, err := bus.Subscribe(ctx, "all", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		delivered.Add(1)
		return nil
	}))
	require.NoError(t, err)
	for name, spoil := range map[string]func(*eventbus.Envelope){
		"invalid JSON":   func(e *eventbus.Envelope) { e.Payload = []byte(`{"a":`) },
		"nil payload":    func(e *eventbus.Envelope) { e.Payload = nil },
		"null payload":   func(e *eventbus.Envelope) { e.Payload = []byte(`null`) },
		"no occurred_at": func(e *eventbus.Envelope) { e.OccurredAt = time.Time{} },
	} {
		env := eventbus.MustEnvelope(ctx, orderPlaced{OrderID: "o"})
		spoil(&env)
		require.ErrorIs(t, bus.Publish(ctx, env), eventbus.ErrInvalidEnvelope, name)
	}
	require.Zero(t, delivered.Load())
	require.Zero(t, bus.Count())
}
