// Package memory holds the embedded-mode repositories and unit of work.
//
// Guarantees: writes made inside UnitOfWork.Do are staged in the unit and
// applied to the store only when fn succeeds (a failed unit leaves no
// trace); reads inside a unit see its own staged writes; units are
// serialised (one at a time), so no update is lost. After a unit commits,
// the events it raised are published, in order, to the publisher, on the
// caller's goroutine, with the caller's context values but not its
// cancellation (so handlers raise follow-up events in their own units, and a
// caller that goes away after the commit loses nothing). A committed unit
// always reports success; delivery failures are logged (event type and id),
// not returned (see UnitOfWork.Do). Aggregates are copied in and out:
// callers never share memory with the store.
package memory

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/app"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/google/uuid"
)

// Store holds every aggregate in process memory.
type Store struct {
	commitMu sync.Mutex // one unit of work at a time
	mu       sync.RWMutex
	data     state
}

type state struct {
	sessions   map[uuid.UUID]*domain.Session
	cycles     map[uuid.UUID]*domain.Cycle
	convs      map[uuid.UUID]*domain.Conversation
	convByComp map[uuid.UUID]uuid.UUID
}

func newState() state {
	return state{sessions: map[uuid.UUID]*domain.Session{}, cycles: map[uuid.UUID]*domain.Cycle{},
		convs: map[uuid.UUID]*domain.Conversation{}, convByComp: map[uuid.UUID]uuid.UUID{}}
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{data: newState()} }

// Repositories returns the three repositories over s.
func (s *Store) Repositories() app.Repositories {
	return app.Repositories{Sessions: sessionRepo{s}, Cycles: cycleRepo{s}, Conversations: convRepo{s}}
}

type txKey struct{}

// tx is a unit's staged writes.
type tx struct{ staged state }

func txFrom(ctx context.Context) *tx {
	t, _ := ctx.Value(txKey{}).(*tx)
	return t
}

// UnitOfWork is the embedded outbox.UnitOfWork (see the package doc).
type UnitOfWork struct {
	store *Store
	pub   eventbus.Publisher
	log   *slog.Logger
}

var _ outbox.UnitOfWork = (*UnitOfWork)(nil)

// NewUnitOfWork returns a unit of work over store that publishes to pub.
func NewUnitOfWork(store *Store, pub eventbus.Publisher, logger *slog.Logger) (*UnitOfWork, error) {
	if store == nil || pub == nil {
		return nil, errors.New("memory: unit of work needs a store and a publisher")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &UnitOfWork{store: store, pub: pub, log: logger}, nil
}

// Do implements outbox.UnitOfWork. A Do inside another Do joins it.
//
// Once fn has succeeded the unit is committed and Do returns nil: the
// command succeeded, exactly as a committed transaction does in the
// PostgreSQL mode, where the relay delivers the events later. The events are
// then published with ctx's values but without its cancellation (a caller
// that goes away after the commit must not drop the follow-up events that
// keep the session's cycle list, conversations and analysis consistent).
// A publish error (with the in-memory bus: the joined handler errors) is
// delivery trouble, not a failed command: it is logged with the event types
// and ids and never returned. Returning it made callers retry commands that
// had committed (a second session or cycle) and made idempotent handlers
// skip their marker, so a redelivery found the effect done and never raised
// the follow-up events again.
func (u *UnitOfWork) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	if txFrom(ctx) != nil {
		return fn(ctx)
	}
	u.store.commitMu.Lock()
	t := &tx{staged: newState()}
	cctx, col := outbox.WithNewCollector(context.WithValue(ctx, txKey{}, t))
	err := fn(cctx)
	if err == nil {
		u.store.apply(t)
	}
	u.store.commitMu.Unlock()
	if err != nil {
		return err
	}
	envs := col.Envelopes()
	if len(envs) == 0 {
		return nil
	}
	pctx := context.WithoutCancel(ctx)
	if err := u.pub.Publish(pctx, envs...); err != nil {
		for _, e := range envs {
			u.log.ErrorContext(pctx, "memory: delivery after commit failed", "event_type", e.EventType, "event_id", e.EventID.String(), "error", err)
		}
	}
	return nil
}

func (s *Store) apply(t *tx) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range t.staged.sessions {
		s.data.sessions[k] = v
	}
	for k, v := range t.staged.cycles {
		s.data.cycles[k] = v
	}
	for k, v := range t.staged.convs {
		s.data.convs[k] = v
	}
	for k, v := range t.staged.convByComp {
		s.data.convByComp[k] = v
	}
}

// write stores v under id: staged in the unit of ctx, or directly.
func write[T any](s *Store, ctx context.Context, pick func(*state) map[uuid.UUID]T, id uuid.UUID, v T) {
	if t := txFrom(ctx); t != nil {
		pick(&t.staged)[id] = v
		return
	}
	s.mu.Lock()
	pick(&s.data)[id] = v
	s.mu.Unlock()
}

