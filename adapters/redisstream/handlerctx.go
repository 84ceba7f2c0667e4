package redisstream

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/choicesherpa/eventkit/eventbus"
)

// A handler's context ends when the handler returns, when HandlerTimeout
// passes (Err is context.DeadlineExceeded, Cause eventbus.ErrHandlerTimeout)
// or when the subscription's context ends. context.WithTimeoutCause plus
// the event's context cost five allocations and a timer per delivery; here
// the contexts live in the delivery, the cancellation is one
// context.WithCancelCause, and each worker re-arms one timer.

// deadlineCtx reports the delivery's deadline over a context its clock
// cancels with eventbus.ErrHandlerTimeout when the deadline passes.
// Contexts derived from it see the deadline; when it passes they end with
// context.Canceled and the same cause.
type deadlineCtx struct {
	context.Context
	deadline time.Time
}

func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *deadlineCtx) Err() error {
	err := c.Context.Err()
	if err != nil && errors.Is(context.Cause(c.Context), eventbus.ErrHandlerTimeout) {
		return context.DeadlineExceeded
	}
	return err
}

// handlerClock is one worker's timer for the handler it is running.
type handlerClock struct {
	timeout time.Duration
	timer   *time.Timer
	running context.CancelCauseFunc // the worker's own: set by start, called by finish

	mu       sync.Mutex
	armed    context.CancelCauseFunc // what expire may cancel; nil once disarmed
	deadline time.Time
}

func newHandlerClock(timeout time.Duration) *handlerClock {
	c := &handlerClock{timeout: timeout}
	c.timer = time.AfterFunc(time.Hour, c.expire)
	c.timer.Stop()
	return c
}

// start returns d's handler context, under parent, and arms the clock.
// finish must follow once the handler returned.
func (c *handlerClock) start(parent context.Context, d *delivery) context.Context {
	cctx, cancel := context.WithCancelCause(parent)
	deadline := time.Now().Add(c.timeout)
	d.dctx = deadlineCtx{Context: cctx, deadline: deadline}
	d.hctx.Reset(&d.dctx, d.env)
	c.running = cancel
	c.mu.Lock()
	c.armed, c.deadline = cancel, deadline
	c.mu.Unlock()
	c.timer.Reset(c.timeout) // fires at or after deadline
	return &d.hctx
}

// finish disarms the clock and ends the handler's context, as the cancel
// of context.WithTimeout would: ended when finish returns, even while a
// timer firing that disarmed it first is still on its way to cancel it
// (the first cancellation wins).
func (c *handlerClock) finish() {
	c.timer.Stop()
	c.mu.Lock()
	c.armed = nil
	c.mu.Unlock()
	c.running(nil)
	c.running = nil
}

// expire ends the running handler's context once its deadline has passed.
// A firing left over from an earlier handler finds a later deadline (or no
// handler) and does nothing: the timer was re-armed for the current one.
func (c *handlerClock) expire() {
	c.mu.Lock()
	cancel := c.armed
	if cancel == nil || time.Now().Before(c.deadline) {
		c.mu.Unlock()
		return
	}
	c.armed = nil
	c.mu.Unlock()
	cancel(eventbus.ErrHandlerTimeout)
}

// stop releases the timer when the worker exits.
func (c *handlerClock) stop() { c.timer.Stop() }
