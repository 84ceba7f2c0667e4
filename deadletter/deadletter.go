package deadletter

import (
	"context"
	"errors"
	"time"

	"github.com/choicesherpa/eventkit/eventbus"
)

// Reasons an event was dead-lettered.
const (
	// ReasonPermanent: the handler returned a permanent error, or the stored
	// entry could not be decoded into a valid envelope (invalid JSON, unknown
	// type, missing id, bad schema_version: the record then has Raw instead
	// of Envelope and LastError says what was malformed); no retry was
	// attempted.
	ReasonPermanent = "permanent"
	// ReasonMaxDeliveries: the event failed on every one of its allowed deliveries.
	ReasonMaxDeliveries = "max_deliveries"
	// ReasonMalformed was the reason recorded for undecodable entries.
	//
	// Deprecated: undecodable entries are dead-lettered with ReasonPermanent
	// (RELIABILITY.md B1); a record without Envelope is one. The constant
	// stays so records written by earlier versions can still be filtered.
	ReasonMalformed = "malformed"
)

// Record statuses.
const (
	StatusDead     = "dead"     // waiting for an operator
	StatusReplayed = "replayed" // sent back for another attempt
)

// Record is one dead-lettered delivery: an event that one handler could not
// process. (Handler, EventID) identifies it; writing the same pair again
// updates the record instead of adding one, so a crash between the DLQ write
// and the acknowledgement yields no duplicate.
type Record struct {
	// ID is the store's key for the record (stable; derived from Handler and
	// EventID, or from the origin entry id when the event id is unknown).
	ID string `json:"id"`
	// Envelope is the event, or nil when the entry could not be decoded.
	Envelope *eventbus.Envelope `json:"envelope,omitempty"`
	// Raw holds the undecodable entry's fields (only when Envelope is nil).
	Raw map[string]string `json:"raw,omitempty"`
	// EventID and EventType repeat the envelope's (or what could be read of
	// a malformed entry) so records can be filtered without decoding.
	EventID   string `json:"event_id,omitempty"`
	EventType string `json:"event_type,omitempty"`
	// Handler is the subscription (consumer group) that failed.
	Handler string `json:"handler"`
	// Source is where the event came from (a stream name, "outbox", ...).
	Source string `json:"source,omitempty"`
	// SourceID is the entry id within Source (a stream entry id).
	SourceID string `json:"source_id,omitempty"`
	// Reason is one of the Reason constants.
	Reason string `json:"reason"`
	// Attempts is how many deliveries failed.
	Attempts int `json:"attempts"`
	// LastError is the last failure's message (no payload content).
	LastError string `json:"last_error"`
	// FirstFailedAt and LastFailedAt bound the failures, UTC. A Redis
	// subscription knows the failures of the consumer that holds the entry:
	// when an entry is claimed after a crash (or after a failed dead-letter
	// write), FirstFailedAt is the claimer's first failure; Attempts still
	// counts every delivery.
	FirstFailedAt time.Time `json:"first_failed_at"`
	LastFailedAt  time.Time `json:"last_failed_at"`
	// Status is StatusDead or StatusReplayed.
	Status string `json:"status"`
	// ReplayCount is how many times the record was replayed.
	ReplayCount int `json:"replay_count"`
	// ReplayedAt is the last replay time, if any.
	ReplayedAt *time.Time `json:"replayed_at,omitempty"`
}

// Filter selects records; zero fields match everything.
type Filter struct {
	EventType string
	Handler   string
	Status    string
	// FailedAfter / FailedBefore bound LastFailedAt (inclusive / exclusive).
	FailedAfter  time.Time
	FailedBefore time.Time
}

// Page asks for up to Limit records after the opaque Cursor ("" = first page).
type Page struct {
	Cursor string
	Limit  int
}

// Errors.
var (
	ErrNotFound = errors.New("deadletter: record not found")
	// ErrNoEnvelope is returned when replaying a record whose entry never decoded.
	ErrNoEnvelope = errors.New("deadletter: record has no decodable envelope to replay")
)

// Store keeps dead-letter records. Implementations must be safe for
// concurrent use.
type Store interface {
	// Put writes rec, merging it into an existing record with the same ID:
	// Attempts, LastError, Reason, LastFailedAt, SourceID are taken from rec,
	// FirstFailedAt and ReplayCount are kept, Status becomes StatusDead.
	// Put must be durable when it returns nil: buses acknowledge the original
	// delivery only after it.
	Put(ctx context.Context, rec Record) error
	// Get returns one record or ErrNotFound.
	Get(ctx context.Context, id string) (Record, error)
	// List returns records matching f, newest failure first, and the cursor
	// of the next page ("" when there is none).
	List(ctx context.Context, f Filter, p Page) ([]Record, string, error)
	// MarkReplayed sets Status to StatusReplayed, increments ReplayCount and
	// sets ReplayedAt.
	MarkReplayed(ctx context.Context, id string, at time.Time) error
	// Delete removes one record (ErrNotFound if absent).
	Delete(ctx context.Context, id string) error
	// Purge removes every record matching f and returns how many. On error
	// it still returns how many it removed before failing.
	Purge(ctx context.Context, f Filter) (int, error)
	// Count returns how many records match f (the DLQ depth gauge).
	Count(ctx context.Context, f Filter) (int, error)
}

// Replayer sends a record's event back for another attempt by the handler
// that failed it, keeping the event id (so idempotent handlers that already
// applied it skip it). Each bus provides one.
type Replayer interface {
	Replay(ctx context.Context, rec Record) error
}

// RecordID is the record key for a (handler, event id) pair.
func RecordID(handler, eventID string) string { return handler + "/" + eventID }
