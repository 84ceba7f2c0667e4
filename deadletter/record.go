package deadletter

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"
)

// More sentinel errors (see also ErrNotFound and ErrNoEnvelope).
var (
	// ErrInvalidRecord is returned by Put for a record without a handler or
	// without any way to derive its ID.
	ErrInvalidRecord = errors.New("deadletter: invalid record")
	// ErrInvalidCursor is returned by List for a cursor it did not issue.
	ErrInvalidCursor = errors.New("deadletter: invalid cursor")
	// ErrInvalidFilter is returned for a filter the queue cannot apply
	// (an unknown status, FailedAfter not before FailedBefore).
	ErrInvalidFilter = errors.New("deadletter: invalid filter")
	// ErrConfirmationRequired is returned by Queue.Purge when the confirmation
	// token is missing or wrong.
	ErrConfirmationRequired = errors.New("deadletter: purge needs an explicit confirmation")
	// ErrReplayFailed is wrapped (with the Replayer's error) when the
	// Replayer could not send a record's event back.
	ErrReplayFailed = errors.New("deadletter: replay failed")
	// ErrNoReplayer is returned by Queue.Replay when the queue has no Replayer.
	ErrNoReplayer = errors.New("deadletter: no replayer configured")
	// ErrUnauthenticated is returned by an admin Authorize hook when the
	// request carries no valid credentials (HTTP 401).
	ErrUnauthenticated = errors.New("deadletter: unauthenticated")
	// ErrForbidden is returned by an admin Authorize hook when the caller is
	// known but may not administer the dead-letter queue (HTTP 403).
	ErrForbidden = errors.New("deadletter: forbidden")
)

// RedactedPayload is the JSON value that replaces envelope payloads (and the
// values of Raw fields) in redacted records.
var RedactedPayload = json.RawMessage(`"[redacted]"`)

// Normalize prepares rec for Store.Put: it derives a missing ID from
// (Handler, EventID) via RecordID, fills EventID / EventType from the
// envelope when empty, sets LastFailedAt to now when zero and FirstFailedAt
// to LastFailedAt when zero, converts times to UTC and sets Status to
// StatusDead. It fails with ErrInvalidRecord when Handler is empty or no ID
// can be derived. Store implementations call it at the start of Put.
func Normalize(rec Record, now time.Time) (Record, error) {
	if rec.Envelope != nil {
		if rec.EventID == "" && !rec.Envelope.EventID.IsZero() {
			rec.EventID = rec.Envelope.EventID.String()
		}
		if rec.EventType == "" {
			rec.EventType = rec.Envelope.EventType
		}
	}
	if rec.Handler == "" {
		return Record{}, fmt.Errorf("%w: no handler", ErrInvalidRecord)
	}
	if rec.ID == "" {
		if rec.EventID == "" {
			return Record{}, fmt.Errorf("%w: no id and no event id for handler %q", ErrInvalidRecord, rec.Handler)
		}
		rec.ID = RecordID(rec.Handler, rec.EventID)
	}
	if rec.LastFailedAt.IsZero() {
		rec.LastFailedAt = now
	}
	rec.LastFailedAt = rec.LastFailedAt.UTC()
	if rec.FirstFailedAt.IsZero() {
		rec.FirstFailedAt = rec.LastFailedAt
	}
	rec.FirstFailedAt = rec.FirstFailedAt.UTC()
	if rec.ReplayedAt != nil {
		t := rec.ReplayedAt.UTC()
		rec.ReplayedAt = &t
	}
	if rec.Attempts < 0 {
		rec.Attempts = 0
	}
	rec.Status = StatusDead
	return rec, nil
}

// Merge applies the Store.Put merge rule to an existing record and an
// incoming (normalized) one with the same ID: Attempts, LastError, Reason,
// LastFailedAt and SourceID come from incoming; FirstFailedAt, ReplayCount
// and ReplayedAt are kept; Envelope, Raw, EventID, EventType, Source and
// Handler come from incoming when set there, else are kept; Status becomes
// StatusDead.
func Merge(existing, incoming Record) Record {
	out := existing
	out.Attempts = incoming.Attempts
	out.LastError = incoming.LastError
	out.Reason = incoming.Reason
	out.LastFailedAt = incoming.LastFailedAt
	out.SourceID = incoming.SourceID
	if incoming.Envelope != nil {
		out.Envelope = incoming.Envelope
	}
	if incoming.Raw != nil {
		out.Raw = incoming.Raw
	}
	if incoming.EventID != "" {
		out.EventID = incoming.EventID
	}
	if incoming.EventType != "" {
		out.EventType = incoming.EventType
	}
	if incoming.Source != "" {
		out.Source = incoming.Source
	}
	if incoming.Handler != "" {
		out.Handler = incoming.Handler
	}
	out.Status = StatusDead
	return out
}

