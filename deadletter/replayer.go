package deadletter

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/choicesherpa/eventkit/eventbus"
)

// ErrUnknownHandler is returned by HandlerReplayer.Replay for a record whose
// handler was never registered.
var ErrUnknownHandler = errors.New("deadletter: no handler registered under the record's name")

// HandlerReplayer is a Replayer for the embedded mode and tests: it hands
// the event straight to the registered handler of the same name, on the
// caller's goroutine. When the handler fails, the failure is written back
// to the Store (same record, Attempts 1, the new error, reason permanent or
// max_deliveries) and Replay returns nil, as a durable bus would: the event
// was delivered, and it is dead again instead of being retried in a loop.
// A handler panic counts as such a failure (an *eventbus.PanicError). The
// handler's context is built with eventbus.ContextWithEvent, as a bus does,
// so events it raises name the replayed event as their cause.
// It is safe for concurrent use.
type HandlerReplayer struct {
	store Store
	now   func() time.Time

	mu       sync.RWMutex
	handlers map[string]eventbus.Handler
}

var _ Replayer = (*HandlerReplayer)(nil)

// NewHandlerReplayer returns a replayer that writes re-failures to store.
// now stamps them; nil means time.Now.
func NewHandlerReplayer(store Store, now func() time.Time) (*HandlerReplayer, error) {
	if store == nil {
		return nil, errors.New("deadletter: NewHandlerReplayer needs a store")
	}
	if now == nil {
		now = time.Now
	}
	return &HandlerReplayer{store: store, now: now, handlers: make(map[string]eventbus.Handler)}, nil
}

// Register makes h the target of replays of records whose Handler is name.
func (r *HandlerReplayer) Register(name string, h eventbus.Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handlers[name] = h
}

// Replay implements Replayer.
func (r *HandlerReplayer) Replay(ctx context.Context, rec Record) error {
	if rec.Envelope == nil {
		return ErrNoEnvelope
	}
	r.mu.RLock()
	h := r.handlers[rec.Handler]
	r.mu.RUnlock()
	if h == nil {
		return fmt.Errorf("%w: %q", ErrUnknownHandler, rec.Handler)
	}
	err := invoke(ctx, h, rec.Envelope)
	if err == nil {
		return nil
	}
	reason := ReasonMaxDeliveries
	if eventbus.IsPermanent(err) {
		reason = ReasonPermanent
	}
	again := Record{
		ID:           rec.ID,
		Envelope:     rec.Envelope,
		EventID:      rec.EventID,
		EventType:    rec.EventType,
		Handler:      rec.Handler,
		Source:       rec.Source,
		SourceID:     rec.SourceID,
		Reason:       reason,
		Attempts:     1,
		LastError:    err.Error(),
		LastFailedAt: r.now(),
	}
	if perr := r.store.Put(ctx, again); perr != nil {
		return fmt.Errorf("deadletter: replayed event failed (%v) and could not be written back: %w", err, perr)
	}
	return nil
}

// invoke runs h on env as a bus would: under eventbus.ContextWithEvent, with
// a panic turned into an *eventbus.PanicError.
func invoke(ctx context.Context, h eventbus.Handler, env *eventbus.Envelope) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &eventbus.PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return h.Handle(eventbus.ContextWithEvent(ctx, env), *env)
}