// read returns the value of id: staged first, then stored.
func read[T any](s *Store, ctx context.Context, pick func(*state) map[uuid.UUID]T, id uuid.UUID) (T, bool) {
	if t := txFrom(ctx); t != nil {
		if v, ok := pick(&t.staged)[id]; ok {
			return v, true
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := pick(&s.data)[id]
	return v, ok
}

// all returns every value, staged overriding stored.
func all[T any](s *Store, ctx context.Context, pick func(*state) map[uuid.UUID]T) []T {
	merged := map[uuid.UUID]T{}
	s.mu.RLock()
	for k, v := range pick(&s.data) {
		merged[k] = v
	}
	s.mu.RUnlock()
	if t := txFrom(ctx); t != nil {
		for k, v := range pick(&t.staged) {
			merged[k] = v
		}
	}
	out := make([]T, 0, len(merged))
	for _, v := range merged {
		out = append(out, v)
	}
	return out
}

func sessions(st *state) map[uuid.UUID]*domain.Session   { return st.sessions }
func cycles(st *state) map[uuid.UUID]*domain.Cycle       { return st.cycles }
func convs(st *state) map[uuid.UUID]*domain.Conversation { return st.convs }
func convByComp(st *state) map[uuid.UUID]uuid.UUID       { return st.convByComp }

type sessionRepo struct{ s *Store }

var _ app.SessionRepository = sessionRepo{}

func (r sessionRepo) Create(ctx context.Context, x *domain.Session) error {
	if _, ok := read(r.s, ctx, sessions, x.ID); ok {
		return domain.Conflictf("duplicate", "session %s exists", x.ID)
	}
	write(r.s, ctx, sessions, x.ID, x.Clone())
	return nil
}

func (r sessionRepo) Update(ctx context.Context, x *domain.Session) error {
	if _, ok := read(r.s, ctx, sessions, x.ID); !ok {
		return domain.NotFoundf("session_not_found", "session %s not found", x.ID)
	}
	write(r.s, ctx, sessions, x.ID, x.Clone())
	return nil
}

func (r sessionRepo) Get(ctx context.Context, id uuid.UUID) (*domain.Session, error) {
	x, ok := read(r.s, ctx, sessions, id)
	if !ok {
		return nil, domain.NotFoundf("session_not_found", "session %s not found", id)
	}
	return x.Clone(), nil
}

func (r sessionRepo) ListByUser(ctx context.Context, userID string) ([]*domain.Session, error) {
	var out []*domain.Session
	for _, x := range all(r.s, ctx, sessions) {
		if x.UserID == userID {
			out = append(out, x.Clone())
		}
	}
	slices.SortFunc(out, func(a, b *domain.Session) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID.String(), b.ID.String()))
	})
	return out, nil
}

type cycleRepo struct{ s *Store }

var _ app.CycleRepository = cycleRepo{}

func (r cycleRepo) Create(ctx context.Context, x *domain.Cycle) error {
	if _, ok := read(r.s, ctx, cycles, x.ID); ok {
		return domain.Conflictf("duplicate", "cycle %s exists", x.ID)
	}
	write(r.s, ctx, cycles, x.ID, x.Clone())
	return nil
}

func (r cycleRepo) Update(ctx context.Context, x *domain.Cycle) error {
	if _, ok := read(r.s, ctx, cycles, x.ID); !ok {
		return domain.NotFoundf("cycle_not_found", "cycle %s not found", x.ID)
	}
	write(r.s, ctx, cycles, x.ID, x.Clone())
	return nil
}

func (r cycleRepo) Get(ctx context.Context, id uuid.UUID) (*domain.Cycle, error) {
	x, ok := read(r.s, ctx, cycles, id)
	if !ok {
		return nil, domain.NotFoundf("cycle_not_found", "cycle %s not found", id)
	}
	return x.Clone(), nil
}

func (r cycleRepo) ListBySession(ctx context.Context, sessionID uuid.UUID) ([]*domain.Cycle, error) {
	var out []*domain.Cycle
	for _, x := range all(r.s, ctx, cycles) {
		if x.SessionID == sessionID {
			out = append(out, x.Clone())
		}
	}
	slices.SortFunc(out, func(a, b *domain.Cycle) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID.String(), b.ID.String()))
	})
	return out, nil
}

type convRepo struct{ s *Store }

var _ app.ConversationRepository = convRepo{}

func (r convRepo) Create(ctx context.Context, x *domain.Conversation) error {
	if _, ok := read(r.s, ctx, convByComp, x.ComponentID); ok {
		return domain.Conflictf("duplicate", "component %s already has a conversation", x.ComponentID)
	}
	if _, ok := read(r.s, ctx, convs, x.ID); ok {
		return domain.Conflictf("duplicate", "conversation %s exists", x.ID)
	}
	write(r.s, ctx, convs, x.ID, x.Clone())
	write(r.s, ctx, convByComp, x.ComponentID, x.ID)
	return nil
}

func (r convRepo) Update(ctx context.Context, x *domain.Conversation) error {
	if _, ok := read(r.s, ctx, convs, x.ID); !ok {
		return domain.NotFoundf("conversation_not_found", "conversation %s not found", x.ID)
	}
	write(r.s, ctx, convs, x.ID, x.Clone())
	return nil
}

func (r convRepo) Get(ctx context.Context, id uuid.UUID) (*domain.Conversation, error) {
	x, ok := read(r.s, ctx, convs, id)
	if !ok {
		return nil, domain.NotFoundf("conversation_not_found", "conversation %s not found", id)
	}
	return x.Clone(), nil
}

func (r convRepo) GetByComponent(ctx context.Context, componentID uuid.UUID) (*domain.Conversation, error) {
	id, ok := read(r.s, ctx, convByComp, componentID)
	if !ok {
		return nil, domain.NotFoundf("conversation_not_found", "component %s has no conversation", componentID)
	}
	return r.Get(ctx, id)
}

func (r convRepo) ListBySession(ctx context.Context, sessionID uuid.UUID) ([]*domain.Conversation, error) {
	var out []*domain.Conversation
	for _, x := range all(r.s, ctx, convs) {
		if x.SessionID == sessionID {
			out = append(out, x.Clone())
		}
	}
	slices.SortFunc(out, func(a, b *domain.Conversation) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID.String(), b.ID.String()))
	})
	return out, nil
}
