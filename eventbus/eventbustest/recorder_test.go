package eventbustest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/eventbus/eventbustest"
)

type noted struct {
	ID   string `json:"id"`
	Text string `json:"text"`
}

func (noted) EventType() string     { return "rectest.noted.v1" }
func (n noted) AggregateID() string { return n.ID }
func (noted) AggregateType() string { return "note" }

func TestRecorderRecordsAndInjectsFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rec := eventbustest.NewRecorder()
	a := eventbus.MustEnvelope(ctx, noted{ID: "a"})
	b := eventbus.MustEnvelope(ctx, noted{ID: "b"})

	boom := errors.New("boom")
	rec.FailNext(2, boom)
	if err := rec.Handle(ctx, a); !errors.Is(err, boom) {
		t.Fatalf("first delivery: %v, want boom", err)
	}
	if err := rec.Handle(ctx, a); !errors.Is(err, boom) {
		t.Fatalf("second delivery: %v, want boom", err)
	}
	if err := rec.Handle(ctx, a); err != nil {
		t.Fatalf("third delivery: %v", err)
	}
	if err := rec.Handle(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := rec.Handle(ctx, a); err != nil {
		t.Fatal(err)
	}
	if rec.Attempts() != 5 || rec.Failures() != 2 || rec.Count() != 3 || rec.Unique() != 2 {
		t.Fatalf("attempts %d failures %d count %d unique %d", rec.Attempts(), rec.Failures(), rec.Count(), rec.Unique())
	}
	if rec.Times(a.EventID) != 2 || rec.AttemptsFor(a.EventID) != 4 || !rec.Has(b.EventID) {
		t.Fatalf("per-id bookkeeping wrong: times %d attempts %d", rec.Times(a.EventID), rec.AttemptsFor(a.EventID))
	}
	if got := rec.IDs(); len(got) != 3 || got[0] != a.EventID || got[1] != b.EventID {
		t.Fatalf("IDs in completion order: %v", got)
	}
	if len(rec.Envelopes()) != 3 {
		t.Fatal("Envelopes")
	}

	rec.FailNext(1, nil)
	if err := rec.Handle(ctx, b); !errors.Is(err, eventbustest.ErrInjected) {
		t.Fatalf("default injected error: %v", err)
	}
	rec.FailWhen(func(env eventbus.Envelope, attempt int) error {
		if env.EventID == b.EventID && attempt < 4 {
			return eventbus.Permanent(errors.New("no b"))
		}
		return nil
	})
	if err := rec.Handle(ctx, b); !eventbus.IsPermanent(err) {
		t.Fatalf("FailWhen: %v", err)
	}
	if err := rec.Handle(ctx, b); err != nil {
		t.Fatalf("FailWhen after 3 attempts: %v", err)
	}

	rec.Reset()
	if rec.Attempts() != 0 || rec.Count() != 0 || rec.Has(a.EventID) {
		t.Fatal("Reset did not forget")
	}
	if err := rec.Handle(ctx, b); err != nil {
		t.Fatal("Reset must clear FailWhen:", err)
	}
}

func TestRecorderNext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var calls atomic.Int32
	rec := &eventbustest.Recorder{Next: eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		if calls.Add(1) == 1 {
			return errors.New("next failed")
		}
		return nil
	})}
	env := eventbus.MustEnvelope(ctx, noted{ID: "a"})
	if err := rec.Handle(ctx, env); err == nil {
		t.Fatal("Next's error must fail the delivery")
	}
	if err := rec.Handle(ctx, env); err != nil {
		t.Fatal(err)
	}
	if rec.Failures() != 1 || rec.Count() != 1 {
		t.Fatalf("failures %d count %d", rec.Failures(), rec.Count())
	}
}

func TestRecorderWaitFor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rec := eventbustest.NewRecorder()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			<-start
			for j := range 25 {
				_ = rec.Handle(ctx, eventbus.MustEnvelope(ctx, noted{ID: fmt.Sprint(i, "-", j)}))
			}
		})
	}
	close(start)
	if err := rec.WaitFor(200, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := rec.WaitForUnique(200, time.Second); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	t0 := time.Now()
	err := rec.WaitFor(201, 30*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "200 of 201") {
		t.Fatalf("WaitFor past the count: %v", err)
	}
	if time.Since(t0) > 5*time.Second {
		t.Fatal("WaitFor ignored its timeout")
	}
	if err := rec.WaitForUnique(201, 10*time.Millisecond); err == nil {
		t.Fatal("WaitForUnique past the count must fail")
	}
}

// fakeTB records Fatalf instead of stopping the goroutine.
type fakeTB struct {
	testing.TB
	failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	if f.failed == "" {
		f.failed = fmt.Sprintf(format, args...)
	}
}

