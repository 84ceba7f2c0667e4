package eventbus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/choicesherpa/eventkit/internal/jsonvalid"
)

// DomainEvent is a fact that happened to an aggregate. Its EventType is a
// stable, versioned string such as "session.created.v1": a dotted name plus a
// ".vN" suffix. It is the routing key, the registry key and what other
// languages see, so it must never be derived from a Go type name.
//
// Implementations are usually small structs with value receivers; the struct
// itself is the JSON payload.
type DomainEvent interface {
	EventType() string
	AggregateID() string
	AggregateType() string
}

// Envelope is the unit every port moves: one event with its identity,
// routing data and metadata. Its JSON form is snake_case, omits empty
// metadata, and round-trips byte for byte.
type Envelope struct {
	EventID       EventID         `json:"event_id"`
	EventType     string          `json:"event_type"`
	SchemaVersion int             `json:"schema_version"`
	AggregateID   string          `json:"aggregate_id"`
	AggregateType string          `json:"aggregate_type"`
	OccurredAt    time.Time       `json:"occurred_at"`
	Payload       json.RawMessage `json:"payload"`
	Metadata      Metadata        `json:"metadata,omitzero"`
}

// Metadata travels with an event across every hop. Each field is omitted from
// JSON when empty.
type Metadata struct {
	// CorrelationID ties together everything one request caused.
	CorrelationID string `json:"correlation_id,omitempty"`
	// CausationID is the id of the event whose handler raised this one.
	CausationID string `json:"causation_id,omitempty"`
	// UserID is the acting user.
	UserID string `json:"user_id,omitempty"`
	// TraceParent is a W3C trace context header value.
	TraceParent string `json:"traceparent,omitempty"`
}

// IsZero reports whether no metadata field is set.
func (m Metadata) IsZero() bool { return m == Metadata{} }

// NewEnvelope wraps ev in an envelope with a fresh UUIDv7 id, the current
// UTC time (microsecond precision, which is what PostgreSQL stores) and
// metadata taken from ctx: inside a handler, the consumed event becomes the
// causation and its correlation id, user id and traceparent carry over; in a
// command, whatever WithMetadata put on the context is used.
func NewEnvelope(ctx context.Context, ev DomainEvent) (Envelope, error) {
	if ev == nil {
		return Envelope{}, fmt.Errorf("%w: nil event", ErrInvalidEnvelope)
	}
	if v := reflect.ValueOf(ev); v.Kind() == reflect.Pointer && v.IsNil() {
		return Envelope{}, fmt.Errorf("%w: nil %T event", ErrInvalidEnvelope, ev)
	}
	typ := ev.EventType()
	version, err := ParseSchemaVersion(typ)
	if err != nil {
		return Envelope{}, err
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		return Envelope{}, fmt.Errorf("%w: encode %s: %w", ErrInvalidEnvelope, typ, err)
	}
	return Envelope{
		EventID:       NewEventID(),
		EventType:     typ,
		SchemaVersion: version,
		AggregateID:   ev.AggregateID(),
		AggregateType: ev.AggregateType(),
		OccurredAt:    time.Now().UTC().Truncate(time.Microsecond),
		Payload:       payload,
		Metadata:      MetadataFromContext(ctx),
	}, nil
}

// MustEnvelope is NewEnvelope for tests and examples; it panics on error.
func MustEnvelope(ctx context.Context, ev DomainEvent) Envelope {
	env, err := NewEnvelope(ctx, ev)
	if err != nil {
		panic(err)
	}
	return env
}

// NewEnvelopes wraps several events, in order.
func NewEnvelopes(ctx context.Context, evs ...DomainEvent) ([]Envelope, error) {
	out := make([]Envelope, 0, len(evs))
	for _, ev := range evs {
		env, err := NewEnvelope(ctx, ev)
		if err != nil {
			return nil, err
		}
		out = append(out, env)
	}
	return out, nil
}

// Validate checks the fields every adapter relies on. The error wraps
// ErrInvalidEnvelope, which is permanent.
func (e *Envelope) Validate() error {
	if e.EventID.IsZero() {
		return fmt.Errorf("%w: missing event_id", ErrInvalidEnvelope)
	}
	v, err := ParseSchemaVersion(e.EventType)
	if err != nil {
		return err
	}
	if e.SchemaVersion != v {
		return fmt.Errorf("%w: schema_version %d does not match type %q", ErrInvalidEnvelope, e.SchemaVersion, e.EventType)
	}
	if e.OccurredAt.IsZero() {
		return fmt.Errorf("%w: missing occurred_at", ErrInvalidEnvelope)
	}
	if len(e.Payload) == 0 || !jsonvalid.Valid(e.Payload) {
		return fmt.Errorf("%w: payload of %s %s is not valid JSON", ErrInvalidEnvelope, e.EventType, e.EventID)
	}
	// A missing payload encodes as null; treat both the same.
	if string(bytes.TrimSpace(e.Payload)) == "null" {
		return fmt.Errorf("%w: payload of %s %s is null", ErrInvalidEnvelope, e.EventType, e.EventID)
	}
	return nil
}

// ParseSchemaVersion returns N from an event type ending in ".vN" (N >= 1).
// The name before the suffix must be non-empty lowercase dotted words
// (a-z, 0-9, '_', '-').
func ParseSchemaVersion(eventType string) (int, error) {
	i := strings.LastIndex(eventType, ".v")
	if i <= 0 || i+2 >= len(eventType) {
		return 0, fmt.Errorf("%w: event type %q has no .vN version suffix", ErrInvalidEnvelope, eventType)
	}
	n, err := strconv.Atoi(eventType[i+2:])
	if err != nil || n < 1 || eventType[i+2] == '0' || eventType[i+2] == '+' {
		return 0, fmt.Errorf("%w: event type %q has a bad version suffix", ErrInvalidEnvelope, eventType)
	}
	if n > MaxSchemaVersion {
		return 0, fmt.Errorf("%w: event type %q: version above %d", ErrInvalidEnvelope, eventType, MaxSchemaVersion)
	}
	name := eventType[:i]
	for j := 0; j < len(name); j++ {
		c := name[j]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' && j > 0 && j < len(name)-1 && name[j-1] != '.'
		if !ok {
			return 0, fmt.Errorf("%w: event type %q: name must be lowercase dotted words", ErrInvalidEnvelope, eventType)
		}
	}
	return n, nil
}

// MaxSchemaVersion is the highest version an event type may carry: typed
// subscriptions subscribe to every version up to theirs, and upcasting
// walks them one by one.
const MaxSchemaVersion = 1000

// BaseType returns the event type without its version suffix
// ("session.created.v2" -> "session.created"). It returns the input unchanged
// when there is no valid suffix.
func BaseType(eventType string) string {
	if _, err := ParseSchemaVersion(eventType); err != nil {
		return eventType
	}
	return eventType[:strings.LastIndex(eventType, ".v")]
}

// VersionedType joins a base type and a version ("a.b", 2 -> "a.b.v2").
func VersionedType(base string, version int) string {
	return base + ".v" + strconv.Itoa(version)
}
