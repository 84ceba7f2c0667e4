package eventbustest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/eventbus"
)

// ErrInjected is the error a Recorder returns for deliveries it was told
// to fail (see Recorder.FailNext).
var ErrInjected = errors.New("eventbustest: injected failure")

// Recorder is an eventbus.Handler that records what it is given. It is safe
// for concurrent use; the zero value is ready, NewRecorder is a shorthand.
//
// A delivery is an attempt; it succeeds unless a failure was injected with
// FailNext or FailWhen, or Next returned an error. Envelopes, IDs and Count
// report successful deliveries only, in the order they completed;
// Attempts and Failures count everything.
type Recorder struct {
	// Next, if set, runs after a delivery passed the injected failures; its
	// error fails the delivery.
	Next eventbus.Handler

	mu       sync.Mutex
	ok       []eventbus.Envelope
	seen     map[eventbus.EventID]int // successful deliveries per id
	attempts int
	failures int
	failNext int
	failErr  error
	failWhen func(env eventbus.Envelope, attempt int) error
	perID    map[eventbus.EventID]int // attempts per id
	changed  chan struct{}
}

var _ eventbus.Handler = (*Recorder)(nil)

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{} }

// Handle implements eventbus.Handler.
func (r *Recorder) Handle(ctx context.Context, env eventbus.Envelope) error {
	r.mu.Lock()
	if r.perID == nil {
		r.perID = make(map[eventbus.EventID]int)
	}
	r.attempts++
	r.perID[env.EventID]++
	attempt := r.perID[env.EventID]
	var err error
	switch {
	case r.failNext > 0:
		r.failNext--
		err = r.failErr
	case r.failWhen != nil:
		err = r.failWhen(env, attempt)
	}
	next := r.Next
	r.mu.Unlock()

	if err == nil && next != nil {
		err = next.Handle(ctx, env)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.failures++
	} else {
		if r.seen == nil {
			r.seen = make(map[eventbus.EventID]int)
		}
		r.ok = append(r.ok, env)
		r.seen[env.EventID]++
	}
	r.notifyLocked()
	return err
}

func (r *Recorder) notifyLocked() {
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// FailNext makes the next n deliveries fail with err (ErrInjected when nil).
// It replaces any earlier FailNext that has not run out.
func (r *Recorder) FailNext(n int, err error) {
	if err == nil {
		err = ErrInjected
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failNext, r.failErr = n, err
}

// FailWhen makes every delivery for which fn returns an error fail with it.
// attempt counts the deliveries of env's id to this Recorder, starting at 1.
// A nil fn removes the rule. FailNext takes precedence.
func (r *Recorder) FailWhen(fn func(env eventbus.Envelope, attempt int) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failWhen = fn
}

// Envelopes returns the successfully handled envelopes in completion order.
func (r *Recorder) Envelopes() []eventbus.Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ok)
}

// Published returns Envelopes, so a Recorder can be passed to RequirePublished.
func (r *Recorder) Published() []eventbus.Envelope { return r.Envelopes() }

// IDs returns the ids of the successfully handled envelopes, in completion
// order, duplicates included.
func (r *Recorder) IDs() []eventbus.EventID {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]eventbus.EventID, len(r.ok))
	for i, e := range r.ok {
		out[i] = e.EventID
	}
	return out
}

// Count returns the number of successful deliveries, duplicates included.
func (r *Recorder) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ok)
}

// Unique returns the number of distinct ids handled successfully.
func (r *Recorder) Unique() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// Has reports whether id was handled successfully.
func (r *Recorder) Has(id eventbus.EventID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[id] > 0
}

// Times returns how often id was handled successfully.
func (r *Recorder) Times(id eventbus.EventID) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[id]
}

// AttemptsFor returns how often id was delivered, failures included.
func (r *Recorder) AttemptsFor(id eventbus.EventID) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.perID[id]
}

// Attempts returns the number of deliveries, failed ones included.
func (r *Recorder) Attempts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts
}

// Failures returns the number of failed deliveries.
func (r *Recorder) Failures() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failures
}

// Reset forgets everything recorded and any injected failures.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ok, r.seen, r.perID = nil, nil, nil
	r.attempts, r.failures, r.failNext, r.failWhen = 0, 0, 0, nil
	r.notifyLocked()
}

// Wait blocks until cond (called with the lock held, so it must not call
// the Recorder's methods; it gets the successful envelopes) holds, or
// timeout passes. It reports whether cond held.
func (r *Recorder) Wait(timeout time.Duration, cond func(ok []eventbus.Envelope) bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		if cond(r.ok) {
			r.mu.Unlock()
			return true
		}
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}

// WaitFor waits until at least n deliveries succeeded, or timeout passes,
// in which case the error says how many did.
func (r *Recorder) WaitFor(n int, timeout time.Duration) error {
	if r.Wait(timeout, func(ok []eventbus.Envelope) bool { return len(ok) >= n }) {
		return nil
	}
	return fmt.Errorf("eventbustest: %d of %d deliveries after %s (%d failed)", r.Count(), n, timeout, r.Failures())
}

// WaitForUnique waits until at least n distinct ids were handled
// successfully, or timeout passes.
func (r *Recorder) WaitForUnique(n int, timeout time.Duration) error {
	if r.Wait(timeout, func([]eventbus.Envelope) bool { return len(r.seen) >= n }) {
		return nil
	}
	return fmt.Errorf("eventbustest: %d of %d distinct events after %s (%d failed attempts)", r.Unique(), n, timeout, r.Failures())
}

// RequireCount fails tb unless n deliveries succeed within timeout.
func (r *Recorder) RequireCount(tb testing.TB, n int, timeout time.Duration) {
	tb.Helper()
	if err := r.WaitFor(n, timeout); err != nil {
		tb.Fatal(err)
	}
}

// EnvelopeSource is anything that can list envelopes: an
// *eventbus.InMemoryBus, a *Recorder.
type EnvelopeSource interface {
	Published() []eventbus.Envelope
}

// RequirePublished fails tb unless src holds an envelope of T's event type
// (or an older version of it) whose payload decodes into a T for which
// match returns true (nil matches any). It returns the first such event and
// its envelope. Payloads are decoded with eventbus.DecodeAs and
// DefaultRegistry's upcasters.
func RequirePublished[T eventbus.DomainEvent](tb testing.TB, src EnvelopeSource, match func(T) bool) (T, eventbus.Envelope) {
	tb.Helper()
	var zero T
	base := eventbus.BaseType(zero.EventType())
	envs := src.Published()
	seen := 0
	for _, env := range envs {
		if eventbus.BaseType(env.EventType) != base {
			continue
		}
		seen++
		ev, err := eventbus.DecodeAs[T](nil, env)
		if err != nil {
			tb.Fatalf("RequirePublished: %s %s does not decode: %v", env.EventType, env.EventID, err)
			return zero, eventbus.Envelope{}
		}
		if match == nil || match(ev) {
			return ev, env
		}
	}
	tb.Fatalf("RequirePublished: no matching %s among %d envelopes (%d of that type)", zero.EventType(), len(envs), seen)
	return zero, eventbus.Envelope{}
}
