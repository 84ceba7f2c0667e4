package eventbustest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/choicesherpa/eventkit/eventbus"
)

// Factory opens a new bus for the test t. The suite closes every bus it
// gets. Calls with the same t must share storage when Features.MultiInstance
// is set (the suite then models several processes and restarts with several
// buses); the suite uses its own event types and names in every subtest, so
// sharing storage between subtests is harmless.
type Factory func(t *testing.T) eventbus.Bus

// Features tells the suite what a bus promises. Scenarios a bus does not
// claim are skipped or checked in their weaker form; what it claims must hold.
type Features struct {
	// Async is set when delivery may happen after Publish returns. When it
	// is false the suite checks that Publish returns only after every
	// matching handler has run, and that handler errors come back from
	// Publish unless Redelivery is set. Defaults to false (synchronous).
	Async bool
	// Persistent is set when events outlive subscribers: once a
	// subscription name has subscribed, events published while none of its
	// subscribers is open (closed, context cancelled, bus closed and
	// reopened) are delivered when one subscribes again. Defaults to false.
	Persistent bool
	// MultiInstance is set when buses opened by the Factory for one test
	// share storage, so subscribers on different buses under one name
	// compete, and a bus opened after another was closed sees its events.
	// Defaults to false: every scenario then uses a single bus.
	MultiInstance bool
	// ConsumerGroups is set when subscriptions that share a name compete
	// (each event goes to one of them) while different names each get every
	// event. With MultiInstance the competing subscriptions are made on
	// separate buses (one per consumer, as separate processes would), so a
	// bus may refuse a name twice; without it they are made on one bus.
	// Defaults to false: only the fan-out half is checked.
	ConsumerGroups bool
	// Redelivery is set when a handler error makes the bus deliver the event
	// again later (a durable bus). When false, the suite expects a
	// synchronous bus to return the error from Publish and not to deliver
	// the event again. Defaults to false.
	Redelivery bool
	// MaxDeliveries is how many deliveries a Redelivery bus makes before it
	// dead-letters an event; the suite never fails an event that often.
	// Defaults to 0: unlimited.
	MaxDeliveries int
	// GuaranteedOrder is set when a single subscriber receives events in
	// publish order. Defaults to false.
	GuaranteedOrder bool
	// OrderedPerAggregate is set when a single subscriber receives the
	// events of one aggregate in publish order (implied by GuaranteedOrder).
	// Defaults to false.
	OrderedPerAggregate bool
	// Scale is the fraction of the full RELIABILITY.md sizes to run
	// (5000 events in D2 and D4, 1000 in D5). Defaults to DefaultScale, or
	// 1 when the environment variable EVENTKIT_FULL is "1".
	Scale float64
	// Timeout bounds every wait for an expected delivery. Buses that
	// redeliver after a delay need it well above their redelivery delay.
	// Defaults to DefaultTimeout.
	Timeout time.Duration
	// Settle is how long the suite watches an asynchronous bus to be sure
	// that something does not happen (a delivery after Close, a duplicate).
	// Defaults to DefaultSettle; unused when Async is false.
	Settle time.Duration
	// NoLeakCheck turns off the check that goroutines are back to their
	// baseline after each subtest. Set it when Run is called from a parallel
	// test or the bus keeps goroutines by design. Defaults to false.
	NoLeakCheck bool
}

// Defaults for Features.
const (
	DefaultScale   = 0.1
	DefaultTimeout = 10 * time.Second
	DefaultSettle  = 200 * time.Millisecond
	// CloseWithin is how fast Close and context cancellation must end
	// delivery (RELIABILITY.md D1).
	CloseWithin = time.Second
)

func (f Features) withDefaults() Features {
	if f.Scale <= 0 {
		f.Scale = DefaultScale
		if os.Getenv("EVENTKIT_FULL") == "1" {
			f.Scale = 1
		}
	}
	if f.Timeout <= 0 {
		f.Timeout = DefaultTimeout
	}
	if f.Settle <= 0 {
		f.Settle = DefaultSettle
	}
	if f.GuaranteedOrder {
		f.OrderedPerAggregate = true
	}
	return f
}

// Run runs the conformance suite as subtests of t, one bus (or several,
// see Features.MultiInstance) per subtest. The subtests run one after
// another so the goroutine check after each is meaningful.
func Run(t *testing.T, factory Factory, features Features) {
	t.Helper()
	if factory == nil {
		t.Fatal("eventbustest: nil Factory")
	}
	f := features.withDefaults()
	tests := []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"D1_PublishSubscribe", testPublishSubscribe},
		{"D2_ConsumerGroups", testConsumerGroups},
		{"D3_Errors", testErrors},
		{"D4_CloseReopen", testCloseReopen},
		{"D4_ContextCancel", testContextCancel},
		{"D5_Order", testOrder},
		{"HandlerContext", testHandlerContext},
		{"InvalidEnvelope", testInvalidEnvelope},
		{"ConcurrentClose", testConcurrentClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newSuite(t, factory, f))
		})
	}
}

