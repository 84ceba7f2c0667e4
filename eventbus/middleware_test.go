package eventbus_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/eventbus"
)

func testEnv() eventbus.Envelope {
	return eventbus.MustEnvelope(context.Background(), sessionCreated{SessionID: "s"})
}

func TestRecover(t *testing.T) {
	t.Parallel()
	h := eventbus.Recover()(eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		panic("kaboom")
	}))
	err := h.Handle(context.Background(), testEnv())
	require.ErrorIs(t, err, eventbus.ErrPanic)
	var pe *eventbus.PanicError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "kaboom", pe.Value)
	require.Contains(t, string(pe.Stack), "middleware_test.go", "the stack points at the panicking handler")

	ok := eventbus.Recover()(eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { return nil }))
	require.NoError(t, ok.Handle(context.Background(), testEnv()))
	plain := errors.New("plain")
	passthrough := eventbus.Recover()(eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { return plain }))
	require.Same(t, plain, passthrough.Handle(context.Background(), testEnv()))
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	slow := eventbus.HandlerFunc(func(ctx context.Context, _ eventbus.Envelope) error {
		<-ctx.Done()
		return ctx.Err()
	})
	start := time.Now()
	err := eventbus.Timeout(20*time.Millisecond)(slow).Handle(context.Background(), testEnv())
	require.ErrorIs(t, err, eventbus.ErrHandlerTimeout)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.False(t, eventbus.IsPermanent(err), "a timeout is worth a retry")
	require.Less(t, time.Since(start), 5*time.Second)

	// A fast handler's own error passes through unchanged.
	mine := errors.New("mine")
	fast := eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { return mine })
	require.Same(t, mine, eventbus.Timeout(time.Second)(fast).Handle(context.Background(), testEnv()))

	// The parent's cancellation is not reported as a handler timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = eventbus.Timeout(time.Second)(slow).Handle(ctx, testEnv())
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, eventbus.ErrHandlerTimeout)

	// d <= 0 disables the timeout.
	var hasDeadline bool
	probe := eventbus.HandlerFunc(func(ctx context.Context, _ eventbus.Envelope) error {
		_, hasDeadline = ctx.Deadline()
		return nil
	})
	require.NoError(t, eventbus.Timeout(0)(probe).Handle(context.Background(), testEnv()))
	require.False(t, hasDeadline)
}

// flaky fails its first n calls with err.
type flaky struct {
	n     int
	err   error
	calls atomic.Int32
}

func (f *flaky) Handle(context.Context, eventbus.Envelope) error {
	if int(f.calls.Add(1)) <= f.n {
		return f.err
	}
	return nil
}

type sleepRecorder struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (s *sleepRecorder) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.delays = append(s.delays, d)
	s.mu.Unlock()
	return ctx.Err()
}

func TestRetryBacksOffExponentially(t *testing.T) {
	t.Parallel()
	h := &flaky{n: 3, err: errors.New("transient")}
	var sr sleepRecorder
	var retries []int
	hooks := &eventbus.Hooks{OnRetry: func(_ context.Context, name string, _ eventbus.Envelope, attempt int, delay time.Duration, err error) {
		require.Equal(t, "billing", name)
		require.EqualError(t, err, "transient")
		retries = append(retries, attempt)
	}}
	mw := eventbus.Retry(eventbus.RetryConfig{
		MaxAttempts: 5,
		Backoff:     eventbus.Backoff{Initial: 10 * time.Millisecond, Multiplier: 2, Jitter: 0.1, Max: time.Second},
		Name:        "billing",
		Hooks:       hooks,
		Sleep:       sr.sleep,
	})
	require.NoError(t, mw(h).Handle(context.Background(), testEnv()))
	require.EqualValues(t, 4, h.calls.Load(), "3 failures then success")
	require.Equal(t, []int{1, 2, 3}, retries)
	require.Len(t, sr.delays, 3)
	for i, d := range sr.delays {
		base := 10 * time.Millisecond << i
		require.GreaterOrEqual(t, d, base*9/10, "retry %d", i+1)
		require.LessOrEqual(t, d, base*11/10, "retry %d", i+1)
	}
}

