// Command quickstart shows eventkit's core in one process: typed events on
// the in-memory bus, typed subscriptions, a causation chain raised from
// inside handlers, and an idempotent handler that applies a redelivered
// event once.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/idempotency"
)

// OrderPlaced, PaymentCaptured and OrderShipped are the domain events. The
// type strings are stable and versioned; the structs are the payloads.
type OrderPlaced struct {
	OrderID  string `json:"order_id"`
	Customer string `json:"customer"`
	Cents    int    `json:"cents"`
}

func (OrderPlaced) EventType() string     { return "order.placed.v1" }
func (e OrderPlaced) AggregateID() string { return e.OrderID }
func (OrderPlaced) AggregateType() string { return "order" }

type PaymentCaptured struct {
	OrderID string `json:"order_id"`
	Cents   int    `json:"cents"`
}

func (PaymentCaptured) EventType() string     { return "payment.captured.v1" }
func (e PaymentCaptured) AggregateID() string { return e.OrderID }
func (PaymentCaptured) AggregateType() string { return "order" }

type OrderShipped struct {
	OrderID string `json:"order_id"`
}

func (OrderShipped) EventType() string     { return "order.shipped.v1" }
func (e OrderShipped) AggregateID() string { return e.OrderID }
func (OrderShipped) AggregateType() string { return "order" }

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// labels gives event ids short, stable names (#1, #2, ...) for printing.
type labels struct {
	mu sync.Mutex
	m  map[eventbus.EventID]string
}

func (l *labels) of(id eventbus.EventID) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[eventbus.EventID]string)
	}
	if s, ok := l.m[id]; ok {
		return s
	}
	s := fmt.Sprintf("#%d", len(l.m)+1)
	l.m[id] = s
	return s
}

func (l *labels) known(id string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, v := range l.m {
		if k.String() == id {
			return v
		}
	}
	return "?"
}

func run(w io.Writer) error {
	ctx := context.Background()
	bus := eventbus.NewInMemoryBus(nil)
	defer bus.Close()
	var names labels
	seen := map[eventbus.EventID]bool{}

	// 1. A trace of every event (no types = all types). Subscribed first,
	// so it sees each event before the other handlers (registration order).
	_, err := bus.Subscribe(ctx, "trace", eventbus.HandlerFunc(func(_ context.Context, env eventbus.Envelope) error {
		label := names.of(env.EventID)
		if seen[env.EventID] {
			fmt.Fprintf(w, "[trace] %s %s delivered again\n", label, env.EventType)
			return nil
		}
		seen[env.EventID] = true
		cause := "correlation=" + env.Metadata.CorrelationID
		if env.Metadata.CausationID != "" {
			cause = "caused by " + names.known(env.Metadata.CausationID)
		}
		fmt.Fprintf(w, "[trace] %s %-20s %s/%s  %s\n", label, env.EventType, env.AggregateType, env.AggregateID, cause)
		return nil
	}))
	if err != nil {
		return err
	}

	// 2. Billing reacts to a placed order and raises PaymentCaptured. The
	// context it gets carries the consumed event, so the new event's
	// causation_id and correlation_id are filled in automatically.
	_, err = eventbus.Subscribe(ctx, bus, "billing", func(ctx context.Context, ev OrderPlaced, _ eventbus.Envelope) error {
		fmt.Fprintf(w, "  billing: charging %d.%02d EUR to %s for %s\n", ev.Cents/100, ev.Cents%100, ev.Customer, ev.OrderID)
		return eventbus.PublishEvents(ctx, bus, PaymentCaptured{OrderID: ev.OrderID, Cents: ev.Cents})
	})
	if err != nil {
		return err
	}

	// 3. Shipping must ship once however often the payment is delivered:
	// wrap it with idempotency.Wrap, keyed by (handler name, event id).
	store := idempotency.NewMemoryStore(nil)
	shipments := 0
	shipping := idempotency.Wrap(eventbus.Typed(nil, func(ctx context.Context, ev PaymentCaptured, _ eventbus.Envelope) error {
		shipments++
		fmt.Fprintf(w, "  shipping: parcel %d leaves for %s\n", shipments, ev.OrderID)
		return eventbus.PublishEvents(ctx, bus, OrderShipped{OrderID: ev.OrderID})
	}), store, "shipping")
	duplicates := 0
	shipping.OnDuplicate = func(_ context.Context, env eventbus.Envelope) {
		duplicates++
		fmt.Fprintf(w, "  shipping: duplicate of %s skipped (already processed)\n", names.of(env.EventID))
	}
	if _, err := bus.Subscribe(ctx, "shipping", shipping, PaymentCaptured{}.EventType()); err != nil {
		return err
	}

	// A command: the request's correlation id and user go on the context.
	fmt.Fprintln(w, "== place order o-1001 (request req-1, user alice)")
	cmd := eventbus.WithMetadata(ctx, eventbus.Metadata{CorrelationID: "req-1", UserID: "alice"})
	if err := eventbus.PublishEvents(cmd, bus, OrderPlaced{OrderID: "o-1001", Customer: "alice", Cents: 4250}); err != nil {
		return err
	}

	// A durable bus delivers at least once: simulate the broker redelivering
	// the payment because its acknowledgement was lost.
	captured := bus.EventsOfType(PaymentCaptured{}.EventType())
	if len(captured) != 1 {
		return fmt.Errorf("want 1 payment event, have %d", len(captured))
	}
	fmt.Fprintf(w, "== the broker redelivers %s (its ack was lost)\n", names.of(captured[0].EventID))
	if err := bus.Publish(ctx, captured[0]); err != nil {
		return err
	}

	// Check and print the causation chain from the recorded history.
	fmt.Fprintln(w, "== summary")
	placed := bus.EventsOfType(OrderPlaced{}.EventType())
	shipped := bus.EventsOfType(OrderShipped{}.EventType())
	if len(placed) != 1 || len(shipped) != 1 {
		return fmt.Errorf("want one placed and one shipped event, have %d and %d", len(placed), len(shipped))
	}
	chain := []eventbus.Envelope{placed[0], captured[0], shipped[0]}
	var parts []string
	for i, env := range chain {
		if i > 0 && env.Metadata.CausationID != chain[i-1].EventID.String() {
			return fmt.Errorf("%s: causation_id %q, want %s", env.EventType, env.Metadata.CausationID, chain[i-1].EventID)
		}
		if env.Metadata.CorrelationID != "req-1" || env.Metadata.UserID != "alice" {
			return fmt.Errorf("%s: metadata %+v did not carry over", env.EventType, env.Metadata)
		}
		parts = append(parts, names.of(env.EventID)+" "+env.EventType)
	}
	fmt.Fprintln(w, "causation chain:", strings.Join(parts, " -> "))
	fmt.Fprintln(w, "every event carries correlation_id=req-1 and user_id=alice")
	fmt.Fprintf(w, "deliveries of the payment to shipping: 2, shipments: %d, duplicates skipped: %d\n", shipments, duplicates)
	if shipments != 1 || duplicates != 1 {
		return errors.New("the idempotent handler did not apply the payment exactly once")
	}
	return nil
}
