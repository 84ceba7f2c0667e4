package eventbus

import (
	"context"
	"time"
)

// Hooks observe a bus without tying it to a metrics or tracing library. Every
// field is optional and may be called concurrently. Hooks receive envelopes
// for their ids and types; log those, never payloads.
type Hooks struct {
	// OnPublish runs after each envelope is accepted (err nil) or refused.
	OnPublish func(ctx context.Context, env Envelope, err error)
	// OnDeliver runs before a handler is invoked.
	OnDeliver func(ctx context.Context, handler string, env Envelope)
	// OnAck runs after a handler succeeded and the delivery was acknowledged.
	OnAck func(ctx context.Context, handler string, env Envelope)
	// OnFail runs after a handler returned an error (or panicked).
	OnFail func(ctx context.Context, handler string, env Envelope, err error)
	// OnRetry runs before a retry is scheduled after delay.
	OnRetry func(ctx context.Context, handler string, env Envelope, attempt int, delay time.Duration, err error)
	// OnDeadLetter runs after an event was moved to the dead-letter queue.
	OnDeadLetter func(ctx context.Context, handler string, env Envelope, err error)
}

func (h *Hooks) publish(ctx context.Context, env Envelope, err error) {
	if h != nil && h.OnPublish != nil {
		h.OnPublish(ctx, env, err)
	}
}

func (h *Hooks) deliver(ctx context.Context, name string, env Envelope) {
	if h != nil && h.OnDeliver != nil {
		h.OnDeliver(ctx, name, env)
	}
}

func (h *Hooks) ack(ctx context.Context, name string, env Envelope) {
	if h != nil && h.OnAck != nil {
		h.OnAck(ctx, name, env)
	}
}

func (h *Hooks) fail(ctx context.Context, name string, env Envelope, err error) {
	if h != nil && h.OnFail != nil {
		h.OnFail(ctx, name, env, err)
	}
}

// Publish calls OnPublish if set; adapters use these helpers so a nil *Hooks
// is always safe.
func (h *Hooks) Publish(ctx context.Context, env Envelope, err error) { h.publish(ctx, env, err) }

// Deliver calls OnDeliver if set.
func (h *Hooks) Deliver(ctx context.Context, name string, env Envelope) { h.deliver(ctx, name, env) }

// Ack calls OnAck if set.
func (h *Hooks) Ack(ctx context.Context, name string, env Envelope) { h.ack(ctx, name, env) }

// Fail calls OnFail if set.
func (h *Hooks) Fail(ctx context.Context, name string, env Envelope, err error) {
	h.fail(ctx, name, env, err)
}

// Retry calls OnRetry if set.
func (h *Hooks) Retry(ctx context.Context, name string, env Envelope, attempt int, delay time.Duration, err error) {
	if h != nil && h.OnRetry != nil {
		h.OnRetry(ctx, name, env, attempt, delay, err)
	}
}

// DeadLetter calls OnDeadLetter if set.
func (h *Hooks) DeadLetter(ctx context.Context, name string, env Envelope, err error) {
	if h != nil && h.OnDeadLetter != nil {
		h.OnDeadLetter(ctx, name, env, err)
	}
}