func TestRetryStopsAtMaxAttempts(t *testing.T) {
	t.Parallel()
	h := &flaky{n: 100, err: errors.New("down")}
	var sr sleepRecorder
	err := eventbus.Retry(eventbus.RetryConfig{MaxAttempts: 3, Sleep: sr.sleep})(h).Handle(context.Background(), testEnv())
	require.EqualError(t, err, "down")
	require.EqualValues(t, 3, h.calls.Load())
	require.Len(t, sr.delays, 2)

	// The default is DefaultRetryAttempts.
	h2 := &flaky{n: 100, err: errors.New("down")}
	_ = eventbus.Retry(eventbus.RetryConfig{Sleep: sr.sleep})(h2).Handle(context.Background(), testEnv())
	require.EqualValues(t, eventbus.DefaultRetryAttempts, h2.calls.Load())
}

func TestRetrySkipsPermanentAndShouldRetry(t *testing.T) {
	t.Parallel()
	var sr sleepRecorder
	perm := &flaky{n: 100, err: eventbus.Permanent(errors.New("bad input"))}
	err := eventbus.Retry(eventbus.RetryConfig{MaxAttempts: 5, Sleep: sr.sleep})(perm).Handle(context.Background(), testEnv())
	require.True(t, eventbus.IsPermanent(err))
	require.EqualValues(t, 1, perm.calls.Load(), "permanent errors are not retried")

	decode := &flaky{n: 100, err: fmt.Errorf("x: %w", eventbus.ErrDecode)}
	_ = eventbus.Retry(eventbus.RetryConfig{MaxAttempts: 5, Sleep: sr.sleep})(decode).Handle(context.Background(), testEnv())
	require.EqualValues(t, 1, decode.calls.Load())

	notWorth := errors.New("not worth it")
	h := &flaky{n: 100, err: notWorth}
	err = eventbus.Retry(eventbus.RetryConfig{MaxAttempts: 5, Sleep: sr.sleep, ShouldRetry: func(err error) bool {
		return !errors.Is(err, notWorth)
	}})(h).Handle(context.Background(), testEnv())
	require.Same(t, notWorth, err)
	require.EqualValues(t, 1, h.calls.Load())
	require.Empty(t, sr.delays)
}

func TestRetryAbandonsWhenContextEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cause := errors.New("down")
	h := eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		cancel()
		return cause
	})
	// The default sleep returns at once when ctx is done, even with a long backoff.
	start := time.Now()
	err := eventbus.Retry(eventbus.RetryConfig{MaxAttempts: 5, Backoff: eventbus.Backoff{Initial: time.Hour}})(h).Handle(ctx, testEnv())
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, cause, "the last handler error is kept")
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestRetryDefaultSleepWaits(t *testing.T) {
	t.Parallel()
	h := &flaky{n: 1, err: errors.New("once")}
	start := time.Now()
	err := eventbus.Retry(eventbus.RetryConfig{Backoff: eventbus.Backoff{Initial: 5 * time.Millisecond, Jitter: -1}})(h).Handle(context.Background(), testEnv())
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 5*time.Millisecond)
}

func TestObserve(t *testing.T) {
	t.Parallel()
	var log []string
	var mu sync.Mutex
	add := func(s string) { mu.Lock(); log = append(log, s); mu.Unlock() }
	hooks := &eventbus.Hooks{
		OnDeliver: func(_ context.Context, name string, env eventbus.Envelope) {
			add("deliver " + name + " " + env.EventType)
		},
		OnAck: func(_ context.Context, name string, _ eventbus.Envelope) { add("ack " + name) },
		OnFail: func(_ context.Context, name string, _ eventbus.Envelope, err error) {
			add("fail " + name + ": " + err.Error())
		},
	}
	ok := eventbus.Observe("h", hooks)(eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { add("handle"); return nil }))
	bad := eventbus.Observe("h", hooks)(eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { return errors.New("no") }))
	require.NoError(t, ok.Handle(context.Background(), testEnv()))
	require.EqualError(t, bad.Handle(context.Background(), testEnv()), "no")
	require.Equal(t, []string{
		"deliver h session.created.v1", "handle", "ack h",
		"deliver h session.created.v1", "fail h: no",
	}, log)

	// nil hooks and empty hooks are safe.
	require.NoError(t, eventbus.Observe("h", nil)(eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { return nil })).Handle(context.Background(), testEnv()))
	require.NoError(t, eventbus.Observe("h", &eventbus.Hooks{})(eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { return nil })).Handle(context.Background(), testEnv()))
	var nilHooks *eventbus.Hooks
	nilHooks.Publish(context.Background(), testEnv(), nil)
	nilHooks.Deliver(context.Background(), "x", testEnv())
	nilHooks.Ack(context.Background(), "x", testEnv())
	nilHooks.Fail(context.Background(), "x", testEnv(), nil)
	nilHooks.Retry(context.Background(), "x", testEnv(), 1, 0, nil)
	nilHooks.DeadLetter(context.Background(), "x", testEnv(), nil)

	var dl string
	(&eventbus.Hooks{OnDeadLetter: func(_ context.Context, name string, _ eventbus.Envelope, _ error) { dl = name }}).DeadLetter(context.Background(), "q", testEnv(), errors.New("x"))
	require.Equal(t, "q", dl)
}