// suite is one subtest's state.
type suite struct {
	t       *testing.T
	factory Factory
	f       Features
	prefix  string
}

func newSuite(t *testing.T, factory Factory, f Features) *suite {
	if !f.NoLeakCheck {
		// Registered first, so it runs after every Close the subtest registers.
		opts := goleak.IgnoreCurrent()
		t.Cleanup(func() { goleak.VerifyNone(t, opts) })
	}
	return &suite{t: t, factory: factory, f: f, prefix: "conf" + randHex(6)}
}

// bus opens a bus through the factory and closes it at cleanup.
func (s *suite) bus() eventbus.Bus {
	s.t.Helper()
	b := s.factory(s.t)
	if b == nil {
		s.t.Fatal("eventbustest: Factory returned nil")
	}
	s.t.Cleanup(func() { _ = b.Close() })
	return b
}

// instance returns base, or a new bus sharing its storage when the bus is
// multi-instance.
func (s *suite) instance(base eventbus.Bus) eventbus.Bus {
	if s.f.MultiInstance {
		return s.bus()
	}
	return base
}

// eventType returns a versioned event type unique to this subtest.
func (s *suite) eventType(topic string) string { return s.prefix + "." + topic + ".v1" }

// name returns a subscription name unique to this subtest.
func (s *suite) name(n string) string { return s.prefix + "-" + n }

// size scales a full RELIABILITY.md size, never below minimum.
func (s *suite) size(full, minimum int) int {
	return max(minimum, int(float64(full)*s.f.Scale))
}

// subscribe subscribes or fails the test; the subscription is closed at cleanup.
func (s *suite) subscribe(ctx context.Context, b eventbus.Bus, name string, h eventbus.Handler, types ...string) eventbus.Subscription {
	s.t.Helper()
	sub, err := b.Subscribe(ctx, name, h, types...)
	if err != nil {
		s.t.Fatalf("Subscribe(%q, %v): %v", name, types, err)
	}
	if sub == nil {
		s.t.Fatalf("Subscribe(%q) returned a nil Subscription", name)
	}
	s.t.Cleanup(func() { _ = sub.Close() })
	return sub
}

// publish publishes envs in calls of up to chunk envelopes and fails the
// test on an error.
func (s *suite) publish(b eventbus.Bus, chunk int, envs []eventbus.Envelope) {
	s.t.Helper()
	for len(envs) > 0 {
		n := min(chunk, len(envs))
		if err := b.Publish(context.Background(), envs[:n]...); err != nil {
			s.t.Fatalf("Publish: %v", err)
		}
		envs = envs[n:]
	}
}

// settle waits Settle on an asynchronous bus, so that a delivery that should
// not happen has had its chance.
func (s *suite) settle() {
	if s.f.Async {
		time.Sleep(s.f.Settle)
	}
}

// waitFor polls cond until it holds or the suite's timeout passes.
func (s *suite) waitFor(what string, cond func() bool) {
	s.t.Helper()
	waitFor(s.t, s.f.Timeout, what, cond)
}

// waitFor polls cond every few milliseconds until it holds; after timeout it
// fails tb, naming what it waited for.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// envelopes builds n envelopes of eventType with random metadata (some
// fields left empty) and a compact JSON payload, over aggregates
// agg(i) (nil: one aggregate per event).
func (s *suite) envelopes(eventType string, n int, agg func(i int) string) []eventbus.Envelope {
	s.t.Helper()
	v, err := eventbus.ParseSchemaVersion(eventType)
	if err != nil {
		s.t.Fatal(err)
	}
	out := make([]eventbus.Envelope, n)
	for i := range out {
		aggID := fmt.Sprintf("agg-%s-%d", s.prefix, i)
		if agg != nil {
			aggID = agg(i)
		}
		payload, _ := json.Marshal(struct {
			I     int    `json:"i"`
			R     string `json:"r"`
			Agg   string `json:"agg"`
			Extra string `json:"extra,omitempty"`
		}{i, randHex(8), aggID, []string{"", "ünïcødé ✓", `quote " and \ slash`, "<html>&"}[i%4]})
		out[i] = eventbus.Envelope{
			EventID:       eventbus.NewEventID(),
			EventType:     eventType,
			SchemaVersion: v,
			AggregateID:   aggID,
			AggregateType: "conformance",
			OccurredAt:    time.Now().UTC().Truncate(time.Microsecond),
			Payload:       payload,
			Metadata:      randomMetadata(i),
		}
	}
	return out
}