// Clone returns a deep copy of rec (envelope, payload bytes, raw fields and
// replay time are not shared).
func Clone(rec Record) Record {
	if rec.Envelope != nil {
		env := *rec.Envelope
		env.Payload = append(json.RawMessage(nil), env.Payload...)
		rec.Envelope = &env
	}
	if rec.Raw != nil {
		rec.Raw = maps.Clone(rec.Raw)
	}
	if rec.ReplayedAt != nil {
		t := *rec.ReplayedAt
		rec.ReplayedAt = &t
	}
	return rec
}

// Redact returns a copy of rec whose envelope payload is RedactedPayload and
// whose Raw values are all the redaction marker (keys are kept). Headers
// (ids, type, handler, error, times) are left as they are.
func Redact(rec Record) Record {
	rec = Clone(rec)
	if rec.Envelope != nil {
		rec.Envelope.Payload = append(json.RawMessage(nil), RedactedPayload...)
	}
	for k := range rec.Raw {
		rec.Raw[k] = "[redacted]"
	}
	return rec
}

// Match reports whether rec satisfies every non-zero field of f.
func (f Filter) Match(rec Record) bool {
	if f.EventType != "" && rec.EventType != f.EventType {
		return false
	}
	if f.Handler != "" && rec.Handler != f.Handler {
		return false
	}
	if f.Status != "" && rec.Status != f.Status {
		return false
	}
	if !f.FailedAfter.IsZero() && rec.LastFailedAt.Before(f.FailedAfter) {
		return false
	}
	if !f.FailedBefore.IsZero() && !rec.LastFailedAt.Before(f.FailedBefore) {
		return false
	}
	return true
}

// IsZero reports whether f matches every record. A time bound counts as
// unset when it is the zero instant in any location, as Match treats it.
func (f Filter) IsZero() bool {
	return f.EventType == "" && f.Handler == "" && f.Status == "" && f.FailedAfter.IsZero() && f.FailedBefore.IsZero()
}

// Validate checks that f can be applied: Status is empty or a known status,
// and the time bounds, when both set, are ordered. It wraps ErrInvalidFilter.
func (f Filter) Validate() error {
	switch f.Status {
	case "", StatusDead, StatusReplayed:
	default:
		return fmt.Errorf("%w: unknown status %q", ErrInvalidFilter, f.Status)
	}
	if !f.FailedAfter.IsZero() && !f.FailedBefore.IsZero() && !f.FailedAfter.Before(f.FailedBefore) {
		return fmt.Errorf("%w: failed_after must be before failed_before", ErrInvalidFilter)
	}
	return nil
}

// EncodeCursor builds an opaque List cursor from a position in the
// newest-first order: the sort key (a timestamp in the store's unit) and
// the record ID. Stores may use it so cursors look alike across backends.
func EncodeCursor(key int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(key, 10) + "|" + id))
}

// DecodeCursor parses a cursor made by EncodeCursor; it wraps
// ErrInvalidCursor when the cursor is malformed.
func DecodeCursor(cursor string) (key int64, id string, err error) {
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return 0, "", fmt.Errorf("%w: %v", ErrInvalidCursor, err)
	}
	ks, id, ok := strings.Cut(string(b), "|")
	if !ok || id == "" {
		return 0, "", fmt.Errorf("%w: malformed", ErrInvalidCursor)
	}
	key, err = strconv.ParseInt(ks, 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("%w: %v", ErrInvalidCursor, err)
	}
	return key, id, nil
}

type actorKey struct{}

// WithActor returns a context that names who performs the queue operations
// run under it; the audit log records it. The admin handler sets it to what
// its Authorize hook returned.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFromContext returns the actor set by WithActor, or "".
func ActorFromContext(ctx context.Context) string {
	s, _ := ctx.Value(actorKey{}).(string)
	return s
}
