package eventbus

import "context"

// Publisher sends events to a bus. Publish returns once the bus has accepted
// every envelope (for a durable bus: stored it), or an error saying which did
// not make it. Publishing several envelopes keeps their order.
type Publisher interface {
	Publish(ctx context.Context, envs ...Envelope) error
}

// Handler consumes one event. A nil return acknowledges it; an error asks the
// bus to deliver it again later (Permanent errors go to the dead-letter queue
// at once). Handlers must tolerate duplicates: every bus here delivers at
// least once; wrap a handler with idempotency.Wrap for exactly-once effects.
type Handler interface {
	Handle(ctx context.Context, env Envelope) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, env Envelope) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, env Envelope) error { return f(ctx, env) }

// Subscriber registers named handlers.
//
// The name is stable across restarts and processes: it is the consumer
// group on Redis and the idempotency key, so two processes that subscribe the
// same name compete for events, and two different names each get every event.
// With no event types the handler receives every type.
//
// The subscription lasts until it is closed or ctx is done.
type Subscriber interface {
	Subscribe(ctx context.Context, name string, h Handler, eventTypes ...string) (Subscription, error)
}

// Subscription is one registered handler. Close stops delivery to it. A bus
// that runs handlers on its own goroutines (Redis) also waits, bounded by its
// shutdown timeout, for the handlers in flight; a synchronous bus (the
// in-memory one) cannot, since the handler may be the caller, and lets a
// running handler finish on its publisher's goroutine. Close is idempotent.
type Subscription interface {
	Name() string
	Close() error
}

// Bus publishes and subscribes. Close stops every subscription; it never
// closes clients that were handed to the bus.
type Bus interface {
	Publisher
	Subscriber
	Close() error
}

// PublishEvents wraps evs in envelopes (metadata from ctx, see NewEnvelope)
// and publishes them in one call.
func PublishEvents(ctx context.Context, p Publisher, evs ...DomainEvent) error {
	envs, err := NewEnvelopes(ctx, evs...)
	if err != nil {
		return err
	}
	return p.Publish(ctx, envs...)
}