func randomMetadata(i int) eventbus.Metadata {
	var md eventbus.Metadata
	if i%5 != 0 {
		md.CorrelationID = "corr-" + randHex(8)
	}
	if i%3 != 0 {
		md.CausationID = eventbus.NewEventID().String()
	}
	if mrand.IntN(2) == 0 {
		md.UserID = "user-" + randHex(4)
	}
	if i%2 == 0 {
		md.TraceParent = "00-" + randHex(16) + "-" + randHex(8) + "-01"
	}
	return md
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// assertSameSet checks that got holds exactly the ids of want (duplicates
// allowed) and that every received envelope equals the published one:
// payload and metadata byte for byte, routing fields, time.
func assertSameSet(tb testing.TB, what string, want, got []eventbus.Envelope) {
	tb.Helper()
	byID := make(map[eventbus.EventID]eventbus.Envelope, len(want))
	for _, e := range want {
		byID[e.EventID] = e
	}
	seen := make(map[eventbus.EventID]bool, len(want))
	var problems []string
	report := func(format string, args ...any) {
		if len(problems) < 10 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	for _, g := range got {
		w, ok := byID[g.EventID]
		if !ok {
			report("received %s %s that was not published", g.EventType, g.EventID)
			continue
		}
		seen[g.EventID] = true
		switch {
		case string(g.Payload) != string(w.Payload):
			report("%s: payload %s, published %s", g.EventID, g.Payload, w.Payload)
		case g.Metadata != w.Metadata:
			report("%s: metadata %+v, published %+v", g.EventID, g.Metadata, w.Metadata)
		case g.EventType != w.EventType || g.SchemaVersion != w.SchemaVersion:
			report("%s: type %s v%d, published %s v%d", g.EventID, g.EventType, g.SchemaVersion, w.EventType, w.SchemaVersion)
		case g.AggregateID != w.AggregateID || g.AggregateType != w.AggregateType:
			report("%s: aggregate %s/%s, published %s/%s", g.EventID, g.AggregateType, g.AggregateID, w.AggregateType, w.AggregateID)
		case !g.OccurredAt.Equal(w.OccurredAt):
			report("%s: occurred_at %s, published %s", g.EventID, g.OccurredAt, w.OccurredAt)
		}
	}
	missing := 0
	for _, w := range want {
		if !seen[w.EventID] {
			if missing < 5 {
				report("%s %s was published but not received", w.EventType, w.EventID)
			}
			missing++
		}
	}
	if len(problems) > 0 {
		tb.Fatalf("%s: received set differs from published set (%d published, %d received, %d missing):\n  %s",
			what, len(want), len(got), missing, joinLines(problems))
	}
}

func joinLines(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += "\n  "
		}
		out += s
	}
	return out
}

// filterTypes keeps the envelopes of the given types.
func filterTypes(envs []eventbus.Envelope, types ...string) []eventbus.Envelope {
	var out []eventbus.Envelope
	for _, e := range envs {
		for _, t := range types {
			if e.EventType == t {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// union merges the successful deliveries of several recorders.
func union(recs ...*Recorder) []eventbus.Envelope {
	var out []eventbus.Envelope
	for _, r := range recs {
		out = append(out, r.Envelopes()...)
	}
	return out
}

func uniqueIDs(envs []eventbus.Envelope) int {
	m := make(map[eventbus.EventID]struct{}, len(envs))
	for _, e := range envs {
		m[e.EventID] = struct{}{}
	}
	return len(m)
}

// timed runs fn and fails the test when it takes longer than limit.
func timed(tb testing.TB, what string, limit time.Duration, fn func() error) {
	tb.Helper()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		if err != nil {
			tb.Fatalf("%s: %v", what, err)
		}
		if d := time.Since(start); d > limit {
			tb.Fatalf("%s took %s, want at most %s", what, d, limit)
		}
	case <-time.After(limit + 5*time.Second):
		tb.Fatalf("%s did not return within %s", what, limit+5*time.Second)
	}
}

// guard is a mutex-protected counter map shared by handlers.
type guard struct {
	mu sync.Mutex
	n  map[eventbus.EventID]int
}

// take counts one more for id unless it reached limit; it reports whether
// it counted.
func (g *guard) take(id eventbus.EventID, limit int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n == nil {
		g.n = make(map[eventbus.EventID]int)
	}
	if g.n[id] >= limit {
		return false
	}
	g.n[id]++
	return true
}

func (g *guard) max() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := 0
	for _, v := range g.n {
		m = max(m, v)
	}
	return m
}
