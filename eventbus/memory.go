package eventbus

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
)

// DefaultHistory is how many published envelopes an InMemoryBus keeps for its
// test helpers when InMemoryConfig.History is 0.
const DefaultHistory = 10_000

// InMemoryConfig configures an InMemoryBus. The zero value is valid.
type InMemoryConfig struct {
	// History is how many published envelopes are kept for Published,
	// EventsOfType and the other test helpers, oldest dropped first.
	// Defaults to DefaultHistory; a negative value keeps none (production
	// use and benchmarks).
	History int
	// Hooks observe publishing and delivery. Defaults to none.
	Hooks *Hooks
}

// InMemoryBus is the embedded bus and the test double. Publish delivers each
// envelope synchronously, on the caller's goroutine, to every matching
// subscription in registration order, and returns when all of them have run:
// one handler's error or panic does not stop the others, and all errors come
// back joined (each a *HandlerError). Subscriptions that share a name compete:
// each event goes to one of them, round robin. Handlers may publish from
// inside Handle. Nothing is persisted, so nothing is redelivered either: the
// caller sees the error and decides.
//
// It is safe for concurrent use.
type InMemoryBus struct {
	groups atomic.Pointer[[]*memGroup] // copy on write, registration order
	closed atomic.Bool
	hooks  *Hooks

	subMu sync.Mutex // serialises changes to groups

	histMu  sync.Mutex
	limit   int
	hist    []Envelope // ring buffer once full
	start   int        // index of the oldest entry once full
	waiters []chan struct{}
}

type memGroup struct {
	name    string
	all     bool
	types   []string
	members atomic.Pointer[[]*memSub]
	next    atomic.Uint64
}

type memSub struct {
	bus    *InMemoryBus
	group  *memGroup
	h      Handler
	closed atomic.Bool
	stop   func() bool
}

var (
	_ Bus          = (*InMemoryBus)(nil)
	_ Subscription = (*memSub)(nil)
)

// NewInMemoryBus returns a bus; cfg may be nil.
func NewInMemoryBus(cfg *InMemoryConfig) *InMemoryBus {
	b := &InMemoryBus{limit: DefaultHistory}
	if cfg != nil {
		if cfg.History != 0 {
			b.limit = cfg.History
		}
		b.hooks = cfg.Hooks
	}
	if b.limit < 0 {
		b.limit = 0
	}
	return b
}

