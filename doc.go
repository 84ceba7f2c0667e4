// Package eventkit is a toolkit for event-driven Go applications that must
// not lose events and must apply each one's effects exactly once, across
// crashes, restarts and duplicate deliveries.
//
// This root package holds only documentation; the code lives in the packages
// listed below, each small and usable on its own.
//
// # Events and ports
//
// An event is any type with a stable, versioned type string
// ("session.created.v1") and the id and type of the aggregate it belongs to
// (eventbus.DomainEvent). eventbus.NewEnvelope wraps it with a UUIDv7 id, a
// UTC timestamp, its JSON payload and metadata: correlation id, causation
// id, acting user and W3C traceparent. Inside a handler the causation and
// correlation are filled in from the event being handled, through the
// context, so a chain of follow-up events stays linked without anyone
// remembering to do it.
//
// Buses implement two small ports: eventbus.Publisher
// (Publish(ctx, envs...)) and eventbus.Subscriber (Subscribe(ctx, name,
// handler, types...)). A subscription's name is stable: it is the consumer
// group on Redis and the key under which idempotent handlers record what they
// processed. eventbus.Subscribe[T] decodes payloads into T, upcasting
// older schema versions through the eventbus.Registry.
//
// # The outbox flow
//
// The reliable path from a business change to every consumer is:
//
//	command ──► one DB transaction: business rows + outbox rows
//	                   │ commit (pg_notify wakes the relay)
//	                   ▼
//	            outbox.Relay ──► bus (Redis Streams) ──► consumer groups
//	                                                        │
//	            idempotent handler: marker + effects + follow-up events
//	            in ONE transaction, then acknowledge
//
// Events are never published from inside a transaction that might still roll
// back, and never lost when the process dies after the commit: the relay
// finds the rows and publishes them (at least once). On the consuming side
// idempotency.Wrap with the PostgreSQL store turns at-least-once delivery
// into exactly-once effects: the processed-event marker, the handler's own
// writes and the events it raises commit together.
//
// # A short example
//
//	bus := eventbus.NewInMemoryBus(nil)
//	store := idempotency.NewMemoryStore(nil)
//
//	eventbus.Subscribe(ctx, bus, "welcome-mail",
//		func(ctx context.Context, ev UserSignedUp, env eventbus.Envelope) error {
//			return mailer.SendWelcome(ctx, ev.Email) // runs once per event id
//		})
//	// or, for any handler: idempotency.Wrap(h, store, "welcome-mail")
//
//	err := eventbus.PublishEvents(ctx, bus, UserSignedUp{UserID: "u1", Email: "a@example.com"})
//
// # Packages
//
//   - eventbus: envelope, metadata, ids, ports, typed subscription, registry
//     and upcasters, middleware (recover, timeout, retry, observe), errors,
//     and InMemoryBus, the embedded bus and test double.
//   - eventbus/eventbustest: the conformance suite every bus adapter runs
//     (yours too) and a recording handler for tests.
//   - idempotency: the ProcessedEventStore port, Wrap, an in-memory store.
//   - outbox: the unit of work (Raise events inside it), the relay and the
//     cleanup job, independent of the database.
//   - deadletter: the dead-letter record, store port, replay and an admin
//     HTTP handler.
//   - adapters/postgres: outbox and processed-events stores, unit of work and
//     embedded migrations on pgx/v5.
//   - adapters/redisstream: the Redis Streams bus (consumer groups, retries,
//     reclaim, dead-letter queue, safe trimming).
//
// Runnable walkthroughs live in examples/ (start with examples/quickstart);
// choicesherpa/ is a complete application built on the library.
package eventkit
