package eventbus

import (
	"fmt"

	"github.com/google/uuid"
)

// EventID identifies one event. It is a UUID, version 7 when minted by
// NewEventID, so ids sort roughly by creation time. The zero value is "no id".
type EventID uuid.UUID

// NewEventID returns a fresh time-ordered (UUIDv7) id. It falls back to a
// random v4 id if the v7 generator fails, so it never returns the zero id.
func NewEventID() EventID {
	id, err := uuid.NewV7()
	if err != nil {
		return EventID(uuid.New())
	}
	return EventID(id)
}

// ParseEventID parses the canonical text form of an id.
func ParseEventID(s string) (EventID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return EventID{}, fmt.Errorf("%w: event id %q: %w", ErrInvalidEnvelope, s, err)
	}
	return EventID(id), nil
}

// MustParseEventID is ParseEventID for constants in tests and examples; it panics on bad input.
func MustParseEventID(s string) EventID {
	id, err := ParseEventID(s)
	if err != nil {
		panic(err)
	}
	return id
}

// IsZero reports whether id is the zero ("missing") id.
func (id EventID) IsZero() bool { return id == EventID{} }

// UUID returns the id as a uuid.UUID (for drivers and other libraries).
func (id EventID) UUID() uuid.UUID { return uuid.UUID(id) }

// String returns the canonical 36-character form.
func (id EventID) String() string { return uuid.UUID(id).String() }

// MarshalText implements encoding.TextMarshaler (JSON encodes ids as strings).
func (id EventID) MarshalText() ([]byte, error) { return uuid.UUID(id).MarshalText() }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *EventID) UnmarshalText(b []byte) error {
	u, err := uuid.ParseBytes(b)
	if err != nil {
		return fmt.Errorf("%w: event id %q: %w", ErrInvalidEnvelope, b, err)
	}
	*id = EventID(u)
	return nil
}
