package redisstream

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/internal/jsonvalid"
)

var errSlowPath = errors.New("not in the canonical layout")

// unmarshalEnvelope decodes data into env. Documents in the exact layout
// appendEnvelope writes (what every publisher of this package produces) are
// parsed in one forward pass with the payload validated once; anything else
// (other field order, whitespace, unknown fields) goes through
// encoding/json, which gives the same result. dataBytes, when not nil, is
// data's own storage: the payload is sliced from it instead of copied.
func unmarshalEnvelope(data string, dataBytes []byte, env *eventbus.Envelope) error {
	if err := fastEnvelope(data, dataBytes, env); err == nil {
		return nil
	}
	*env = eventbus.Envelope{}
	return json.Unmarshal([]byte(data), env)
}

type cursor struct {
	s string
	i int
}

func (c *cursor) lit(l string) bool {
	if strings.HasPrefix(c.s[c.i:], l) {
		c.i += len(l)
		return true
	}
	return false
}

// str reads a JSON string without escapes (escaped strings take the slow path).
func (c *cursor) str() (string, bool) {
	if c.i >= len(c.s) || c.s[c.i] != '"' {
		return "", false
	}
	for j := c.i + 1; j < len(c.s); j++ {
		switch b := c.s[j]; {
		case b == '"':
			v := c.s[c.i+1 : j]
			c.i = j + 1
			return v, true
		case b == '\\' || b < 0x20 || b >= 0x80:
			return "", false // escapes or non-ASCII: let encoding/json handle them
		}
	}
	return "", false
}

func fastEnvelope(s string, b []byte, env *eventbus.Envelope) error {
	c := cursor{s: s}
	if !c.lit(`{"event_id":`) {
		return errSlowPath
	}
	id, ok := c.str()
	if !ok || len(id) != 36 {
		return errSlowPath
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return errSlowPath
	}
	env.EventID = eventbus.EventID(u)
	if !c.lit(`,"event_type":`) {
		return errSlowPath
	}
	if env.EventType, ok = c.str(); !ok || !c.lit(`,"schema_version":`) {
		return errSlowPath
	}
	j := c.i
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	v, err := strconv.Atoi(s[c.i:j])
	if err != nil || j-c.i > 1 && s[c.i] == '0' { // JSON has no leading zeros
		return errSlowPath
	}
	env.SchemaVersion, c.i = v, j
	if !c.lit(`,"aggregate_id":`) {
		return errSlowPath
	}
	if env.AggregateID, ok = c.str(); !ok || !c.lit(`,"aggregate_type":`) {
		return errSlowPath
	}
	if env.AggregateType, ok = c.str(); !ok || !c.lit(`,"occurred_at":`) {
		return errSlowPath
	}
	at, ok := c.str()
	if !ok {
		return errSlowPath
	}
	if env.OccurredAt, err = time.Parse(time.RFC3339Nano, at); err != nil {
		return errSlowPath
	}
	if !c.lit(`,"payload":`) {
		return errSlowPath
	}
	n, ok := jsonvalid.PrefixString(s[c.i:])
	if !ok {
		return errSlowPath
	}
	if b != nil {
		env.Payload = json.RawMessage(b[c.i : c.i+n : c.i+n])
	} else {
		env.Payload = json.RawMessage(s[c.i : c.i+n])
	}
	c.i += n
	env.Metadata = eventbus.Metadata{}
	if c.lit(`,"metadata":{`) {
		for first := true; !c.lit("}"); first = false {
			if !first && !c.lit(",") {
				return errSlowPath
			}
			key, ok := c.str()
			if !ok || !c.lit(":") {
				return errSlowPath
			}
			val, ok := c.str()
			if !ok {
				return errSlowPath
			}
			switch key {
			case "correlation_id":
				env.Metadata.CorrelationID = val
			case "causation_id":
				env.Metadata.CausationID = val
			case "user_id":
				env.Metadata.UserID = val
			case "traceparent":
				env.Metadata.TraceParent = val
			default:
				return errSlowPath
			}
		}
	}
	if c.i != len(s)-1 || s[c.i] != '}' {
		return errSlowPath
	}
	return nil
}
