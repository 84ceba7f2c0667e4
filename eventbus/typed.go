package eventbus

import (
	"context"
	"fmt"
)

// TypedHandlerFunc handles one decoded event type; env is the raw envelope
// (ids, metadata) in case the handler needs it.
type TypedHandlerFunc[T DomainEvent] func(ctx context.Context, ev T, env Envelope) error

// Typed adapts fn to a Handler that decodes the payload into T through r
// (DefaultRegistry when nil), upcasting older versions of T's type. A payload
// that does not decode is a permanent error.
func Typed[T DomainEvent](r *Registry, fn TypedHandlerFunc[T]) Handler {
	return HandlerFunc(func(ctx context.Context, env Envelope) error {
		ev, err := DecodeAs[T](r, env)
		if err != nil {
			return err
		}
		return fn(ctx, ev, env)
	})
}

// Subscribe registers fn under name for T's event type and every older
// version of it, decoding payloads into T (see Typed). It uses DefaultRegistry.
//
//	eventbus.Subscribe(ctx, bus, "dashboard", func(ctx context.Context, ev SessionCreated, env eventbus.Envelope) error {
//		...
//	})
func Subscribe[T DomainEvent](ctx context.Context, sub Subscriber, name string, fn TypedHandlerFunc[T]) (Subscription, error) {
	typ := eventTypeOf[T]()
	v, err := ParseSchemaVersion(typ)
	if err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, fmt.Errorf("eventbus: nil handler for %q", name)
	}
	types := make([]string, 0, v)
	for i := v; i >= 1; i-- {
		types = append(types, VersionedType(BaseType(typ), i))
	}
	return sub.Subscribe(ctx, name, Typed(DefaultRegistry, fn), types...)
}
