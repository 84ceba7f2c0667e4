package bench

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// ErrIncorrect is wrapped by every failed correctness check.
var ErrIncorrect = errors.New("bench: incorrect delivery")

// Tally records which message ids each subscriber received. Ids are
// sequence numbers 0..n-1 assigned by the publisher; every subscriber must
// see each exactly once (or at least once, for buses that allow
// duplicates). Mark is safe for concurrent use and costs one atomic add, the
// same for ours and every peer.
type Tally struct {
	n    int
	seen [][]uint32 // [subscriber][seq] delivery count
	odd  atomic.Int64
}

// NewTally prepares a tally for n messages to each of subs subscribers.
func NewTally(n, subs int) *Tally {
	t := &Tally{n: n, seen: make([][]uint32, subs)}
	for i := range t.seen {
		t.seen[i] = make([]uint32, n)
	}
	return t
}

// Mark records that subscriber sub received message seq. Out-of-range
// values are counted as unexpected.
func (t *Tally) Mark(sub, seq int) {
	if sub < 0 || sub >= len(t.seen) || seq < 0 || seq >= t.n {
		t.odd.Add(1)
		return
	}
	atomic.AddUint32(&t.seen[sub][seq], 1)
}

// Check counts what was delivered. Call it after every delivery is done.
func (t *Tally) Check() Check {
	c := Check{Published: t.n, Subscribers: len(t.seen), Unexpected: int(t.odd.Load())}
	for _, s := range t.seen {
		for i := range s {
			k := atomic.LoadUint32(&s[i])
			c.Delivered += int(k)
			switch {
			case k == 0:
				c.Lost++
			case k > 1:
				c.Duplicates += int(k - 1)
			}
		}
	}
	return c
}

// Check is the correctness verdict of one run.
type Check struct {
	// Published is the number of distinct messages published.
	Published int
	// Subscribers is how many subscribers had to see each message.
	Subscribers int
	// Delivered counts every handler invocation, duplicates included.
	Delivered int
	// Lost counts (subscriber, message) pairs never delivered.
	Lost int
	// Duplicates counts deliveries beyond the first.
	Duplicates int
	// Unexpected counts deliveries of ids that were never published.
	Unexpected int
	// AllowDuplicates accepts duplicates (at-least-once buses); they are
	// still counted and reported.
	AllowDuplicates bool
}

// Err returns nil when the run was correct, else an error wrapping
// ErrIncorrect saying what went wrong. A zero Check (nothing verified) is
// an error too: a benchmark must prove what it delivered.
func (c Check) Err() error {
	switch {
	case c.Published == 0 || c.Subscribers == 0:
		return fmt.Errorf("%w: nothing was checked", ErrIncorrect)
	case c.Lost > 0 || c.Unexpected > 0 || (c.Duplicates > 0 && !c.AllowDuplicates):
		return fmt.Errorf("%w: %s", ErrIncorrect, c)
	}
	return nil
}

// String summarises the check.
func (c Check) String() string {
	return fmt.Sprintf("published %d x %d subscribers, delivered %d, lost %d, duplicates %d, unexpected %d",
		c.Published, c.Subscribers, c.Delivered, c.Lost, c.Duplicates, c.Unexpected)
}