func TestChainOrder(t *testing.T) {
	t.Parallel()
	var trace []string
	mw := func(name string) eventbus.Middleware {
		return func(next eventbus.Handler) eventbus.Handler {
			return eventbus.HandlerFunc(func(ctx context.Context, env eventbus.Envelope) error {
				trace = append(trace, ">"+name)
				err := next.Handle(ctx, env)
				trace = append(trace, "<"+name)
				return err
			})
		}
	}
	h := eventbus.Chain(eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		trace = append(trace, "h")
		return nil
	}), mw("A"), mw("B"), mw("C"))
	require.NoError(t, h.Handle(context.Background(), testEnv()))
	require.Equal(t, ">A >B >C h <C <B <A", strings.Join(trace, " "), "the first middleware is the outermost")

	// Chain with no middleware returns the handler itself.
	base := eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { return nil })
	require.NotNil(t, eventbus.Chain(base))
}

func TestChainRetryRecover(t *testing.T) {
	t.Parallel()
	// Retry outside Recover: a panic becomes an error and is retried.
	var calls int
	h := eventbus.Chain(eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		calls++
		if calls == 1 {
			panic("first time")
		}
		return nil
	}), eventbus.Retry(eventbus.RetryConfig{MaxAttempts: 2, Sleep: func(context.Context, time.Duration) error { return nil }}), eventbus.Recover())
	require.NoError(t, h.Handle(context.Background(), testEnv()))
	require.Equal(t, 2, calls)
}

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	// Defaults: 100ms doubling, 20% jitter, 30s cap.
	var zero eventbus.Backoff
	for attempt := 1; attempt <= 40; attempt++ {
		want := eventbus.DefaultBackoffInitial << (attempt - 1)
		if want > eventbus.DefaultBackoffMax || want <= 0 || attempt > 30 {
			want = eventbus.DefaultBackoffMax
		}
		for range 50 {
			d := zero.Delay(attempt)
			require.GreaterOrEqual(t, d, time.Duration(float64(want)*0.8)-1, "attempt %d", attempt)
			require.LessOrEqual(t, d, min(time.Duration(float64(want)*1.2)+1, eventbus.DefaultBackoffMax), "attempt %d", attempt)
		}
	}
	require.Equal(t, zero.Delay(1) > 0, true)

	// Jitter disabled: exact values, attempt < 1 treated as 1, capped at Max.
	exact := eventbus.Backoff{Initial: time.Millisecond, Max: 50 * time.Millisecond, Multiplier: 3, Jitter: -1}
	require.Equal(t, time.Millisecond, exact.Delay(0))
	require.Equal(t, time.Millisecond, exact.Delay(1))
	require.Equal(t, 3*time.Millisecond, exact.Delay(2))
	require.Equal(t, 9*time.Millisecond, exact.Delay(3))
	require.Equal(t, 50*time.Millisecond, exact.Delay(10))
	require.Equal(t, 50*time.Millisecond, exact.Delay(100000), "huge attempts do not overflow")

	// "No cap" written as the largest Duration never wraps negative.
	uncapped := eventbus.Backoff{Initial: time.Second, Max: math.MaxInt64, Jitter: -1}
	require.Equal(t, time.Duration(math.MaxInt64), uncapped.Delay(40))
	jittered := eventbus.Backoff{Initial: time.Second, Max: math.MaxInt64}
	for range 200 {
		require.Positive(t, jittered.Delay(40))
	}

	// Full jitter stays in [0, Max] and actually varies.
	full := eventbus.Backoff{Initial: 10 * time.Millisecond, Max: 15 * time.Millisecond, Jitter: 1}
	seen := map[time.Duration]bool{}
	for range 200 {
		d := full.Delay(1)
		require.GreaterOrEqual(t, d, time.Duration(0))
		require.LessOrEqual(t, d, 15*time.Millisecond)
		seen[d] = true
	}
	require.Greater(t, len(seen), 10, "jitter must randomise")
}
