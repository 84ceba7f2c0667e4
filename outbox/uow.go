package outbox

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/choicesherpa/eventkit/eventbus"
)

// ErrNoUnitOfWork is returned by Raise when ctx carries no unit of work.
var ErrNoUnitOfWork = errors.New("outbox: no unit of work in context")

// UnitOfWork runs fn as one atomic unit: the state changes fn makes and the
// events fn raises (with Raise) are committed together, or neither is. A Do
// called inside another Do on the same context joins the outer unit.
type UnitOfWork interface {
	Do(ctx context.Context, fn func(ctx context.Context) error) error
}

// Collector gathers the envelopes raised inside one unit of work, in order.
// Implementations of UnitOfWork create one per unit (NewCollector) and read it
// when fn has returned.
type Collector struct {
	mu   sync.Mutex
	envs []eventbus.Envelope
}

type collectorKey struct{}

// NewCollector returns ctx carrying a fresh collector, unless ctx already
// carries one (a nested unit), in which case it returns that one and
// outer=false.
func NewCollector(ctx context.Context) (_ context.Context, c *Collector, outer bool) {
	if c, ok := ctx.Value(collectorKey{}).(*Collector); ok {
		return ctx, c, false
	}
	c = &Collector{}
	return context.WithValue(ctx, collectorKey{}, c), c, true
}

// CollectorFrom returns the collector ctx carries.
func CollectorFrom(ctx context.Context) (*Collector, bool) {
	c, ok := ctx.Value(collectorKey{}).(*Collector)
	return c, ok
}

// Add appends envelopes after validating them.
func (c *Collector) Add(envs ...eventbus.Envelope) error {
	for i := range envs {
		if err := envs[i].Validate(); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.envs = append(c.envs, envs...)
	c.mu.Unlock()
	return nil
}

// Envelopes returns what was raised so far, in order.
func (c *Collector) Envelopes() []eventbus.Envelope {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]eventbus.Envelope(nil), c.envs...)
}

// Raise wraps evs in envelopes (metadata from ctx: correlation, causation,
// user, traceparent; see eventbus.NewEnvelope) and adds them to the unit of
// work in ctx. They are published only if the unit commits.
func Raise(ctx context.Context, evs ...eventbus.DomainEvent) error {
	c, ok := CollectorFrom(ctx)
	if !ok {
		return ErrNoUnitOfWork
	}
	envs, err := eventbus.NewEnvelopes(ctx, evs...)
	if err != nil {
		return err
	}
	return c.Add(envs...)
}

// RaiseEnvelopes adds ready-made envelopes to the unit of work in ctx.
func RaiseEnvelopes(ctx context.Context, envs ...eventbus.Envelope) error {
	c, ok := CollectorFrom(ctx)
	if !ok {
		return ErrNoUnitOfWork
	}
	return c.Add(envs...)
}

// DirectUnitOfWork is the unit of work of the embedded mode: no database, so
// there is nothing to commit atomically with; when fn succeeds the raised
// events are published to Publisher, in order, and when fn fails they are
// dropped. Pair it with stores whose changes fn applies only on success (the
// app's in-memory repositories do).
//
// Once fn has succeeded the unit is done and Do returns nil, as a committed
// transaction does. The events are published with ctx's values but without
// its cancellation: a caller that goes away after fn must not drop the
// events of a change that was applied. A publish error (with the in-memory
// bus: the joined handler errors) is logged with the event types and ids and
// not returned: returning it made callers retry a change that was already
// applied, and made idempotent handlers skip their marker. Events whose
// publish failed are not kept (there is no database to keep them in): use
// the PostgreSQL outbox when they must survive that.
type DirectUnitOfWork struct {
	Publisher eventbus.Publisher
	// Logger receives publish failures. Defaults to slog.Default().
	Logger *slog.Logger
}

var _ UnitOfWork = (*DirectUnitOfWork)(nil)

// Do implements UnitOfWork.
func (u *DirectUnitOfWork) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	unitCtx, c, outer := NewCollector(ctx)
	if err := fn(unitCtx); err != nil {
		return err
	}
	if !outer {
		return nil
	}
	envs := c.Envelopes()
	if len(envs) == 0 {
		return nil
	}
	// Publish with the caller's context, not the unit's: a synchronous bus
	// runs handlers inside this call, and a handler that opens its own unit
	// must get a fresh collector instead of joining this finished one.
	pctx := context.WithoutCancel(ctx)
	if err := u.Publisher.Publish(pctx, envs...); err != nil {
		log := u.Logger
		if log == nil {
			log = slog.Default()
		}
		for _, e := range envs {
			log.ErrorContext(pctx, "outbox: publish after unit of work failed", "event_type", e.EventType, "event_id", e.EventID.String(), "error", err)
		}
	}
	return nil
}
