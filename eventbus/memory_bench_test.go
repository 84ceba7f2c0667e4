package eventbus_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/choicesherpa/eventkit/eventbus"
)

func BenchmarkInMemoryPublish(b *testing.B) {
	bus := eventbus.NewInMemoryBus(&eventbus.InMemoryConfig{History: -1})
	ctx := context.Background()
	n := 0
	_, err := bus.Subscribe(ctx, "count", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { n++; return nil }))
	if err != nil {
		b.Fatal(err)
	}
	env := eventbus.MustEnvelope(ctx, benchEvent{ID: "a"})
	b.ReportAllocs()
	for b.Loop() {
		if err := bus.Publish(ctx, env); err != nil {
			b.Fatal(err)
		}
	}
	if n == 0 {
		b.Fatal("handler never ran")
	}
}

type benchEvent struct {
	ID string `json:"id"`
}

func (benchEvent) EventType() string     { return "bench.happened.v1" }
func (e benchEvent) AggregateID() string { return e.ID }
func (benchEvent) AggregateType() string { return "bench" }

func BenchmarkInMemoryFanOut(b *testing.B) {
	for _, subs := range []int{10, 100} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			bus := eventbus.NewInMemoryBus(&eventbus.InMemoryConfig{History: -1})
			defer bus.Close()
			ctx := context.Background()
			var n atomic.Int64
			for i := range subs {
				_, err := bus.Subscribe(ctx, fmt.Sprintf("sub-%d", i), eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
					n.Add(1)
					return nil
				}), "bench.happened.v1")
				if err != nil {
					b.Fatal(err)
				}
			}
			env := eventbus.MustEnvelope(ctx, benchEvent{ID: "a"})
			b.ReportAllocs()
			for b.Loop() {
				if err := bus.Publish(ctx, env); err != nil {
					b.Fatal(err)
				}
			}
			if got, want := n.Load(), int64(b.N)*int64(subs); got != want {
				b.Fatalf("delivered %d, want %d", got, want)
			}
		})
	}
}

// TestInMemoryPublishAllocations pins the hot path's allocation budget
// (BENCHMARKS.md B1: at most one allocation per publish, the handler context).
func TestInMemoryPublishAllocations(t *testing.T) {
	ctx := context.Background()
	for _, subs := range []int{1, 10} {
		bus := eventbus.NewInMemoryBus(&eventbus.InMemoryConfig{History: -1})
		for i := range subs {
			_, err := bus.Subscribe(ctx, fmt.Sprintf("sub-%d", i), eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { return nil }), "bench.happened.v1")
			if err != nil {
				t.Fatal(err)
			}
		}
		env := eventbus.MustEnvelope(ctx, benchEvent{ID: "a"})
		allocs := testing.AllocsPerRun(1000, func() {
			if err := bus.Publish(ctx, env); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 1 {
			t.Errorf("%d subscribers: %.1f allocations per publish, want <= 1", subs, allocs)
		}
		_ = bus.Close()
	}
}
