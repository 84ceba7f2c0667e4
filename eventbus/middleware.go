package eventbus

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"
)

// Middleware decorates a Handler, like net/http middleware.
type Middleware func(Handler) Handler

// Chain applies mws to h so that the first middleware is the outermost:
// Chain(h, A, B) handles as A(B(h)).
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// Recover turns a handler panic into a *PanicError (matching ErrPanic) that
// carries the stack, so one bad event cannot take the process down. Panics
// count as ordinary failures: they are retried and then dead-lettered.
func Recover() Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, env Envelope) (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = &PanicError{Value: r, Stack: debug.Stack()}
				}
			}()
			return next.Handle(ctx, env)
		})
	}
}

// Timeout bounds each handler call to d. The handler's context is cancelled
// at the deadline; if the handler returns because of it, the error wraps
// ErrHandlerTimeout. A handler that ignores its context still runs to the end.
func Timeout(d time.Duration) Middleware {
	return func(next Handler) Handler {
		if d <= 0 {
			return next
		}
		return HandlerFunc(func(ctx context.Context, env Envelope) error {
			tctx, cancel := context.WithTimeoutCause(ctx, d, ErrHandlerTimeout)
			defer cancel()
			err := next.Handle(tctx, env)
			if err != nil && ctx.Err() == nil && context.Cause(tctx) == ErrHandlerTimeout {
				return fmt.Errorf("%w after %s: %w", ErrHandlerTimeout, d, err)
			}
			return err
		})
	}
}

// RetryConfig configures Retry.
type RetryConfig struct {
	// MaxAttempts is the total number of calls, the first included.
	// Defaults to 3.
	MaxAttempts int
	// Backoff spaces the attempts. Defaults to Backoff{} (100ms doubling, 20% jitter).
	Backoff Backoff
	// ShouldRetry decides whether err is worth another attempt. Permanent
	// errors are never retried. Defaults to retrying every other error.
	ShouldRetry func(err error) bool
	// Name is passed to Hooks.OnRetry. Defaults to "".
	Name string
	// Hooks receive OnRetry. Defaults to none.
	Hooks *Hooks
	// Sleep waits between attempts; tests replace it. Defaults to a timer
	// that returns early with ctx's error when ctx is done.
	Sleep func(ctx context.Context, d time.Duration) error
}

// DefaultRetryAttempts is RetryConfig.MaxAttempts' default.
const DefaultRetryAttempts = 3

// Retry calls the handler again, in process, when it fails with a
// retryable error. Keep it short (a few attempts, sub-second delays): the
// durable buses have their own redelivery with backoff and a dead-letter
// queue, and an in-process retry holds a worker while it waits. Permanent
// errors return at once. Each attempt gets the original context.
func Retry(cfg RetryConfig) Middleware {
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultRetryAttempts
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleepCtx
	}
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, env Envelope) error {
			var err error
			for attempt := 1; ; attempt++ {
				err = next.Handle(ctx, env)
				if err == nil || IsPermanent(err) || attempt >= cfg.MaxAttempts {
					return err
				}
				if cfg.ShouldRetry != nil && !cfg.ShouldRetry(err) {
					return err
				}
				delay := cfg.Backoff.Delay(attempt)
				cfg.Hooks.Retry(ctx, cfg.Name, env, attempt, delay, err)
				if serr := cfg.Sleep(ctx, delay); serr != nil {
					return fmt.Errorf("eventbus: retry of %s %s abandoned: %w (last error: %w)", env.EventType, env.EventID, serr, err)
				}
			}
		})
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Observe reports deliveries, acks and failures of the handler named name
// to hooks.
func Observe(name string, hooks *Hooks) Middleware {
	return func(next Handler) Handler {
		if hooks == nil {
			return next
		}
		return HandlerFunc(func(ctx context.Context, env Envelope) error {
			hooks.deliver(ctx, name, env)
			err := next.Handle(ctx, env)
			if err != nil {
				hooks.fail(ctx, name, env, err)
			} else {
				hooks.ack(ctx, name, env)
			}
			return err
		})
	}
}