// Publish validates and delivers envs in order (see InMemoryBus). It
// validates fully (Envelope.Validate), payload JSON included, as the Redis
// bus and the outbox do: the test double rejects what they reject.
func (b *InMemoryBus) Publish(ctx context.Context, envs ...Envelope) error {
	if b.closed.Load() {
		return ErrClosed
	}
	// Validate the whole batch first: a bad envelope rejects the call before
	// any of its events reach a handler.
	for i := range envs {
		if err := envs[i].Validate(); err != nil {
			b.hooks.publish(ctx, envs[i], err)
			return err
		}
	}
	var errs []error
	for i := range envs {
		env := &envs[i]
		if err := ctx.Err(); err != nil {
			// Keep the handler errors of the envelopes already delivered.
			errs = append(errs, fmt.Errorf("eventbus: publish %s %s: %w", env.EventType, env.EventID, err))
			return errors.Join(errs...)
		}
		b.record(env)
		b.hooks.publish(ctx, *env, nil)
		if err := b.dispatch(ctx, env); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (b *InMemoryBus) dispatch(ctx context.Context, env *Envelope) error {
	gp := b.groups.Load()
	if gp == nil {
		return nil
	}
	var errs []error
	var hctx context.Context
	for _, g := range *gp {
		if !g.matches(env.EventType) {
			continue
		}
		s := g.pick()
		if s == nil {
			continue
		}
		if hctx == nil {
			hctx = ContextWithEvent(ctx, env)
		}
		b.hooks.deliver(hctx, g.name, *env)
		if err := s.invoke(hctx, env); err != nil {
			b.hooks.fail(hctx, g.name, *env, err)
			errs = append(errs, &HandlerError{Handler: g.name, EventID: env.EventID, EventType: env.EventType, Err: err})
		} else {
			b.hooks.ack(hctx, g.name, *env)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errors.Join(errs...)
}

func (s *memSub) invoke(ctx context.Context, env *Envelope) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return s.h.Handle(ctx, *env)
}

func (g *memGroup) matches(typ string) bool {
	return g.all || slices.Contains(g.types, typ)
}

func (g *memGroup) pick() *memSub {
	mp := g.members.Load()
	if mp == nil || len(*mp) == 0 {
		return nil
	}
	m := *mp
	if len(m) == 1 {
		return m[0]
	}
	return m[(g.next.Add(1)-1)%uint64(len(m))]
}

// Subscribe registers h (see Subscriber). Subscribing a name that exists adds
// a competing member to it; its event types must then be the same.
func (b *InMemoryBus) Subscribe(ctx context.Context, name string, h Handler, eventTypes ...string) (Subscription, error) {
	if name == "" {
		return nil, errors.New("eventbus: subscription name must not be empty")
	}
	if h == nil {
		return nil, fmt.Errorf("eventbus: nil handler for %q", name)
	}
	for _, t := range eventTypes {
		if _, err := ParseSchemaVersion(t); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.subMu.Lock()
	defer b.subMu.Unlock()
	if b.closed.Load() {
		return nil, ErrClosed
	}
	types := slices.Clone(eventTypes)
	slices.Sort(types)
	types = slices.Compact(types)

	var groups []*memGroup
	if gp := b.groups.Load(); gp != nil {
		groups = *gp
	}
	var g *memGroup
	for _, existing := range groups {
		if existing.name == name {
			g = existing
			break
		}
	}
	if g == nil {
		g = &memGroup{name: name, all: len(types) == 0, types: types}
		next := append(slices.Clone(groups), g)
		b.groups.Store(&next)
	} else if !slices.Equal(g.types, types) {
		return nil, fmt.Errorf("%w: %q already subscribes to other event types", ErrDuplicateSubscription, name)
	}
	s := &memSub{bus: b, group: g, h: h}
	var members []*memSub
	if mp := g.members.Load(); mp != nil {
		members = *mp
	}
	next := append(slices.Clone(members), s)
	g.members.Store(&next)
	s.stop = context.AfterFunc(ctx, func() { _ = s.Close() })
	return s, nil
}

// Name returns the subscription's handler name.
func (s *memSub) Name() string { return s.group.name }

// Close removes the subscription. A handler that is running finishes on its
// publisher's goroutine; no later event reaches it.
func (s *memSub) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	b := s.bus
	b.subMu.Lock()
	defer b.subMu.Unlock()
	// Read under subMu: a context that ends during Subscribe runs Close
	// while Subscribe (holding subMu) is still setting stop.
	if s.stop != nil {
		s.stop()
	}
	g := s.group
	var members []*memSub
	if mp := g.members.Load(); mp != nil {
		members = *mp
	}
	next := slices.DeleteFunc(slices.Clone(members), func(m *memSub) bool { return m == s })
	g.members.Store(&next)
	if len(next) == 0 {
		if gp := b.groups.Load(); gp != nil {
			groups := slices.DeleteFunc(slices.Clone(*gp), func(x *memGroup) bool { return x == g })
			b.groups.Store(&groups)
		}
	}
	return nil
}

// Close stops every subscription; Publish returns ErrClosed afterwards.
// The recorded history stays readable.
func (b *InMemoryBus) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	// Snapshot under subMu: a Subscribe that passed its closed check before
	// the Swap above has then finished adding its member, and any later one
	// sees closed. Without the lock such a subscription would outlive Close.
	var subs []*memSub
	b.subMu.Lock()
	if gp := b.groups.Load(); gp != nil {
		for _, g := range *gp {
			if mp := g.members.Load(); mp != nil {
				subs = append(subs, *mp...)
			}
		}
	}
	b.subMu.Unlock()
	for _, s := range subs {
		_ = s.Close()
	}
	return nil
}

func (b *InMemoryBus) record(env *Envelope) {
	if b.limit == 0 {
		return
	}
	b.histMu.Lock()
	if len(b.hist) < b.limit {
		b.hist = append(b.hist, *env)
	} else {
		b.hist[b.start] = *env
		b.start = (b.start + 1) % b.limit
	}
	b.wakeWaitersLocked()
	b.histMu.Unlock()
}

// wakeWaitersLocked makes every WaitFor re-check (histMu held).
func (b *InMemoryBus) wakeWaitersLocked() {
	for _, w := range b.waiters {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}
