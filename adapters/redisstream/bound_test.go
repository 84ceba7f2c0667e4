package redisstream

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestOpBound(t *testing.T) {
	const timeout = 200 * time.Millisecond
	o := newOpBound(timeout)

	t.Run("shared within half the timeout", func(t *testing.T) {
		start := time.Now()
		a := o.shared()
		require.True(t, a.Done() == o.shared().Done(), "calls close together share one deadline")
		dl, ok := a.Deadline()
		require.True(t, ok)
		require.WithinRange(t, dl, start.Add(timeout/2), time.Now().Add(timeout))
		time.Sleep(timeout/2 + 10*time.Millisecond)
		b := o.shared()
		require.True(t, a.Done() != b.Done(), "past half the timeout a call takes a fresh deadline")
		require.NoError(t, a.Err(), "the older deadline is not cut short: a call may still use it")
		<-a.Done()
		require.ErrorIs(t, a.Err(), context.DeadlineExceeded)
		bdl, _ := b.Deadline()
		require.GreaterOrEqual(t, time.Until(bdl), timeout/2-10*time.Millisecond, "every call gets at least half the timeout")
	})

	t.Run("an ended context is never handed out", func(t *testing.T) {
		// As a wall-clock step back once left it: renewal still ahead, the
		// deadline (monotonic) passed.
		dead, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		<-dead.Done()
		o := newOpBound(timeout)
		o.cur.Store(&sharedDeadline{ctx: dead, renewAt: time.Now().Add(time.Hour)})
		require.NoError(t, o.shared().Err())
	})

	t.Run("parent deadline wins", func(t *testing.T) {
		parent, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		ctx, release := o.bound(parent)
		defer release()
		require.Equal(t, parent, ctx)
	})

	t.Run("background takes the shared deadline", func(t *testing.T) {
		ctx, release := o.bound(context.Background())
		defer release()
		_, ok := ctx.Deadline()
		require.True(t, ok)
		require.True(t, o.shared().Done() == ctx.Done())
	})

	t.Run("values are kept", func(t *testing.T) {
		type key struct{}
		parent := context.WithValue(context.Background(), key{}, "trace-1")
		ctx, release := o.bound(parent)
		defer release()
		require.Equal(t, "trace-1", ctx.Value(key{}))
		_, ok := ctx.Deadline()
		require.True(t, ok)
		require.NoError(t, context.Cause(ctx))
	})

	t.Run("cancellable parent gets its own", func(t *testing.T) {
		parent, cancelParent := context.WithCancel(context.Background())
		ctx, release := o.bound(parent)
		dl, ok := ctx.Deadline()
		require.True(t, ok)
		require.WithinDuration(t, time.Now().Add(timeout), dl, 50*time.Millisecond)
		cancelParent()
		<-ctx.Done()
		require.ErrorIs(t, ctx.Err(), context.Canceled, "the caller's cancellation still reaches the call")
		release()
	})
}
