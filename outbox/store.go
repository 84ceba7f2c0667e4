package outbox

import (
	"context"
	"errors"
	"time"

	"github.com/choicesherpa/eventkit/eventbus"
)

// Writer stores envelopes in the outbox inside the caller's transaction Tx
// (for PostgreSQL, a pgx.Tx). The envelopes become visible to a relay when,
// and only if, that transaction commits.
type Writer[Tx any] interface {
	Write(ctx context.Context, tx Tx, envs ...eventbus.Envelope) error
}

// Record is one outbox row as a Store hands it to the relay.
type Record struct {
	// ID is the store's position of the row (insertion order). Relays use it
	// only to identify the row, never as a read watermark.
	ID int64
	// Envelope is the stored event, byte for byte as written.
	Envelope eventbus.Envelope
	// Attempts counts the failed publish attempts so far.
	Attempts int
	// LastError is the error of the last failed attempt ("" if none).
	LastError string
	// CreatedAt is when the writing transaction stored the row.
	CreatedAt time.Time
	// QuarantinedAt is set for a quarantined row (zero otherwise).
	QuarantinedAt time.Time
}

// Failure reports a record whose publish failed.
type Failure struct {
	// ID is the Record.ID.
	ID int64
	// Err is the publish error, stored as the row's last error.
	Err string
	// RetryAfter is how long the row waits before its next attempt.
	RetryAfter time.Duration
	// Quarantine sets the row aside: it is no longer claimed until re-armed.
	Quarantine bool
}

// Outcome is what the relay did with a claimed batch. Records in neither
// list are released unchanged and can be claimed again at once.
type Outcome struct {
	Published []int64
	Failed    []Failure
}

// Store is the relay's view of an outbox table.
//
// Claim must give each pending, due, non-quarantined record to at most one
// caller at a time, and within an aggregate only a prefix in insertion order
// of its pending records (so a later record is never handed out while an
// earlier one of the same aggregate is claimed elsewhere, backing off or not
// yet handed out). Claim calls fn with the records (it may call fn with none
// and must not call it at all on error) and applies the outcome fn returns
// atomically with releasing the claim, even when fn has used up ctx's
// deadline (a published record must not be published again for want of
// time to mark it); if applying it fails, nothing is marked and the
// records are claimed again later.
type Store interface {
	Claim(ctx context.Context, limit int, fn func(ctx context.Context, recs []Record) Outcome) (claimed int, err error)
	// OldestPending returns the creation time of the first pending
	// (unpublished, not quarantined) record in queue order, and the store's
	// clock; ok is false when there is none.
	OldestPending(ctx context.Context) (created time.Time, now time.Time, ok bool, err error)
	// Quarantined lists quarantined records, oldest first, at most limit.
	Quarantined(ctx context.Context, limit int) ([]Record, error)
	// Rearm makes quarantined records pending again with their attempts
	// reset, so the relay retries them. It returns how many it re-armed.
	Rearm(ctx context.Context, ids ...eventbus.EventID) (int64, error)
}

// WakeSource is implemented by stores that can tell a relay when new rows
// were committed (PostgreSQL: LISTEN/NOTIFY). Listen blocks until ctx is
// done, calling wake for each notification and once after every
// (re)connection; it reconnects on its own after connection loss. It returns
// ctx's error or a configuration error.
type WakeSource interface {
	Listen(ctx context.Context, wake func()) error
}

// CleanupStore deletes what a retention window has expired.
type CleanupStore interface {
	// TryLock takes the store-wide cleanup lock without waiting. When ok is
	// true the caller must call release (with a live context) when done.
	TryLock(ctx context.Context) (release func(), ok bool, err error)
	// DeletePublishedBefore deletes at most limit published records
	// published before cutoff and returns how many it deleted. It never
	// deletes pending or quarantined records.
	DeletePublishedBefore(ctx context.Context, cutoff time.Time, limit int) (int64, error)
}

// MarkerPruner deletes idempotency markers processed before cutoff, at most
// limit per call (see idempotency.Pruner for the unbounded form).
type MarkerPruner interface {
	DeleteProcessedBefore(ctx context.Context, cutoff time.Time, limit int) (int64, error)
}

// ErrConfig wraps every configuration error returned by the constructors of
// this package.
var ErrConfig = errors.New("outbox: invalid configuration")
