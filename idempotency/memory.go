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
type MemoryStore struct {
	mu       sync.Mutex
	now      func() time.Time
	done     map[key]time.Time
	inflight map[key]chan struct{}
}

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
			s.done[k] = s.now()
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

// DeleteBefore implements Pruner.
func (s *MemoryStore) DeleteBefore(_ context.Context, cutoff time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for k, at := range s.done {
		if at.Before(cutoff) {
			delete(s.done, k)
			n++
		}
	}
	return n, nil
}

// Len returns the number of markers.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.done)
}
