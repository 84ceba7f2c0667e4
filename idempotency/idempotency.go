package idempotency

import (
	"context"
	"errors"
	"time"

	"github.com/choicesherpa/eventkit/eventbus"
)

// ProcessedEventStore records which handler has processed which event.
//
// Process runs fn unless (handler, id) is already marked, and marks it when
// fn succeeds, atomically with fn's effects where the store can make them
// atomic (a database transaction that fn's context carries). It reports
// duplicate=true, without calling fn, for a pair that is marked. When fn
// fails nothing is marked and its error is returned. Concurrent calls for one
// pair run fn at most once at a time, and at most once successfully.
type ProcessedEventStore interface {
	Process(ctx context.Context, handler string, id eventbus.EventID, fn func(ctx context.Context) error) (duplicate bool, err error)
}

// Checker is implemented by stores that can answer "was this processed?"
// without processing. Use it for inspection, never for check-then-act.
type Checker interface {
	IsProcessed(ctx context.Context, handler string, id eventbus.EventID) (bool, error)
}

// Pruner is implemented by stores that can forget markers older than a
// retention cutoff. It returns how many markers it deleted.
type Pruner interface {
	DeleteBefore(ctx context.Context, cutoff time.Time) (int64, error)
}

// Handler is an idempotent decorator around Next. Build it with Wrap.
type Handler struct {
	// Name keys the markers; it must be the stable subscription name.
	Name string
	// Next is the decorated handler.
	Next eventbus.Handler
	// Store holds the markers.
	Store ProcessedEventStore
	// OnDuplicate, if set, is called for each skipped duplicate.
	OnDuplicate func(ctx context.Context, env eventbus.Envelope)
}

var _ eventbus.Handler = (*Handler)(nil)

// Wrap returns a handler that applies h's effect at most once per event id
// for the handler name (see the package documentation).
func Wrap(h eventbus.Handler, store ProcessedEventStore, name string) *Handler {
	return &Handler{Name: name, Next: h, Store: store}
}

// ErrMisconfigured is returned by a Handler missing its name, store or next handler.
var ErrMisconfigured = errors.New("idempotency: handler needs a name, a store and a next handler")

// Handle runs Next through the store; a duplicate is acknowledged (nil).
func (h *Handler) Handle(ctx context.Context, env eventbus.Envelope) error {
	if h.Name == "" || h.Store == nil || h.Next == nil {
		return eventbus.Permanent(ErrMisconfigured)
	}
	if env.EventID.IsZero() {
		return eventbus.Permanent(errors.Join(eventbus.ErrInvalidEnvelope, errors.New("idempotency: event without id")))
	}
	dup, err := h.Store.Process(ctx, h.Name, env.EventID, func(ctx context.Context) error {
		return h.Next.Handle(ctx, env)
	})
	if dup && err == nil && h.OnDuplicate != nil {
		h.OnDuplicate(ctx, env)
	}
	return err
}
