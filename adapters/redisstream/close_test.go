package redisstream

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/internal/testinfra"
)

// stallGroupCreate holds XGROUP CREATE for one group until its context
// ends, as one stale pooled connection would: that Subscribe stays starting.
type stallGroupCreate struct{ group string }

func (h stallGroupCreate) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h stallGroupCreate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h stallGroupCreate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if args := cmd.Args(); len(args) > 3 && cmd.Name() == "xgroup" && args[3] == h.group {
			<-ctx.Done()
			return ctx.Err()
		}
		return next(ctx, cmd)
	}
}

// A Subscribe stuck starting does not eat the ShutdownTimeout of the
// subscriptions already running: Close stops them at once and their
// handlers in flight finish and are acknowledged, none cancelled.
func TestBusCloseGivesRunningHandlersTheirTimeWhileASubscribeIsStuck(t *testing.T) {
	t.Parallel()
	base, prefix := testinfra.Redis(t)
	rdb := redis.NewClient(base.Options())
	defer rdb.Close()
	rdb.AddHook(stallGroupCreate{group: "stuck"})
	c := fastConfig(prefix + "events")
	c.ShutdownTimeout = time.Second
	c.WriteTimeout = 3 * time.Second
	c.Concurrency = 4
	b, err := New(rdb, c)
	require.NoError(t, err)
	ctx := ctxT(t)
	var mu sync.Mutex
	succeeded := map[string]bool{}
	var cancelled atomic.Int64
	started := make(chan struct{}, 100)
	_, err = b.Subscribe(ctx, "g", eventbus.HandlerFunc(func(hctx context.Context, env eventbus.Envelope) error {
		started <- struct{}{}
		select {
		case <-time.After(150 * time.Millisecond):
		case <-hctx.Done():
			cancelled.Add(1)
			return hctx.Err()
		}
		mu.Lock()
		succeeded[env.EventID.String()] = true
		mu.Unlock()
		return nil
	}))
	require.NoError(t, err)
	// Events keep coming from another process while this one closes, so
	// handlers are in flight whenever Close gets to them.
	pub, err := New(base, fastConfig(prefix+"events"))
	require.NoError(t, err)
	defer pub.Close()
	stopPub := make(chan struct{})
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := 0; ; i++ {
			select {
			case <-stopPub:
				return
			case <-time.After(40 * time.Millisecond):
			}
			if err := pub.Publish(ctx, mkEnv(t, i, "k")); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	<-started
	stuck := make(chan error, 1)
	go func() {
		_, err := b.Subscribe(context.Background(), "stuck", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { return nil }))
		stuck <- err
	}()
	time.Sleep(100 * time.Millisecond) // "stuck" is starting
	require.NoError(t, b.Close())
	close(stopPub)
	<-pubDone
	require.Zero(t, cancelled.Load(), "handlers in flight were cancelled")
	pend, err := base.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: c.Stream, Group: "g", Start: "-", End: "+", Count: 100}).Result()
	require.NoError(t, err)
	for _, p := range pend {
		msg, err := base.XRange(ctx, c.Stream, p.ID, p.ID).Result()
		require.NoError(t, err)
		require.Len(t, msg, 1)
		mu.Lock()
		ok := succeeded[msg[0].Values[FieldID].(string)]
		mu.Unlock()
		require.False(t, ok, "a handler that succeeded was left unacknowledged")
	}
	select {
	case err := <-stuck:
		require.Error(t, err, "a subscription cannot start on a closed bus")
	case <-time.After(c.WriteTimeout + 5*time.Second):
		t.Fatal("the stuck Subscribe did not give up")
	}
}

// A handler still running at ShutdownTimeout is cancelled; what it returns
// within its grace is still acknowledged (closeLastAck).
func TestCloseAcknowledgesWhatFinishesAfterCancel(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.ShutdownTimeout = 300 * time.Millisecond
	b, err := New(f.rdb, c)
	require.NoError(t, err)
	started := make(chan struct{}, 1)
	_, err = b.Subscribe(ctx, "g", eventbus.HandlerFunc(func(hctx context.Context, _ eventbus.Envelope) error {
		started <- struct{}{}
		<-hctx.Done()
		time.Sleep(20 * time.Millisecond) // wrapping up after the cancel
		return nil
	}))
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, mkEnv(t, 1, "a")))
	<-started
	require.NoError(t, b.Close())
	requirePendingZero(t, f.rdb, f.stream, "g")
}
