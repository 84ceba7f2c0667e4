package eventbustest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/eventbus"
)

// D1: publish/subscribe, topic isolation, subscribe-to-all, Close ends delivery.
func testPublishSubscribe(t *testing.T, s *suite) {
	b := s.bus()
	ctx := context.Background()
	typeA, typeB := s.eventType("a"), s.eventType("b")
	recA, recB, recAll := NewRecorder(), NewRecorder(), NewRecorder()
	subA := s.subscribe(ctx, b, s.name("a"), recA, typeA)
	s.subscribe(ctx, b, s.name("b"), recB, typeB)
	s.subscribe(ctx, b, s.name("all"), recAll)

	envsA := s.envelopes(typeA, 100, nil)
	envB := s.envelopes(typeB, 1, nil)
	s.publish(b, 1, envsA[:50])  // one per call
	s.publish(b, 10, envsA[50:]) // several per call
	s.publish(b, 1, envB)

	if !s.f.Async {
		if got := recA.Unique(); got != 100 {
			t.Fatalf("synchronous bus: %d of 100 events handled when Publish returned", got)
		}
	}
	if err := recA.WaitForUnique(100, s.f.Timeout); err != nil {
		t.Fatal("topic A:", err)
	}
	if err := recB.WaitForUnique(1, s.f.Timeout); err != nil {
		t.Fatal("topic B:", err)
	}
	ours := func(ok []eventbus.Envelope) bool { return uniqueIDs(filterTypes(ok, typeA, typeB)) >= 101 }
	if !recAll.Wait(s.f.Timeout, ours) {
		t.Fatalf("all-types subscription: %d of 101 events", uniqueIDs(filterTypes(recAll.Envelopes(), typeA, typeB)))
	}
	s.settle()
	assertSameSet(t, "topic A", envsA, recA.Envelopes())
	assertSameSet(t, "topic B (isolation)", envB, recB.Envelopes())
	assertSameSet(t, "all types", append(envsA, envB...), filterTypes(recAll.Envelopes(), typeA, typeB))

	// Closing the subscription ends delivery to it.
	timed(t, "Subscription.Close", CloseWithin, subA.Close)
	timed(t, "second Subscription.Close", CloseWithin, subA.Close)
	before := recA.Count()
	s.publish(b, 5, s.envelopes(typeA, 5, nil))
	marker := s.envelopes(typeB, 1, nil)
	s.publish(b, 1, marker)
	if err := recB.WaitForUnique(2, s.f.Timeout); err != nil {
		t.Fatal("topic B after closing A:", err)
	}
	s.settle()
	if got := recA.Count(); got != before {
		t.Fatalf("%d deliveries to a closed subscription", got-before)
	}

	// Closing the bus ends everything; later calls report ErrClosed.
	timed(t, "Bus.Close", CloseWithin, b.Close)
	if err := b.Close(); err != nil {
		t.Fatalf("second Bus.Close: %v", err)
	}
	if err := b.Publish(ctx, s.envelopes(typeA, 1, nil)...); !errors.Is(err, eventbus.ErrClosed) {
		t.Fatalf("Publish on a closed bus: %v, want ErrClosed", err)
	}
	if _, err := b.Subscribe(ctx, s.name("late"), NewRecorder(), typeA); !errors.Is(err, eventbus.ErrClosed) {
		t.Fatalf("Subscribe on a closed bus: %v, want ErrClosed", err)
	}
}

