package eventbus

import (
	"context"
	"fmt"
	"slices"
)

// Published returns a copy of the recorded envelopes, oldest first.
func (b *InMemoryBus) Published() []Envelope {
	b.histMu.Lock()
	defer b.histMu.Unlock()
	return b.snapshotLocked()
}

func (b *InMemoryBus) snapshotLocked() []Envelope {
	out := make([]Envelope, 0, len(b.hist))
	out = append(out, b.hist[b.start:]...)
	return append(out, b.hist[:b.start]...)
}

// EventsOfType returns the recorded envelopes of one event type, oldest first.
func (b *InMemoryBus) EventsOfType(eventType string) []Envelope {
	return b.Filter(func(e Envelope) bool { return e.EventType == eventType })
}

// EventsForAggregate returns the recorded envelopes of one aggregate, oldest first.
func (b *InMemoryBus) EventsForAggregate(aggregateID string) []Envelope {
	return b.Filter(func(e Envelope) bool { return e.AggregateID == aggregateID })
}

// Filter returns the recorded envelopes for which keep is true, oldest first.
func (b *InMemoryBus) Filter(keep func(Envelope) bool) []Envelope {
	return slices.DeleteFunc(b.Published(), func(e Envelope) bool { return !keep(e) })
}

// Count returns how many envelopes are recorded.
func (b *InMemoryBus) Count() int {
	b.histMu.Lock()
	defer b.histMu.Unlock()
	return len(b.hist)
}

// HasPublished reports whether an envelope with id was recorded.
func (b *InMemoryBus) HasPublished(id EventID) bool {
	return len(b.Filter(func(e Envelope) bool { return e.EventID == id })) > 0
}

// Clear forgets the recorded envelopes.
func (b *InMemoryBus) Clear() {
	b.histMu.Lock()
	defer b.histMu.Unlock()
	b.hist = b.hist[:0]
	b.start = 0
	b.wakeWaitersLocked() // a condition on fewer events may hold now
}

// WaitFor blocks until the recorded envelopes satisfy cond or ctx is done,
// and returns the snapshot that satisfied it. Events published from other
// goroutines (relays, handlers) make it re-check.
func (b *InMemoryBus) WaitFor(ctx context.Context, cond func([]Envelope) bool) ([]Envelope, error) {
	wake := make(chan struct{}, 1)
	b.histMu.Lock()
	b.waiters = append(b.waiters, wake)
	b.histMu.Unlock()
	defer func() {
		b.histMu.Lock()
		b.waiters = slices.DeleteFunc(b.waiters, func(w chan struct{}) bool { return w == wake })
		b.histMu.Unlock()
	}()
	for {
		snap := b.Published()
		if cond(snap) {
			return snap, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return snap, fmt.Errorf("eventbus: wait for published events: %w", ctx.Err())
		}
	}
}

// WaitForCount blocks until at least n envelopes of eventType are recorded
// (any type when eventType is empty) or ctx is done.
func (b *InMemoryBus) WaitForCount(ctx context.Context, eventType string, n int) ([]Envelope, error) {
	snap, err := b.WaitFor(ctx, func(es []Envelope) bool {
		c := 0
		for _, e := range es {
			if eventType == "" || e.EventType == eventType {
				c++
			}
		}
		return c >= n
	})
	if err != nil {
		return nil, err
	}
	if eventType == "" {
		return snap, nil
	}
	return slices.DeleteFunc(snap, func(e Envelope) bool { return e.EventType != eventType }), nil
}
