package memory

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/adapters/repotest"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/events"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/stretchr/testify/require"
)

func TestRepositoryContract(t *testing.T) {
	t.Parallel()
	repotest.Run(t, func(t *testing.T) repotest.Env {
		store := NewStore()
		uow, err := NewUnitOfWork(store, eventbus.NewInMemoryBus(nil), nil)
		require.NoError(t, err)
		return repotest.Env{Repos: store.Repositories(), UoW: uow}
	})
}

// failingPublisher records what it is given and fails.
type failingPublisher struct{ got []eventbus.Envelope }

func (p *failingPublisher) Publish(_ context.Context, envs ...eventbus.Envelope) error {
	p.got = append(p.got, envs...)
	return errors.New("handler failed")
}

func newSession(t *testing.T) *domain.Session {
	t.Helper()
	s, err := domain.NewSession("u1", "Title", nil, time.Now().UTC())
	require.NoError(t, err)
	return s
}

// A committed unit is a successful command: a delivery failure afterwards
// must not be reported as if the change had not happened (callers would
// retry and create the aggregate twice).
func TestCommittedUnitSucceedsWhenDeliveryFails(t *testing.T) {
	t.Parallel()
	store := NewStore()
	pub := &failingPublisher{}
	uow, err := NewUnitOfWork(store, pub, nil)
	require.NoError(t, err)
	sess := newSession(t)
	err = uow.Do(context.Background(), func(ctx context.Context) error {
		if err := store.Repositories().Sessions.Create(ctx, sess); err != nil {
			return err
		}
		return outbox.Raise(ctx, events.SessionCreated{SessionID: sess.ID, UserID: sess.UserID, Title: sess.Title, CreatedAt: sess.CreatedAt})
	})
	require.NoError(t, err)
	require.Len(t, pub.got, 1, "the event was handed to the publisher")
	_, err = store.Repositories().Sessions.Get(context.Background(), sess.ID)
	require.NoError(t, err, "the state change stands")
}

// A caller whose context ends after the commit must not lose the events:
// the handlers that keep derived state consistent still run.
func TestCommittedUnitDeliversAfterCallerCancels(t *testing.T) {
	t.Parallel()
	store := NewStore()
	bus := eventbus.NewInMemoryBus(nil)
	t.Cleanup(func() { _ = bus.Close() })
	var delivered []string
	sub, err := bus.Subscribe(context.Background(), "rec", eventbus.HandlerFunc(func(_ context.Context, env eventbus.Envelope) error {
		delivered = append(delivered, env.EventType)
		return nil
	}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	uow, err := NewUnitOfWork(store, bus, nil)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	sess := newSession(t)
	err = uow.Do(ctx, func(ctx context.Context) error {
		if err := store.Repositories().Sessions.Create(ctx, sess); err != nil {
			return err
		}
		cancel() // e.g. the HTTP client disconnects while the unit finishes
		return outbox.Raise(ctx, events.SessionCreated{SessionID: sess.ID, UserID: sess.UserID, Title: sess.Title, CreatedAt: sess.CreatedAt})
	})
	require.NoError(t, err)
	require.Equal(t, []string{events.TypeSessionCreated}, delivered)
}

// A failed unit leaves no trace: nothing stored, nothing published.
func TestFailedUnitLeavesNoTrace(t *testing.T) {
	t.Parallel()
	store := NewStore()
	pub := &failingPublisher{}
	uow, err := NewUnitOfWork(store, pub, nil)
	require.NoError(t, err)
	sess := newSession(t)
	boom := errors.New("boom")
	err = uow.Do(context.Background(), func(ctx context.Context) error {
		if err := store.Repositories().Sessions.Create(ctx, sess); err != nil {
			return err
		}
		if err := outbox.Raise(ctx, events.SessionCreated{SessionID: sess.ID, UserID: sess.UserID, Title: sess.Title, CreatedAt: sess.CreatedAt}); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)
	require.Empty(t, pub.got)
	_, err = store.Repositories().Sessions.Get(context.Background(), sess.ID)
	require.ErrorIs(t, err, domain.ErrNotFound)
}
