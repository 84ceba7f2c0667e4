package redisstream

import (
	"fmt"

	"github.com/redis/go-redis/v9"
)

// entry is one stream entry as a subscription reads it.
type entry struct {
	id string
	// fields is the entry's field list: name, value, name, value, ...
	// nil means the entry no longer exists (deleted or trimmed while
	// pending); an entry that exists has a non-nil list. Lists from the
	// raw reader are reused by its next read (see own).
	fields []string
	// raw is the storage behind id and the values when the entry came
	// through the reply parser (see streamReader), dataAt the offset in it
	// of the last data value (-1: none). The payload is sliced from raw
	// instead of copied. nil for entries go-redis parsed.
	raw    []byte
	dataAt int
}

// entriesFromMessages converts entries go-redis parsed (claims, the
// fallback read path).
func entriesFromMessages(msgs []redis.XMessage) []entry {
	out := make([]entry, len(msgs))
	for i, m := range msgs {
		out[i] = entry{id: m.ID, dataAt: -1}
		if m.Values == nil {
			continue
		}
		f := make([]string, 0, 2*len(m.Values))
		for k, v := range m.Values {
			s, ok := v.(string)
			if !ok {
				s = fmt.Sprint(v)
			}
			f = append(f, k, s)
		}
		out[i].fields = f
	}
	return out
}

// own makes e's field list its own, in buf when it fits (a delivery's
// inline storage: the usual entry has three fields).
func (e *entry) own(buf []string) {
	if e.fields == nil {
		return
	}
	if len(e.fields) <= len(buf) {
		e.fields = buf[:copy(buf, e.fields):len(e.fields)]
		return
	}
	e.fields = append([]string(nil), e.fields...)
}

// field returns the value of name; with a name repeated, the last one (as
// a map of the fields would keep).
func (e *entry) field(name string) (string, bool) {
	for i := len(e.fields) - 2; i >= 0; i -= 2 {
		if e.fields[i] == name {
			return e.fields[i+1], true
		}
	}
	return "", false
}

// entryType returns the type field of e, "" if missing.
func (e *entry) entryType() string {
	s, _ := e.field(FieldType)
	return s
}

// rawFields returns an entry's fields for a dead-letter record.
func (e *entry) rawFields() map[string]string {
	out := make(map[string]string, len(e.fields)/2)
	for i := 0; i+1 < len(e.fields); i += 2 {
		out[e.fields[i]] = e.fields[i+1]
	}
	return out
}