// D2: competing consumers within a name, fan-out across names, many publishers.
func testConsumerGroups(t *testing.T, s *suite) {
	n := s.size(5000, 200)
	publishers := s.size(50, 5)
	consumers := 10
	if !s.f.ConsumerGroups {
		consumers = 1
	}
	typ := s.eventType("work")
	ctx := context.Background()

	// Competing consumers of one name live on separate buses when the bus
	// is multi-instance (a durable bus may refuse a name twice on one
	// instance: one process, one consumer); otherwise on one bus.
	base := s.bus()
	buses := []eventbus.Bus{base}
	if s.f.MultiInstance && s.f.ConsumerGroups {
		for range consumers - 1 {
			buses = append(buses, s.bus())
		}
	}
	g1 := make([]*Recorder, consumers)
	for i := range g1 {
		g1[i] = NewRecorder()
		s.subscribe(ctx, buses[i%len(buses)], s.name("g1"), g1[i], typ)
	}
	g2 := NewRecorder()
	s.subscribe(ctx, buses[len(buses)-1], s.name("g2"), g2, typ)

	envs := s.envelopes(typ, n, nil)
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Go(func() {
			b := buses[p%len(buses)]
			for i := p; i < n; i += publishers {
				if err := b.Publish(ctx, envs[i]); err != nil {
					errs <- fmt.Errorf("publisher %d: %w", p, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	s.waitFor(fmt.Sprintf("group 1 (%d consumers) to receive %d events", consumers, n), func() bool {
		return uniqueIDs(union(g1...)) >= n
	})
	if err := g2.WaitForUnique(n, s.f.Timeout); err != nil {
		t.Fatal("group 2:", err)
	}
	s.settle()
	all1 := union(g1...)
	assertSameSet(t, "group 1", envs, all1)
	assertSameSet(t, "group 2", envs, g2.Envelopes())
	if len(all1) != n {
		t.Errorf("group 1: %d deliveries for %d events; with no faults each event goes to exactly one consumer of a group", len(all1), n)
	}
	if got := g2.Count(); got != n {
		t.Errorf("group 2: %d deliveries for %d events, want exactly once", got, n)
	}
	dist := make([]int, consumers)
	for i, r := range g1 {
		dist[i] = r.Count()
	}
	t.Logf("%d events from %d publishers; group 1 split over %d consumers on %d buses: %v", n, publishers, consumers, len(buses), dist)
}

// D3: errors are returned (synchronous buses) or redelivered (durable buses).
func testErrors(t *testing.T, s *suite) {
	if s.f.Redelivery {
		testRedelivery(t, s)
		return
	}
	b := s.bus()
	ctx := context.Background()
	typ := s.eventType("err")
	failing, other := NewRecorder(), NewRecorder()
	failing.FailNext(2, nil)
	s.subscribe(ctx, b, s.name("failing"), failing, typ)
	s.subscribe(ctx, b, s.name("other"), other, typ)

	envs := s.envelopes(typ, 10, nil)
	for i, env := range envs {
		err := b.Publish(ctx, env)
		if s.f.Async {
			if err != nil {
				t.Fatalf("Publish: %v", err)
			}
			continue
		}
		if i >= 2 {
			if err != nil {
				t.Fatalf("Publish %d: %v, want nil once the handler recovered", i, err)
			}
			continue
		}
		if !errors.Is(err, ErrInjected) {
			t.Fatalf("Publish %d: %v, want the handler's error (ErrInjected)", i, err)
		}
		var he *eventbus.HandlerError
		if !errors.As(err, &he) {
			t.Fatalf("Publish %d: %v is not an *eventbus.HandlerError", i, err)
		}
		if he.Handler != s.name("failing") || he.EventID != env.EventID || he.EventType != typ {
			t.Fatalf("HandlerError names %q %s %s, want %q %s %s", he.Handler, he.EventType, he.EventID, s.name("failing"), typ, env.EventID)
		}
	}
	if err := other.WaitForUnique(10, s.f.Timeout); err != nil {
		t.Fatal("a failing handler must not stop the others:", err)
	}
	if err := failing.WaitForUnique(8, s.f.Timeout); err != nil {
		t.Fatal("the failing handler must go on after errors:", err)
	}
	s.settle()
	if got := failing.Attempts(); got != 10 {
		t.Fatalf("%d deliveries to the failing handler, want 10: a bus without Redelivery does not redeliver", got)
	}
	if failing.Has(envs[0].EventID) || failing.Has(envs[1].EventID) {
		t.Fatal("a failed event was redelivered")
	}
	assertSameSet(t, "other handler", envs, other.Envelopes())

	if !s.f.Async {
		failing.FailNext(1, eventbus.Permanent(errors.New("bad input")))
		err := b.Publish(ctx, s.envelopes(typ, 1, nil)...)
		if !eventbus.IsPermanent(err) {
			t.Fatalf("Publish: %v, want the handler's permanent error", err)
		}
	}
}

// testRedelivery is D3 for durable buses: nacked events come back until
// they succeed, also across several failing subscribers.
func testRedelivery(t *testing.T, s *suite) {
	ctx := context.Background()
	budget := 1 << 30
	if s.f.MaxDeliveries > 0 {
		budget = s.f.MaxDeliveries - 1
		if budget < 1 {
			t.Skip("MaxDeliveries < 2 leaves no room for a redelivery")
		}
	}
	b := s.bus()

	// Resend on error: the first two deliveries fail.
	typ := s.eventType("resend")
	rec := NewRecorder()
	rec.FailNext(2, nil)
	s.subscribe(ctx, b, s.name("resend"), rec, typ)
	envs := s.envelopes(typ, 100, nil)
	s.publish(b, 10, envs)
	if err := rec.WaitForUnique(len(envs), s.f.Timeout); err != nil {
		t.Fatal("resend on error:", err)
	}
	assertSameSet(t, "resend on error", envs, rec.Envelopes())
	if rec.Failures() != 2 {
		t.Fatalf("%d failures, want 2", rec.Failures())
	}

	// Continue after errors: three subscribers in turn fail deliveries in a
	// row, then a healthy one handles everything.
	typ2 := s.eventType("cont")
	m := 50
	perInstance := min(s.size(100, 10), m*min(budget, 3)/4)
	var failures guard
	ok := NewRecorder()
	var instFailed atomic.Int64
	failingHandler := eventbus.HandlerFunc(func(ctx context.Context, env eventbus.Envelope) error {
		if instFailed.Load() < int64(perInstance) && failures.take(env.EventID, budget) {
			instFailed.Add(1)
			return ErrInjected
		}
		return ok.Handle(ctx, env)
	})
	envs2 := s.envelopes(typ2, m, nil)
	for i := range 3 {
		instFailed.Store(0)
		inst := b
		if s.f.Persistent {
			inst = s.instance(b)
		}
		sub := s.subscribe(ctx, inst, s.name("cont"), failingHandler, typ2)
		if i == 0 {
			s.publish(b, 10, envs2)
		}
		s.waitFor(fmt.Sprintf("failing subscriber %d to fail %d deliveries", i+1, perInstance), func() bool {
			return instFailed.Load() >= int64(perInstance) || ok.Unique() == m
		})
		if s.f.Persistent {
			timed(t, "Subscription.Close", CloseWithin, sub.Close)
			if inst != b {
				timed(t, "Bus.Close", CloseWithin, inst.Close)
			}
		} else {
			break // keep the one subscription: events live only while it does
		}
	}
	instFailed.Store(1 << 40) // no more failures
	if s.f.Persistent {
		s.subscribe(ctx, s.instance(b), s.name("cont"), ok, typ2)
	}
	if err := ok.WaitForUnique(m, s.f.Timeout); err != nil {
		t.Fatal("continue after errors:", err)
	}
	assertSameSet(t, "continue after errors", envs2, ok.Envelopes())
	if got := failures.max(); got > budget {
		t.Fatalf("an event failed %d times, more than MaxDeliveries-1 = %d", got, budget)
	}
}

// D4: close, reopen and context cancellation lose nothing (Persistent).
func testCloseReopen(t *testing.T, s *suite) {
	if !s.f.Persistent {
		t.Skip("the bus is not Persistent: events published while nobody subscribes are not kept")
	}
	ctx := context.Background()
	n := s.size(5000, 250)
	const batches = 5
	batch := n / batches
	typ := s.eventType("reopen")
	name := s.name("reopen")

	b0 := s.bus()
	first := s.subscribe(ctx, b0, name, NewRecorder(), typ) // registers the name
	timed(t, "Subscription.Close", CloseWithin, first.Close)
	envs := s.envelopes(typ, n, nil)
	s.publish(b0, 50, envs)
	if s.f.MultiInstance {
		timed(t, "Bus.Close", CloseWithin, b0.Close) // the events must outlive the bus that published them
	}

	all := NewRecorder()
	rounds := 0
	for i := 0; i < batches*4 && all.Unique() < n; i++ {
		rounds++
		inst := b0
		if s.f.MultiInstance {
			inst = s.bus()
		}
		subCtx, cancel := context.WithCancel(ctx)
		sub := s.subscribe(subCtx, inst, name, all, typ)
		target := min(n, all.Unique()+batch)
		if err := all.WaitForUnique(target, s.f.Timeout); err != nil {
			cancel()
			t.Fatalf("round %d: %v", rounds, err)
		}
		if i == 1 {
			cancel() // a context cancellation mid-stream instead of Close
		}
		timed(t, "Subscription.Close", CloseWithin, sub.Close)
		cancel()
		if inst != b0 {
			timed(t, "Bus.Close", CloseWithin, inst.Close)
		}
	}
	if err := all.WaitForUnique(n, time.Millisecond); err != nil {
		t.Fatalf("after %d subscribers: %v", rounds, err)
	}
	assertSameSet(t, "close and reopen", envs, all.Envelopes())
	t.Logf("%d events read by %d successive subscribers (%d deliveries)", n, rounds, all.Count())
}

// D4: cancelling the subscription's context ends it within CloseWithin;
// on a Persistent bus the next subscriber gets what came after.
func testContextCancel(t *testing.T, s *suite) {
	b := s.bus()
	typ := s.eventType("cancel")
	name := s.name("cancel")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := NewRecorder()
	s.subscribe(ctx, b, name, rec, typ)

	var published []eventbus.Envelope
	pub := func() eventbus.Envelope {
		env := s.envelopes(typ, 1, nil)
		s.publish(b, 1, env)
		published = append(published, env...)
		return env[0]
	}
	pub()
	if err := rec.WaitForUnique(1, s.f.Timeout); err != nil {
		t.Fatal(err)
	}

	cancel()
	deadline := time.Now().Add(CloseWithin)
	for {
		probe := pub()
		s.settle()
		if !rec.Has(probe.EventID) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events still delivered %s after the subscription's context was cancelled", CloseWithin)
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := rec.Count()
	for range 3 {
		pub()
	}
	s.settle()
	if got := rec.Count(); got != before {
		t.Fatalf("%d deliveries after the subscription ended", got-before)
	}

	if s.f.Persistent {
		next := NewRecorder()
		s.subscribe(context.Background(), s.instance(b), name, next, typ)
		s.waitFor("the next subscriber to receive what the cancelled one missed", func() bool {
			return uniqueIDs(append(rec.Envelopes(), next.Envelopes()...)) >= len(published)
		})
		assertSameSet(t, "cancel and resubscribe", published, append(rec.Envelopes(), next.Envelopes()...))
	}
}

// D5: per-aggregate (or total) order for a single subscriber, where promised.
func testOrder(t *testing.T, s *suite) {
	if !s.f.OrderedPerAggregate {
		t.Skip("the bus promises no order")
	}
	ctx := context.Background()
	b := s.bus()
	n := s.size(1000, 200)
	const keys = 16
	typ := s.eventType("ordered")
	rec := NewRecorder()
	s.subscribe(ctx, b, s.name("ordered"), rec, typ)
	envs := s.envelopes(typ, n, func(i int) string { return fmt.Sprintf("key-%02d", i%keys) })
	s.publish(b, 1, envs[:n/2])
	s.publish(b, 7, envs[n/2:])
	if err := rec.WaitForUnique(n, s.f.Timeout); err != nil {
		t.Fatal(err)
	}
	assertSameSet(t, "ordered", envs, rec.Envelopes())

	// First successful delivery of each id, in completion order.
	seen := map[eventbus.EventID]bool{}
	var got []eventbus.Envelope
	for _, e := range rec.Envelopes() {
		if !seen[e.EventID] {
			seen[e.EventID] = true
			got = append(got, e)
		}
	}
	perKey := func(envs []eventbus.Envelope) map[string][]eventbus.EventID {
		m := map[string][]eventbus.EventID{}
		for _, e := range envs {
			m[e.AggregateID] = append(m[e.AggregateID], e.EventID)
		}
		return m
	}
	want, have := perKey(envs), perKey(got)
	for k, ids := range want {
		for i := range ids {
			if i >= len(have[k]) || have[k][i] != ids[i] {
				t.Fatalf("aggregate %s: event %d of %d arrived out of publish order", k, i, len(ids))
			}
		}
	}
	if s.f.GuaranteedOrder {
		for i := range envs {
			if got[i].EventID != envs[i].EventID {
				t.Fatalf("event %d of %d arrived out of publish order", i, n)
			}
		}
	}
}

// causeEvent is a DomainEvent whose type is chosen at run time.
type causeEvent struct {
	typ string
	N   int `json:"n"`
}

func (e causeEvent) EventType() string   { return e.typ }
func (causeEvent) AggregateID() string   { return "cause" }
func (causeEvent) AggregateType() string { return "conformance" }

// The handler's context identifies the event, and events raised in it get
// causation and correlation (eventbus.ContextWithEvent); publishing from a
// handler does not deadlock.
func testHandlerContext(t *testing.T, s *suite) {
	b := s.bus()
	ctx := context.Background()
	typA, typB := s.eventType("cause"), s.eventType("effect")
	var mu sync.Mutex
	var problems []string
	s.subscribe(ctx, b, s.name("raiser"), eventbus.HandlerFunc(func(ctx context.Context, env eventbus.Envelope) error {
		if id, ok := eventbus.CausingEvent(ctx); !ok || id != env.EventID {
			mu.Lock()
			problems = append(problems, fmt.Sprintf("CausingEvent = %s, %v; want %s (the bus must call eventbus.ContextWithEvent)", id, ok, env.EventID))
			mu.Unlock()
		}
		return eventbus.PublishEvents(ctx, b, causeEvent{typ: typB, N: 1})
	}), typA)
	effects := NewRecorder()
	s.subscribe(ctx, b, s.name("effects"), effects, typB)

	cause := s.envelopes(typA, 1, nil)
	cause[0].Metadata = eventbus.Metadata{CorrelationID: "corr-" + s.prefix, UserID: "user-1", TraceParent: "00-aa-bb-01"}
	done := make(chan error, 1)
	go func() { done <- b.Publish(ctx, cause...) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
	case <-time.After(s.f.Timeout):
		t.Fatal("Publish did not return: publishing from inside a handler deadlocks")
	}
	if err := effects.WaitFor(1, s.f.Timeout); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Fatal(problems[0])
	}
	got := effects.Envelopes()[0].Metadata
	want := eventbus.Metadata{CausationID: cause[0].EventID.String(), CorrelationID: "corr-" + s.prefix, UserID: "user-1", TraceParent: "00-aa-bb-01"}
	if got != want {
		t.Fatalf("metadata of the raised event: %+v, want %+v", got, want)
	}
}

// Invalid envelopes are refused at Publish with a permanent error.
func testInvalidEnvelope(t *testing.T, s *suite) {
	b := s.bus()
	ctx := context.Background()
	typ := s.eventType("invalid")
	rec := NewRecorder()
	s.subscribe(ctx, b, s.name("invalid"), rec, typ)
	cases := map[string]func(*eventbus.Envelope){
		"zero id":          func(e *eventbus.Envelope) { e.EventID = eventbus.EventID{} },
		"unversioned type": func(e *eventbus.Envelope) { e.EventType = "NotVersioned" },
		"version mismatch": func(e *eventbus.Envelope) { e.SchemaVersion = 7 },
	}
	for name, mutate := range cases {
		env := s.envelopes(typ, 1, nil)[0]
		mutate(&env)
		err := b.Publish(ctx, env)
		if !errors.Is(err, eventbus.ErrInvalidEnvelope) || !eventbus.IsPermanent(err) {
			t.Errorf("%s: Publish returned %v, want a permanent ErrInvalidEnvelope", name, err)
		}
	}
	s.settle()
	if got := rec.Attempts(); got != 0 {
		t.Fatalf("%d invalid envelopes were delivered", got)
	}
}

// Closing the bus while publishers and subscriptions are busy is safe:
// publishers get ErrClosed, nothing panics, hangs or leaks.
func testConcurrentClose(t *testing.T, s *suite) {
	b := s.bus()
	ctx := context.Background()
	typ := s.eventType("closing")
	rec := NewRecorder()
	subs := []eventbus.Subscription{
		s.subscribe(ctx, b, s.name("c1"), rec, typ),
		s.subscribe(ctx, b, s.name("c2"), NewRecorder(), typ),
	}
	const publishers = 4
	errs := make(chan error, publishers)
	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			for range 200_000 {
				env := s.envelopes(typ, 1, nil)
				if err := b.Publish(ctx, env...); err != nil {
					errs <- err
					return
				}
			}
			errs <- errors.New("publisher never saw the bus close")
		})
	}
	if err := rec.WaitFor(10, s.f.Timeout); err != nil {
		t.Fatal(err)
	}
	var closers sync.WaitGroup
	for _, sub := range subs {
		closers.Go(func() { _ = sub.Close() })
	}
	timed(t, "Bus.Close under load", CloseWithin, b.Close)
	closers.Wait()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.f.Timeout):
		t.Fatal("publishers still running after Close")
	}
	close(errs)
	for err := range errs {
		if !errors.Is(err, eventbus.ErrClosed) {
			t.Errorf("a publisher stopped with %v, want ErrClosed", err)
		}
	}
}
