package redisstream

import (
	"context"
	"sync/atomic"
	"time"
)

// opBound bounds Redis calls by a timeout without a context and a timer per
// call (together about 700 B, which at a few thousand events a second is a
// good part of the garbage the collector chases). Calls made within the same
// half timeout share one context with a deadline, so each call gets between
// half the timeout and all of it.
type opBound struct {
	timeout time.Duration
	cur     atomic.Pointer[sharedDeadline]
}

type sharedDeadline struct {
	ctx     context.Context
	renewAt time.Time          // past it, a call takes a fresh context (monotonic, as the deadline)
	cancel  context.CancelFunc // never called: the context ends on its own timer (see shared)
}

func newOpBound(timeout time.Duration) *opBound { return &opBound{timeout: timeout} }

// shared returns a context that ends between timeout/2 and timeout from now.
// It is never cancelled early: a call may still be using an older one, which
// ends on its own timer.
func (o *opBound) shared() context.Context {
	now := time.Now()
	// time.Time keeps the monotonic reading the deadline runs on: a step of
	// the wall clock cannot keep an ended context in use.
	if d := o.cur.Load(); d != nil && now.Before(d.renewAt) && d.ctx.Err() == nil {
		return d.ctx
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	d := &sharedDeadline{ctx: ctx, renewAt: now.Add(o.timeout / 2), cancel: cancel}
	o.cur.Store(d) // racing callers each store one; the last stays, the rest end on their timers
	return ctx
}

// bound returns parent bounded by the timeout, and the function that
// releases it. A parent with a deadline is used as it is; one that is never
// cancelled (no Done channel, as context.Background and its values) keeps
// its values and takes the shared deadline; any other gets a context of its
// own.
func (o *opBound) bound(parent context.Context) (context.Context, context.CancelFunc) {
	if _, ok := parent.Deadline(); ok {
		return parent, func() {}
	}
	if parent.Done() == nil {
		if parent == context.Background() {
			return o.shared(), func() {}
		}
		return valuesWithDeadline{Context: o.shared(), values: parent}, func() {}
	}
	return context.WithTimeout(parent, o.timeout)
}

// valuesWithDeadline is a deadline's context with another context's values
// (a caller's, for the client's hooks: tracing, logging).
type valuesWithDeadline struct {
	context.Context
	values context.Context
}

func (c valuesWithDeadline) Value(key any) any { return c.values.Value(key) }
