package redisstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/choicesherpa/eventkit/eventbus"
)

// Stream entry fields. Every entry the bus writes has exactly these three,
// so a consumer in any language can route on FieldType, deduplicate on
// FieldID and decode FieldData (the envelope's snake_case JSON, the same
// document eventbus.Envelope marshals to).
const (
	FieldType = "type"
	FieldID   = "id"
	FieldData = "data"
)

// PayloadTooLargeError is returned synchronously by Publish when an encoded
// envelope exceeds Config.MaxPayloadBytes. It is permanent.
type PayloadTooLargeError struct {
	EventID   eventbus.EventID
	EventType string
	Size      int
	Max       int
}

func (e *PayloadTooLargeError) Error() string {
	return fmt.Sprintf("redisstream: %s %s is %d bytes encoded, over the %d-byte limit", e.EventType, e.EventID, e.Size, e.Max)
}

// Unwrap makes the error permanent for eventbus.IsPermanent.
func (e *PayloadTooLargeError) Unwrap() error { return eventbus.ErrInvalidEnvelope }

// ErrMalformedEntry is matched by every *MalformedEntryError.
var ErrMalformedEntry = errors.New("redisstream: malformed stream entry")

// MalformedEntryError reports a stream entry that does not decode into a
// valid envelope. Such entries are dead-lettered on their first delivery
// with reason deadletter.ReasonPermanent (the error is permanent).
type MalformedEntryError struct {
	EntryID string
	Reason  string
	Err     error
}

func (e *MalformedEntryError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("redisstream: malformed entry %s: %s: %v", e.EntryID, e.Reason, e.Err)
	}
	return fmt.Sprintf("redisstream: malformed entry %s: %s", e.EntryID, e.Reason)
}

// Unwrap returns the cause.
func (e *MalformedEntryError) Unwrap() error { return e.Err }

// Is matches ErrMalformedEntry and eventbus.ErrInvalidEnvelope (so the error
// is permanent).
func (e *MalformedEntryError) Is(target error) bool {
	return target == ErrMalformedEntry || target == eventbus.ErrInvalidEnvelope
}

// encodeEntry returns the XADD field list of env (type, id, data), for
// callers outside the publish path (Replay, tests).
func encodeEntry(env *eventbus.Envelope, maxBytes int) ([]any, error) {
	var e pubEntry
	if err := e.encode(env, maxBytes); err != nil {
		return nil, err
	}
	return []any{FieldType, env.EventType, FieldID, string(e.id), FieldData, []byte(e.data)}, nil
}

// byteArg is a command argument go-redis writes verbatim. It is passed as a
// pointer (go-redis takes it as an encoding.BinaryMarshaler): boxing a
// pointer into the []any of a command allocates nothing, boxing a string or
// a []byte allocates its header.
type byteArg []byte

// MarshalBinary returns the bytes themselves.
func (a *byteArg) MarshalBinary() ([]byte, error) { return *a, nil }

// String is what go-redis prints when it formats the command.
func (a *byteArg) String() string { return string(*a) }

// pubEntry is one XADD of the publish path, built once per envelope with
// its arguments in place, so go-redis gets them without per-field boxing.
type pubEntry struct {
	stream string
	buf    []byte  // envelope JSON, then the id text, then the type
	data   byteArg // buf's parts
	id     byteArg
	typ    byteArg
	args   [9]any
	cmd    *redis.StringCmd
}

// maxKeptBuf is the largest encoding buffer a recycled request keeps.
const maxKeptBuf = 64 << 10

// encode validates env and fills e's buffer (reusing its capacity).
func (e *pubEntry) encode(env *eventbus.Envelope, maxBytes int) error {
	if err := validateForPublish(env); err != nil {
		return err
	}
	md := &env.Metadata
	// Room for the unescaped document and the two trailing fields: one
	// allocation unless strings need escaping.
	size := 192 + 2*len(env.EventType) + len(env.AggregateID) + len(env.AggregateType) + len(env.Payload) +
		len(md.CorrelationID) + len(md.CausationID) + len(md.UserID) + len(md.TraceParent) + 36
	if cap(e.buf) < size {
		e.buf = make([]byte, 0, size)
	}
	buf := appendEnvelope(e.buf[:0], env)
	n := len(buf)
	if maxBytes > 0 && n > maxBytes {
		return &PayloadTooLargeError{EventID: env.EventID, EventType: env.EventType, Size: n, Max: maxBytes}
	}
	buf = appendUUID(buf, env.EventID)
	buf = append(buf, env.EventType...)
	e.buf = buf
	e.data, e.id, e.typ = buf[:n:n], buf[n:n+36:n+36], buf[n+36:]
	return nil
}

// command returns e's XADD with streamArg (the boxed stream name) as key.
func (e *pubEntry) command(ctx context.Context, streamArg any) *redis.StringCmd {
	e.args = [9]any{"xadd", streamArg, "*", FieldType, &e.typ, FieldID, &e.id, FieldData, &e.data}
	e.cmd = redis.NewStringCmd(ctx, e.args[:]...)
	return e.cmd
}

// decodeEntry turns a stream entry go-redis parsed back into an envelope.
func decodeEntry(entryID string, values map[string]any) (eventbus.Envelope, error) {
	var env eventbus.Envelope
	e := entriesFromMessages([]redis.XMessage{{ID: entryID, Values: values}})
	err := decodeInto(&e[0], &env)
	return env, err
}

// decodeInto decodes a stream entry into *env (the delivery's own storage,
// so decoding allocates nothing for an entry read raw, and only the payload
// copy otherwise). On error env may be partly set.
func decodeInto(e *entry, env *eventbus.Envelope) error {
	var typ, id, data string
	dataAt := -1
	for i := 0; i+1 < len(e.fields); i += 2 {
		switch v := e.fields[i+1]; e.fields[i] {
		case FieldType:
			typ = v
		case FieldID:
			id = v
		case FieldData:
			data, dataAt = v, i+1
		default:
			return &MalformedEntryError{EntryID: e.id, Reason: "unknown field " + quoteField(e.fields[i])}
		}
	}
	if dataAt < 0 {
		return &MalformedEntryError{EntryID: e.id, Reason: "missing data field"}
	}
	var dataBytes []byte // data's own storage, when it is ours to share
	if e.raw != nil && e.dataAt >= 0 {
		dataBytes = e.raw[e.dataAt : e.dataAt+len(data) : e.dataAt+len(data)]
	}
	if err := unmarshalEnvelope(data, dataBytes, env); err != nil {
		*env = eventbus.Envelope{}
		return &MalformedEntryError{EntryID: e.id, Reason: "data is not an envelope", Err: err}
	}
	// json.Unmarshal has checked the payload is valid JSON.
	if err := validateHeader(env); err != nil {
		return &MalformedEntryError{EntryID: e.id, Reason: "invalid envelope", Err: err}
	}
	if typ != env.EventType {
		return &MalformedEntryError{EntryID: e.id, Reason: "type field does not match the envelope"}
	}
	if !idMatches(id, env.EventID) {
		return &MalformedEntryError{EntryID: e.id, Reason: "id field does not match the envelope"}
	}
	return nil
}

// idMatches reports whether s is id's canonical text, without formatting it.
func idMatches(s string, id eventbus.EventID) bool {
	var buf [36]byte
	return string(appendUUID(buf[:0], id)) == s
}

func quoteField(k string) string {
	if len(k) > 40 {
		k = k[:40] + "..."
	}
	return fmt.Sprintf("%q", k)
}
