package eventbus_test

import (
	"context"
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
