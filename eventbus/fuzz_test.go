package eventbus_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/choicesherpa/eventkit/eventbus"
)

// FuzzEnvelopeJSON feeds arbitrary bytes to the envelope decoder (bytes
// arrive from Redis, PostgreSQL and other languages). Decoding must never
// panic; whatever decodes must re-encode to a stable form: encode, decode,
// encode again gives the same bytes, with identity and metadata intact.
func FuzzEnvelopeJSON(f *testing.F) {
	golden, _ := filepath.Glob(filepath.Join("testdata", "*.golden.json"))
	for _, p := range golden {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"event_id":"0190a5b0-7c3e-7d1a-9b2c-3f4e5d6c7b8a","payload":null,"metadata":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var env eventbus.Envelope
		if err := json.Unmarshal(data, &env); err != nil {
			return
		}
		valid := env.Validate() == nil
		first, err := json.Marshal(env)
		if err != nil {
			if valid {
				t.Fatalf("a valid envelope does not encode: %v", err)
			}
			return
		}
		var back eventbus.Envelope
		if err := json.Unmarshal(first, &back); err != nil {
			t.Fatalf("re-decoding our own encoding failed: %v\n%s", err, first)
		}
		second, err := json.Marshal(back)
		if err != nil {
			t.Fatalf("second encode: %v", err)
		}
		if !bytes.Equal(first, second) {
			t.Fatalf("encoding is not stable:\n%s\n%s", first, second)
		}
		if back.EventID != env.EventID || back.Metadata != env.Metadata || back.EventType != env.EventType {
			t.Fatalf("identity changed in the round trip: %+v vs %+v", env, back)
		}
		if valid != (back.Validate() == nil) {
			t.Fatalf("validity changed in the round trip")
		}
	})
}

// FuzzParseSchemaVersion checks that an accepted event type has a positive
// version and splits into BaseType and version that join back to the input.
func FuzzParseSchemaVersion(f *testing.F) {
	for _, s := range []string{"session.created.v1", "a.v10", "a.v0", "a.v01", ".v1", "a..b.v1", "A.v1", "a.v+1", "a.v1.v2", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := eventbus.ParseSchemaVersion(s)
		if err != nil {
			if eventbus.BaseType(s) != s {
				t.Fatalf("BaseType changed an invalid type %q", s)
			}
			return
		}
		if v < 1 {
			t.Fatalf("%q: version %d < 1", s, v)
		}
		base := eventbus.BaseType(s)
		if base == "" || base == s {
			t.Fatalf("%q: bad base %q", s, base)
		}
		if got := eventbus.VersionedType(base, v); got != s {
			t.Fatalf("%q: VersionedType(%q, %d) = %q", s, base, v, got)
		}
	})
}
