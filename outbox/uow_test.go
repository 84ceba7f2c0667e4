package outbox_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
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

// Once fn succeeded, its events go out even when the caller's context ends
// right after, and a handler's failure is not the command's: Do returns nil
// (a retry would apply the change twice) and the failure is logged.
func TestDirectUnitOfWorkCommittedUnitIsNotUndone(t *testing.T) {
	bus := eventbus.NewInMemoryBus(nil)
	var logs strings.Builder
	uow := &outbox.DirectUnitOfWork{Publisher: bus, Logger: slog.New(slog.NewTextHandler(&logs, nil))}

	ctx, cancel := context.WithCancel(context.Background())
	applied := 0
	err := uow.Do(ctx, func(ctx context.Context) error {
		applied++
		if err := outbox.Raise(ctx, placed{ID: "1"}); err != nil {
			return err
		}
		cancel() // the request goes away after the change
		return nil
	})
	if err != nil || applied != 1 || bus.Count() != 1 {
		t.Fatalf("cancelled after fn: err=%v applied=%d published=%d; want nil, 1, 1", err, applied, bus.Count())
	}

	_, err = bus.Subscribe(context.Background(), "projection", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		return errors.New("projection down")
	}))
	if err != nil {
		t.Fatal(err)
	}
	err = uow.Do(context.Background(), func(ctx context.Context) error { return outbox.Raise(ctx, placed{ID: "2"}) })
	if err != nil {
		t.Fatalf("a handler's failure failed the command: %v", err)
	}
	if !strings.Contains(logs.String(), "order.placed.v1") || !strings.Contains(logs.String(), "projection down") {
		t.Fatalf("the failure was not logged: %q", logs.String())
	}
}
