package outbox_test

import (
	"context"
	"errors"
	"testing"

	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/outbox"
)

type placed struct {
	ID string `json:"id"`
}

func (placed) EventType() string     { return "order.placed.v1" }
func (e placed) AggregateID() string { return e.ID }
func (placed) AggregateType() string { return "order" }

type shipped struct {
	ID string `json:"id"`
}

func (shipped) EventType() string     { return "order.shipped.v1" }
func (e shipped) AggregateID() string { return e.ID }
func (shipped) AggregateType() string { return "order" }

func TestDirectUnitOfWorkPublishesOnSuccessOnly(t *testing.T) {
	ctx := context.Background()
	bus := eventbus.NewInMemoryBus(nil)
	uow := &outbox.DirectUnitOfWork{Publisher: bus}

	boom := errors.New("boom")
	err := uow.Do(ctx, func(ctx context.Context) error {
		if err := outbox.Raise(ctx, placed{ID: "1"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) || bus.Count() != 0 {
		t.Fatalf("failed unit: err=%v published=%d; want boom and nothing published", err, bus.Count())
	}

	err = uow.Do(ctx, func(ctx context.Context) error {
		// A nested unit joins the outer one: published once, after the outer fn.
		return uow.Do(ctx, func(ctx context.Context) error { return outbox.Raise(ctx, placed{ID: "2"}) })
	})
	if err != nil || bus.Count() != 1 {
		t.Fatalf("nested unit: err=%v published=%d; want 1", err, bus.Count())
	}
	if err := outbox.Raise(ctx, placed{ID: "3"}); !errors.Is(err, outbox.ErrNoUnitOfWork) {
		t.Fatalf("Raise outside a unit = %v, want ErrNoUnitOfWork", err)
	}
}

// A handler that runs during the unit's publish (the in-memory bus is
// synchronous) and opens its own unit must get a fresh one, not join the
// finished unit whose events were already taken.
func TestDirectUnitOfWorkFollowUpsFromHandlersArePublished(t *testing.T) {
	ctx := context.Background()
	bus := eventbus.NewInMemoryBus(nil)
	uow := &outbox.DirectUnitOfWork{Publisher: bus}
	_, err := eventbus.Subscribe(ctx, bus, "shipper", func(ctx context.Context, ev placed, _ eventbus.Envelope) error {
		return uow.Do(ctx, func(ctx context.Context) error { return outbox.Raise(ctx, shipped(ev)) })
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := uow.Do(ctx, func(ctx context.Context) error { return outbox.Raise(ctx, placed{ID: "1"}) }); err != nil {
		t.Fatal(err)
	}
	got := bus.EventsOfType("order.shipped.v1")
	if len(got) != 1 {
		t.Fatalf("follow-up events published = %d, want 1", len(got))
	}
	cause := bus.EventsOfType("order.placed.v1")[0]
	if got[0].Metadata.CausationID != cause.EventID.String() {
		t.Fatalf("follow-up causation = %q, want %s", got[0].Metadata.CausationID, cause.EventID)
	}
}
