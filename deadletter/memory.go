package deadletter

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// MemoryStore is an in-process Store for tests and the embedded mode. It
// keeps records in a map guarded by a mutex; it is safe for concurrent use
// and loses everything when the process exits. Records are deep-copied on
// the way in and out, so callers may not alias its contents.
type MemoryStore struct {
	mu   sync.RWMutex
	now  func() time.Time
	recs map[string]Record
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store. now stamps records that arrive
// without LastFailedAt; nil means time.Now.
func NewMemoryStore(now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{now: now, recs: make(map[string]Record)}
}

// Put implements Store (see Store.Put for the merge rule).
func (s *MemoryStore) Put(ctx context.Context, rec Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rec, err := Normalize(Clone(rec), s.now())
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.recs[rec.ID]; ok {
		rec = Merge(old, rec)
	}
	s.recs[rec.ID] = rec
	return nil
}

// Get implements Store.
func (s *MemoryStore) Get(ctx context.Context, id string) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec, ok := s.recs[id]
	if !ok {
		return Record{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return Clone(rec), nil
}

// newestFirst orders records by LastFailedAt descending, then ID descending.
func newestFirst(a, b Record) int {
	if c := b.LastFailedAt.Compare(a.LastFailedAt); c != 0 {
		return c
	}
	return cmp.Compare(b.ID, a.ID)
}

// List implements Store. Cursors encode (LastFailedAt in ns, ID).
func (s *MemoryStore) List(ctx context.Context, f Filter, p Page) ([]Record, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	var (
		afterKey int64
		afterID  string
		paged    bool
	)
	if p.Cursor != "" {
		k, id, err := DecodeCursor(p.Cursor)
		if err != nil {
			return nil, "", err
		}
		afterKey, afterID, paged = k, id, true
	}
	limit := p.Limit
	if limit <= 0 {
		limit = DefaultPageSize
	}
	s.mu.RLock()
	matched := make([]Record, 0, min(len(s.recs), 64))
	for _, r := range s.recs {
		if !f.Match(r) {
			continue
		}
		if paged {
			k := r.LastFailedAt.UnixNano()
			// Keep only records strictly after the cursor in newest-first order.
			if k > afterKey || (k == afterKey && r.ID >= afterID) {
				continue
			}
		}
		matched = append(matched, r)
	}
	s.mu.RUnlock()
	slices.SortFunc(matched, newestFirst)
	next := ""
	if len(matched) > limit {
		matched = matched[:limit]
		last := matched[limit-1]
		next = EncodeCursor(last.LastFailedAt.UnixNano(), last.ID)
	}
	out := make([]Record, len(matched))
	for i, r := range matched {
		out[i] = Clone(r)
	}
	return out, next, nil
}

// MarkReplayed implements Store.
func (s *MemoryStore) MarkReplayed(ctx context.Context, id string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.recs[id]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	at = at.UTC()
	rec.Status = StatusReplayed
	rec.ReplayCount++
	rec.ReplayedAt = &at
	s.recs[id] = rec
	return nil
}

// Delete implements Store.
func (s *MemoryStore) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.recs[id]; !ok {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	delete(s.recs, id)
	return nil
}

// Purge implements Store.
func (s *MemoryStore) Purge(ctx context.Context, f Filter) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, r := range s.recs {
		if f.Match(r) {
			delete(s.recs, id)
			n++
		}
	}
	return n, nil
}

// Count implements Store.
func (s *MemoryStore) Count(ctx context.Context, f Filter) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, r := range s.recs {
		if f.Match(r) {
			n++
		}
	}
	return n, nil
}
