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
