package redisstream

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/deadletter"
	"github.com/choicesherpa/eventkit/eventbus"
)

// The handler's context, as a handler sees it through the bus: the event,
// the deadline, the timeout's error and cause (for contexts derived from it
// too), and cancellation once Handle returned.
func TestHandlerContextThroughTheBus(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.HandlerTimeout = 150 * time.Millisecond
	c.MaxDeliveries = 1
	b := f.bus(t, c)
	env := mkEnv(t, 1, "a")
	type seen struct {
		causing       eventbus.EventID
		deadlineIn    time.Duration
		hasDeadline   bool
		err, cause    error
		childErr      error
		childCause    error
		childDeadline time.Time
		deadline      time.Time
	}
	got := make(chan seen, 1)
	var kept atomic.Pointer[context.Context]
	_, err := b.Subscribe(ctx, "g", eventbus.HandlerFunc(func(hctx context.Context, e eventbus.Envelope) error {
		var s seen
		s.causing, _ = eventbus.CausingEvent(hctx)
		s.deadline, s.hasDeadline = hctx.Deadline()
		s.deadlineIn = time.Until(s.deadline)
		child, cancel := context.WithTimeout(hctx, time.Hour)
		defer cancel()
		s.childDeadline, _ = child.Deadline()
		<-hctx.Done()
		<-child.Done()
		s.err, s.cause = hctx.Err(), context.Cause(hctx)
		s.childErr, s.childCause = child.Err(), context.Cause(child)
		kept.Store(&hctx)
		got <- s
		return hctx.Err()
	}))
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, b.Publish(ctx, env))
	var s seen
	select {
	case s = <-got:
	case <-ctx.Done():
		t.Fatal("the handler never timed out")
	}
	require.Equal(t, env.EventID, s.causing, "the handler's context carries the event")
	require.True(t, s.hasDeadline)
	require.InDelta(t, float64(150*time.Millisecond), float64(s.deadlineIn), float64(100*time.Millisecond))
	require.Equal(t, s.deadline, s.childDeadline, "a derived context keeps the handler's earlier deadline")
	require.ErrorIs(t, s.err, context.DeadlineExceeded)
	require.ErrorIs(t, s.cause, eventbus.ErrHandlerTimeout)
	require.ErrorIs(t, s.childCause, eventbus.ErrHandlerTimeout)
	require.Error(t, s.childErr)
	require.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond, "not before the timeout")

	// The failure is the timeout's: the record says so.
	eventually(t, 10*time.Second, func() bool { n, _ := f.dlq.Count(ctx, deadletter.Filter{}); return n == 1 }, "no DLQ record")
	recs, _, err := f.dlq.List(ctx, deadletter.Filter{}, deadletter.Page{Limit: 10})
	require.NoError(t, err)
	require.Contains(t, recs[0].LastError, eventbus.ErrHandlerTimeout.Error())

	// Once Handle returned, its context is over.
	hctx := *kept.Load()
	select {
	case <-hctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the context outlived its handler")
	}
}

// A handler that returns before the timeout leaves its context cancelled
// (as context.WithTimeout's cancel would), and the next handler on the same
// worker gets its whole timeout: a timer firing late for one handler never
// ends the next one's context.
func TestHandlerClockNeverCutsTheNextHandlerShort(t *testing.T) {
	t.Parallel()
	const timeout = 20 * time.Millisecond
	clock := newHandlerClock(timeout)
	defer clock.stop()
	parent := context.Background()
	env := mkEnv(t, 1, "a")
	var early int
	for i := range 60 {
		d := &delivery{env: &env}
		ctx := clock.start(parent, d)
		// Finish around the deadline, either side of it.
		time.Sleep(timeout - 2*time.Millisecond + time.Duration(i%5)*time.Millisecond)
		clock.finish()
		require.Error(t, ctx.Err(), "cancelled once the handler returned")

		next := &delivery{env: &env}
		nctx := clock.start(parent, next)
		time.Sleep(timeout / 2)
		if nctx.Err() != nil {
			early++
		}
		clock.finish()
	}
	require.Zero(t, early, "a handler's context ended before its own deadline")
}

// The subscription's context ending (Close giving up) ends the handler's.
func TestHandlerClockFollowsItsParent(t *testing.T) {
	t.Parallel()
	clock := newHandlerClock(time.Hour)
	defer clock.stop()
	env := mkEnv(t, 1, "a")
	parent, cancel := context.WithCancelCause(context.Background())
	ctx := clock.start(parent, &delivery{env: &env})
	stop := errors.New("closing")
	cancel(stop)
	<-ctx.Done()
	require.ErrorIs(t, ctx.Err(), context.Canceled)
	require.ErrorIs(t, context.Cause(ctx), stop)
	clock.finish()
}

func TestHandlerClockAllocations(t *testing.T) {
	clock := newHandlerClock(time.Minute)
	defer clock.stop()
	env := mkEnv(t, 1, "a")
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &delivery{env: &env}
	allocs := testing.AllocsPerRun(200, func() {
		clock.start(parent, d)
		clock.finish()
	})
	// context.WithCancelCause's context and cancel function; no timer.
	require.LessOrEqual(t, allocs, 2.0)
}

// The interleaving CI once hit: a timer firing has disarmed the clock and
// not yet cancelled when the handler returns. The context must be over
// when finish returns all the same.
func TestHandlerClockFinishEndsAContextAFiringDisarmed(t *testing.T) {
	t.Parallel()
	clock := newHandlerClock(time.Hour)
	defer clock.stop()
	env := mkEnv(t, 1, "a")
	ctx := clock.start(context.Background(), &delivery{env: &env})
	clock.mu.Lock()
	clock.armed = nil // what expire does before it cancels, outside the lock
	clock.mu.Unlock()
	clock.finish()
	require.ErrorIs(t, ctx.Err(), context.Canceled)
}
