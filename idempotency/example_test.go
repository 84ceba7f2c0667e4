package idempotency_test

import (
	"context"
	"fmt"

	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/idempotency"
)

// A redelivered event is acknowledged without running the handler again.
func ExampleWrap() {
	ctx := context.Background()
	store := idempotency.NewMemoryStore(nil)

	balance := 0
	credit := eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		balance += 10
		return nil
	})
	h := idempotency.Wrap(credit, store, "wallet")
	h.OnDuplicate = func(_ context.Context, env eventbus.Envelope) {
		fmt.Println("duplicate skipped:", env.EventType)
	}

	env := eventbus.MustEnvelope(ctx, paid{OrderID: "o-1"})
	for range 2 { // the bus delivers the same event twice
		if err := h.Handle(ctx, env); err != nil {
			fmt.Println("error:", err)
		}
	}
	fmt.Println("balance:", balance)
	// Output:
	// duplicate skipped: idemtest.order.paid.v1
	// balance: 10
}
