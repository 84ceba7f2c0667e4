package app_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/adapters/memory"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/app"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/events"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// Concurrent deliveries for one session (a bus with several consumers) must
// reach the live listeners in sequence order, each sequence once, with no
// gap: a bridge forwards them as they come and clients detect gaps by it.
func TestDashboardListenersSeeSequencesInOrder(t *testing.T) {
	t.Parallel()
	dash := app.NewDashboardCache(memory.NewStore().Repositories(), nil)
	sid := domain.NewID()
	ctx := context.Background()
	require.NoError(t, dash.Apply(ctx, eventbus.MustEnvelope(ctx, events.SessionCreated{SessionID: sid, UserID: "u1", Title: "t", CreatedAt: time.Now()})))

	var mu sync.Mutex
	var seen []uint64
	cancel := dash.OnUpdate(func(u app.Update) {
		runtime.Gosched() // widen the window between sequencing and notifying
		mu.Lock()
		seen = append(seen, u.Sequence)
		mu.Unlock()
	})
	defer cancel()

	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				env := eventbus.MustEnvelope(ctx, events.SessionRenamed{SessionID: sid, UserID: "u1", OldTitle: "t", NewTitle: fmt.Sprintf("t%d-%d", w, i), RenamedAt: time.Now()})
				if err := dash.Apply(ctx, env); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	require.Len(t, seen, workers*each)
	for i, s := range seen {
		require.Equal(t, uint64(i+2), s, "update %d delivered out of order", i)
	}
	db, ok := dash.Get(sid)
	require.True(t, ok)
	require.Equal(t, uint64(workers*each+1), db.Sequence)
}

// slowSessions returns what it read, but only after release is closed: a
// rebuild that read stored state before a concurrent change and finishes
// after it.
type slowSessions struct {
	app.SessionRepository
	once    sync.Once
	read    chan struct{}
	release chan struct{}
}

func (s *slowSessions) Get(ctx context.Context, id uuid.UUID) (*domain.Session, error) {
	sess, err := s.SessionRepository.Get(ctx, id)
	first := false
	s.once.Do(func() { first = true })
	if first {
		close(s.read)
		<-s.release
	}
	return sess, err
}

// A rebuild racing with an incremental update must not overwrite the update
// with the older state it read.
func TestDashboardRebuildDoesNotOverwriteConcurrentUpdate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	repos := memory.NewStore().Repositories()
	sess, err := domain.NewSession("u1", "old", nil, time.Now())
	require.NoError(t, err)
	require.NoError(t, repos.Sessions.Create(ctx, sess))
	slow := &slowSessions{SessionRepository: repos.Sessions, read: make(chan struct{}), release: make(chan struct{})}
	repos.Sessions = slow
	dash := app.NewDashboardCache(repos, nil)

	rebuilt := make(chan error, 1)
	go func() {
		_, err := dash.Rebuild(ctx, sess.ID)
		rebuilt <- err
	}()
	select {
	case <-slow.read: // the rebuild holds the "old" state
	case <-time.After(10 * time.Second):
		t.Fatal("rebuild never read the session")
	}
	old, err := sess.Rename("new", time.Now())
	require.NoError(t, err)
	require.NoError(t, repos.Sessions.Update(ctx, sess))
	require.NoError(t, dash.Apply(ctx, eventbus.MustEnvelope(ctx, events.SessionRenamed{SessionID: sess.ID, UserID: "u1", OldTitle: old, NewTitle: "new", RenamedAt: time.Now()})))
	close(slow.release)
	select {
	case err := <-rebuilt:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("rebuild did not finish")
	}
	db, ok := dash.Get(sess.ID)
	require.True(t, ok)
	require.Equal(t, "new", db.Title, "the stale rebuild overwrote a newer update")
	require.Equal(t, uint64(1), db.Sequence)
}
