package eventbus

import "context"

type metadataKey struct{}

// metadataCtx carries the metadata for events raised under a context. It is
// one allocation; the correlation id of a consumed event with none of its own
// is computed lazily so the delivery path allocates nothing else.
type metadataCtx struct {
	context.Context
	md    Metadata
	cause EventID // the consumed event, when set by ContextWithEvent
}

func (c *metadataCtx) Value(key any) any {
	if key == (metadataKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// WithMetadata returns a context under which NewEnvelope stamps md on every
// event. Commands use it for the request's correlation id and acting user.
func WithMetadata(ctx context.Context, md Metadata) context.Context {
	return &metadataCtx{Context: ctx, md: md}
}

// ContextWithEvent returns the context a bus hands to a handler consuming
// env: events the handler raises get causation_id = env's id and inherit its
// correlation id (env's own id if it has none), user id and traceparent.
// Every bus in this module calls it; custom buses should too.
func ContextWithEvent(ctx context.Context, env *Envelope) context.Context {
	return &metadataCtx{Context: ctx, md: env.Metadata, cause: env.EventID}
}

// EventContext is the context ContextWithEvent returns, as a value a bus can
// keep in its own per-delivery storage instead of allocating one per event.
// Set it with Reset before handing its address to a handler, and do not
// reset it while a handler may still use it. The zero value is not a usable
// context.
type EventContext struct {
	metadataCtx
}

// Reset makes c the context ContextWithEvent(parent, env) would return.
func (c *EventContext) Reset(parent context.Context, env *Envelope) {
	c.metadataCtx = metadataCtx{Context: parent, md: env.Metadata, cause: env.EventID}
}

// MetadataFromContext returns the metadata that NewEnvelope would stamp on an
// event raised under ctx.
func MetadataFromContext(ctx context.Context) Metadata {
	c, ok := ctx.Value(metadataKey{}).(*metadataCtx)
	if !ok {
		return Metadata{}
	}
	md := c.md
	if !c.cause.IsZero() {
		cause := c.cause.String()
		md.CausationID = cause
		if md.CorrelationID == "" {
			md.CorrelationID = cause
		}
	}
	return md
}

// CausingEvent returns the id of the event being handled under ctx, if any.
func CausingEvent(ctx context.Context) (EventID, bool) {
	c, ok := ctx.Value(metadataKey{}).(*metadataCtx)
	if !ok || c.cause.IsZero() {
		return EventID{}, false
	}
	return c.cause, true
}
