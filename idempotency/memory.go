package idempotency

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/choicesherpa/eventkit/eventbus"
)

// MemoryStore keeps markers in process memory: for tests and the embedded
// single-process mode. Effects are not transactional with the marker; a
// handler that fails leaves no marker, one that succeeds leaves exactly one.
//
// Markers are kept forever unless SetRetention bounds them: a long-running
// process should set it to cover its bus's redelivery window.
type MemoryStore struct {
	mu        sync.Mutex
	now       func() time.Time
	done      map[key]time.Time
	inflight  map[key]chan struct{}
	retention time.Duration
	sinceScan int // markers added since the last sweep
}

// sweepEvery is how many new markers trigger a sweep of expired ones, so a
// sweep's cost is spread over that many calls.
const sweepEvery = 1024

type key struct {
	handler string
	id      eventbus.EventID
}

var (
	_ ProcessedEventStore = (*MemoryStore)(nil)
	_ Checker             = (*MemoryStore)(nil)
	_ Pruner              = (*MemoryStore)(nil)
)

// NewMemoryStore returns an empty store. now stamps markers; nil means time.Now.
func NewMemoryStore(now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{now: now, done: make(map[key]time.Time), inflight: make(map[key]chan struct{})}
}

// Process implements ProcessedEventStore. A concurrent duplicate waits for
// the running call (bounded by ctx) and is then skipped, or runs if that
// call failed.
func (s *MemoryStore) Process(ctx context.Context, handler string, id eventbus.EventID, fn func(ctx context.Context) error) (dup bool, err error) {
	k := key{handler, id}
	s.mu.Lock()
	for {
		if _, ok := s.done[k]; ok {
			s.mu.Unlock()
			return true, nil
		}
		wait, busy := s.inflight[k]
		if !busy {
			break
		}
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return false, fmt.Errorf("idempotency: waiting for a concurrent delivery of %s to %q: %w", id, handler, ctx.Err())
		}
		s.mu.Lock()
	}
	release := make(chan struct{})
	s.inflight[k] = release
	s.mu.Unlock()

	succeeded := false
	defer func() {
		s.mu.Lock()
		if succeeded {
			at := s.now()
			s.done[k] = at
			s.sinceScan++
			if s.retention > 0 && s.sinceScan >= sweepEvery {
				s.sinceScan = 0
				s.deleteBeforeLocked(at.Add(-s.retention))
			}
		}
		delete(s.inflight, k)
		s.mu.Unlock()
		close(release)
	}()
	if err := fn(ctx); err != nil {
		return false, err
	}
	succeeded = true
	return false, nil
}

// IsProcessed implements Checker.
func (s *MemoryStore) IsProcessed(_ context.Context, handler string, id eventbus.EventID) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.done[key{handler, id}]
	return ok, nil
}

// SetRetention makes the store forget markers older than d, in sweeps
// spread over the calls that add markers (one every 1024). d <= 0 keeps
// markers forever (the default). A redelivery older than d runs its handler
// again, so d must exceed the bus's redelivery window.
func (s *MemoryStore) SetRetention(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retention = d
}

// DeleteBefore implements Pruner.
func (s *MemoryStore) DeleteBefore(_ context.Context, cutoff time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deleteBeforeLocked(cutoff), nil
}

func (s *MemoryStore) deleteBeforeLocked(cutoff time.Time) int64 {
	var n int64
	for k, at := range s.done {
		if at.Before(cutoff) {
			delete(s.done, k)
			n++
		}
	}
	return n
}

// Len returns the number of markers.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.done)
}
