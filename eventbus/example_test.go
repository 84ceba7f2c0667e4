package eventbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/choicesherpa/eventkit/eventbus"
)

// OptionChosen is an application event: a stable, versioned type string and
// its aggregate; the struct itself is the JSON payload.
type OptionChosen struct {
	SessionID string `json:"session_id"`
	Option    string `json:"option"`
}

func (OptionChosen) EventType() string     { return "example.option_chosen.v1" }
func (e OptionChosen) AggregateID() string { return e.SessionID }
func (OptionChosen) AggregateType() string { return "session" }

// The envelope's JSON form: snake_case, metadata only where set.
func ExampleEnvelope() {
	ctx := eventbus.WithMetadata(context.Background(), eventbus.Metadata{CorrelationID: "req-1", UserID: "ada"})
	env, err := eventbus.NewEnvelope(ctx, OptionChosen{SessionID: "s-1", Option: "move to Lisbon"})
	if err != nil {
		panic(err)
	}
	// Fix the generated id and time so the output is stable.
	env.EventID = eventbus.MustParseEventID("0190a5b0-7c3e-7d1a-9b2c-3f4e5d6c7b8a")
	env.OccurredAt = time.Date(2026, 1, 9, 12, 0, 0, 0, time.UTC)

	b, _ := json.MarshalIndent(env, "", "  ")
	fmt.Println(string(b))
	// Output:
	// {
	//   "event_id": "0190a5b0-7c3e-7d1a-9b2c-3f4e5d6c7b8a",
	//   "event_type": "example.option_chosen.v1",
	//   "schema_version": 1,
	//   "aggregate_id": "s-1",
	//   "aggregate_type": "session",
	//   "occurred_at": "2026-01-09T12:00:00Z",
	//   "payload": {
	//     "session_id": "s-1",
	//     "option": "move to Lisbon"
	//   },
	//   "metadata": {
	//     "correlation_id": "req-1",
	//     "user_id": "ada"
	//   }
	// }
}

// Typed subscription: the handler gets the decoded event.
func ExampleSubscribe() {
	ctx := context.Background()
	bus := eventbus.NewInMemoryBus(nil)
	defer bus.Close()

	_, err := eventbus.Subscribe(ctx, bus, "dashboard", func(ctx context.Context, ev OptionChosen, env eventbus.Envelope) error {
		fmt.Printf("%s chose %q (%s)\n", ev.SessionID, ev.Option, env.EventType)
		return nil
	})
	if err != nil {
		panic(err)
	}
	if err := eventbus.PublishEvents(ctx, bus, OptionChosen{SessionID: "s-1", Option: "stay"}); err != nil {
		panic(err)
	}
	// Output:
	// s-1 chose "stay" (example.option_chosen.v1)
}

// Middleware: Retry (outermost) around Recover, so a panic is retried like
// any other failure; Permanent errors skip the retries.
func ExampleChain() {
	attempts := 0
	flaky := eventbus.HandlerFunc(func(ctx context.Context, env eventbus.Envelope) error {
		attempts++
		switch attempts {
		case 1:
			panic("database driver bug")
		case 2:
			return errors.New("connection reset")
		}
		fmt.Println("handled on attempt", attempts)
		return nil
	})
	h := eventbus.Chain(flaky,
		eventbus.Retry(eventbus.RetryConfig{
			MaxAttempts: 5,
			Backoff:     eventbus.Backoff{Initial: time.Millisecond},
			Hooks: &eventbus.Hooks{OnRetry: func(_ context.Context, _ string, _ eventbus.Envelope, attempt int, _ time.Duration, err error) {
				fmt.Printf("attempt %d failed: %v\n", attempt, err)
			}},
		}),
		eventbus.Recover(),
	)
	env := eventbus.MustEnvelope(context.Background(), OptionChosen{SessionID: "s-1"})
	fmt.Println("error:", h.Handle(context.Background(), env))

	bad := eventbus.Chain(eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		return eventbus.Permanent(errors.New("unknown option"))
	}), eventbus.Retry(eventbus.RetryConfig{}))
	err := bad.Handle(context.Background(), env)
	fmt.Println("permanent:", eventbus.IsPermanent(err), err)
	// Output:
	// attempt 1 failed: eventbus: handler panicked: database driver bug
	// attempt 2 failed: connection reset
	// handled on attempt 3
	// error: <nil>
	// permanent: true permanent: unknown option
}

// The in-memory bus delivers synchronously in registration order, collects
// every handler's error, and records what was published for tests.
func ExampleInMemoryBus() {
	ctx := context.Background()
	bus := eventbus.NewInMemoryBus(nil)
	defer bus.Close()

	_, _ = bus.Subscribe(ctx, "audit", eventbus.HandlerFunc(func(_ context.Context, env eventbus.Envelope) error {
		fmt.Println("audit:", env.EventType, env.AggregateID)
		return nil
	})) // no types: every event
	_, _ = bus.Subscribe(ctx, "mailer", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		return errors.New("smtp down")
	}), "example.option_chosen.v1")
	_, _ = bus.Subscribe(ctx, "stats", eventbus.HandlerFunc(func(_ context.Context, env eventbus.Envelope) error {
		fmt.Println("stats:", env.AggregateID)
		return nil
	}), "example.option_chosen.v1")

	err := eventbus.PublishEvents(ctx, bus,
		OptionChosen{SessionID: "s-1", Option: "a"},
		OptionChosen{SessionID: "s-2", Option: "b"})

	var he *eventbus.HandlerError
	if errors.As(err, &he) {
		fmt.Println("failed:", he.Handler, he.Err)
	}
	fmt.Println("recorded:", bus.Count(), "for s-2:", len(bus.EventsForAggregate("s-2")))
	// Output:
	// audit: example.option_chosen.v1 s-1
	// stats: s-1
	// audit: example.option_chosen.v1 s-2
	// stats: s-2
	// failed: mailer smtp down
	// recorded: 2 for s-2: 1
}
