package deadletter_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/choicesherpa/eventkit/deadletter"
	"github.com/choicesherpa/eventkit/eventbus"
)

type invoiceDue struct {
	InvoiceID string `json:"invoice_id"`
}

func (invoiceDue) EventType() string     { return "example.invoice_due.v1" }
func (e invoiceDue) AggregateID() string { return e.InvoiceID }
func (invoiceDue) AggregateType() string { return "invoice" }

// An event that failed its handler waits in the queue; replaying it keeps
// its id, and a replay that fails again puts it back instead of looping.
func ExampleQueue_Replay() {
	ctx := context.Background()
	store := deadletter.NewMemoryStore(nil)
	replayer, _ := deadletter.NewHandlerReplayer(store, nil)
	broken := true
	replayer.Register("mailer", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		if broken {
			return errors.New("smtp unavailable")
		}
		return nil
	}))
	q, _ := deadletter.NewQueue(store, replayer, &deadletter.Config{Logger: slog.New(slog.DiscardHandler)})

	// What a bus writes after the last allowed delivery failed.
	env := eventbus.MustEnvelope(ctx, invoiceDue{InvoiceID: "inv-7"})
	_ = store.Put(ctx, deadletter.Record{
		Envelope: &env, Handler: "mailer", Reason: deadletter.ReasonMaxDeliveries,
		Attempts: 5, LastError: "smtp unavailable",
	})
	id := deadletter.RecordID("mailer", env.EventID.String())

	rec, _ := q.Replay(ctx, id) // still failing: back in the queue
	fmt.Println(rec.Status, rec.ReplayCount, rec.LastError)

	broken = false
	rec, _ = q.Replay(ctx, id)
	fmt.Println(rec.Status, rec.ReplayCount, rec.EventID == env.EventID.String())
	depth, _ := q.Depth(ctx)
	fmt.Println("depth:", depth)
	// Output:
	// dead 1 smtp unavailable
	// replayed 2 true
	// depth: 0
}