func TestRequirePublished(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bus := eventbus.NewInMemoryBus(nil)
	defer bus.Close()
	if err := eventbus.PublishEvents(ctx, bus, noted{ID: "1", Text: "hello"}, noted{ID: "2", Text: "world"}); err != nil {
		t.Fatal(err)
	}
	ev, env := eventbustest.RequirePublished(t, bus, func(n noted) bool { return n.Text == "world" })
	if ev.ID != "2" || env.AggregateID != "2" {
		t.Fatalf("got %+v", ev)
	}
	if ev, _ := eventbustest.RequirePublished[noted](t, bus, nil); ev.ID != "1" {
		t.Fatalf("nil match returns the first: %+v", ev)
	}

	// A Recorder is a source too.
	rec := eventbustest.NewRecorder()
	_ = rec.Handle(ctx, bus.Published()[0])
	eventbustest.RequirePublished[noted](t, rec, nil)

	// No match fails the test.
	ftb := &fakeTB{TB: t}
	eventbustest.RequirePublished(ftb, bus, func(n noted) bool { return n.Text == "nope" })
	if !strings.Contains(ftb.failed, "no matching rectest.noted.v1") {
		t.Fatalf("failure message: %q", ftb.failed)
	}
	// An undecodable payload fails the test.
	bad := eventbus.MustEnvelope(ctx, noted{ID: "3"})
	bad.Payload = []byte(`{"text": 5}`)
	rec2 := eventbustest.NewRecorder()
	_ = rec2.Handle(ctx, bad)
	ftb = &fakeTB{TB: t}
	eventbustest.RequirePublished[noted](ftb, rec2, nil)
	if !strings.Contains(ftb.failed, "does not decode") {
		t.Fatalf("failure message: %q", ftb.failed)
	}
}

// brokenBus wraps the in-memory bus with a defect, to prove the suite
// catches it.
type brokenBus struct {
	*eventbus.InMemoryBus
	defect string
	n      atomic.Int64
}

func (b *brokenBus) Publish(ctx context.Context, envs ...eventbus.Envelope) error {
	if b.defect == "drop" {
		kept := envs[:0:0]
		for _, e := range envs {
			if b.n.Add(1)%37 != 0 {
				kept = append(kept, e)
			}
		}
		envs = kept
	}
	if b.defect == "metadata" {
		envs = append([]eventbus.Envelope(nil), envs...)
		for i := range envs {
			envs[i].Metadata.TraceParent = ""
		}
	}
	return b.InMemoryBus.Publish(ctx, envs...)
}

func (b *brokenBus) Subscribe(ctx context.Context, name string, h eventbus.Handler, types ...string) (eventbus.Subscription, error) {
	if b.defect == "duplicate" {
		inner := h
		h = eventbus.HandlerFunc(func(ctx context.Context, env eventbus.Envelope) error {
			if err := inner.Handle(ctx, env); err != nil {
				return err
			}
			if b.n.Add(1)%50 == 0 {
				return inner.Handle(ctx, env)
			}
			return nil
		})
	}
	return b.InMemoryBus.Subscribe(ctx, name, h, types...)
}

// TestBrokenBusHelper is run by TestSuiteCatchesDefects in a child process.
func TestBrokenBusHelper(t *testing.T) {
	defect := os.Getenv("EVENTKIT_BROKEN_BUS")
	if defect == "" {
		t.Skip("helper for TestSuiteCatchesDefects")
	}
	eventbustest.Run(t, func(*testing.T) eventbus.Bus {
		return &brokenBus{InMemoryBus: eventbus.NewInMemoryBus(&eventbus.InMemoryConfig{History: -1}), defect: defect}
	}, eventbustest.Features{ConsumerGroups: true, GuaranteedOrder: true})
}

// TestSuiteCatchesDefects checks that the suite fails a bus that loses
// events, alters metadata or delivers twice.
func TestSuiteCatchesDefects(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child test processes")
	}
	cases := []struct{ defect, subtest, want string }{
		{"drop", "D1_PublishSubscribe", "98 of 100 events"},
		{"metadata", "D1_PublishSubscribe", "metadata"},
		{"duplicate", "D2_ConsumerGroups", "exactly"},
	}
	for _, tc := range cases {
		t.Run(tc.defect, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenBusHelper$/^"+tc.subtest+"$", "-test.count=1")
			cmd.Env = append(os.Environ(), "EVENTKIT_BROKEN_BUS="+tc.defect)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a bus with defect %q:\n%s", tc.defect, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("defect %q: output lacks %q:\n%s", tc.defect, tc.want, out)
			}
		})
	}
}
