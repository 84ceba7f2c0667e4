package redisstream

import (
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/internal/jsonvalid"
)

// appendEnvelope appends env's JSON to buf: the same document
// json.Marshal(env) produces (field order, escaping, omitted metadata),
// except that the payload is copied verbatim instead of re-compacted, so a
// consumer gets exactly the publisher's bytes. It does not validate.
func appendEnvelope(buf []byte, env *eventbus.Envelope) []byte {
	buf = append(buf, `{"event_id":"`...)
	buf = appendUUID(buf, env.EventID)
	buf = append(buf, `","event_type":`...)
	buf = appendString(buf, env.EventType)
	buf = append(buf, `,"schema_version":`...)
	buf = strconv.AppendInt(buf, int64(env.SchemaVersion), 10)
	buf = append(buf, `,"aggregate_id":`...)
	buf = appendString(buf, env.AggregateID)
	buf = append(buf, `,"aggregate_type":`...)
	buf = appendString(buf, env.AggregateType)
	buf = append(buf, `,"occurred_at":"`...)
	buf = env.OccurredAt.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","payload":`...)
	buf = append(buf, env.Payload...)
	if md := env.Metadata; !md.IsZero() {
		buf = append(buf, `,"metadata":{`...)
		first := true
		field := func(name, v string) {
			if v == "" {
				return
			}
			if !first {
				buf = append(buf, ',')
			}
			first = false
			buf = append(buf, '"')
			buf = append(buf, name...)
			buf = append(buf, `":`...)
			buf = appendString(buf, v)
		}
		field("correlation_id", md.CorrelationID)
		field("causation_id", md.CausationID)
		field("user_id", md.UserID)
		field("traceparent", md.TraceParent)
		buf = append(buf, '}')
	}
	return append(buf, '}')
}

const hexDigits = "0123456789abcdef"

func appendUUID(buf []byte, id eventbus.EventID) []byte {
	for i, b := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			buf = append(buf, '-')
		}
		buf = append(buf, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return buf
}

// appendString appends s as a JSON string escaped the way encoding/json
// does by default (HTML-safe, invalid UTF-8 replaced).
func appendString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch b {
			case '\\', '"':
				buf = append(buf, '\\', b)
			case '\b':
				buf = append(buf, '\\', 'b')
			case '\f':
				buf = append(buf, '\\', 'f')
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

// validateForPublish is Envelope.Validate in one pass over the payload.
func validateForPublish(env *eventbus.Envelope) error {
	if err := validateHeader(env); err != nil {
		return err
	}
	if len(env.Payload) == 0 || !jsonvalid.Valid(env.Payload) {
		return fmt.Errorf("%w: payload of %s %s is not valid JSON", eventbus.ErrInvalidEnvelope, env.EventType, env.EventID)
	}
	return nil
}

// validateHeader checks everything but the payload's JSON validity.
func validateHeader(env *eventbus.Envelope) error {
	if env.EventID.IsZero() {
		return fmt.Errorf("%w: missing event_id", eventbus.ErrInvalidEnvelope)
	}
	v, err := eventbus.ParseSchemaVersion(env.EventType)
	if err != nil {
		return err
	}
	if env.SchemaVersion != v {
		return fmt.Errorf("%w: schema_version %d does not match type %q", eventbus.ErrInvalidEnvelope, env.SchemaVersion, env.EventType)
	}
	if env.OccurredAt.IsZero() {
		return fmt.Errorf("%w: missing occurred_at", eventbus.ErrInvalidEnvelope)
	}
	if len(env.Payload) == 0 {
		return fmt.Errorf("%w: empty payload of %s %s", eventbus.ErrInvalidEnvelope, env.EventType, env.EventID)
	}
	return nil
}
