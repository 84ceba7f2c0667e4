package eventbus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/eventbus"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenEnvelope is a fixed envelope; md varies per golden file.
func goldenEnvelope(md eventbus.Metadata) eventbus.Envelope {
	return eventbus.Envelope{
		EventID:       eventbus.MustParseEventID("0190a5b0-7c3e-7d1a-9b2c-3f4e5d6c7b8a"),
		EventType:     "session.created.v1",
		SchemaVersion: 1,
		AggregateID:   "sess-42",
		AggregateType: "session",
		OccurredAt:    time.Date(2026, 1, 9, 12, 34, 56, 123456000, time.UTC),
		Payload:       json.RawMessage(`{"session_id":"sess-42","title":"Which job offer?"}`),
		Metadata:      md,
	}
}

func TestEnvelopeJSONGolden(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		md   eventbus.Metadata
	}{
		{"envelope_full", eventbus.Metadata{
			CorrelationID: "corr-1",
			CausationID:   "0190a5b0-0000-7000-8000-000000000001",
			UserID:        "user-7",
			TraceParent:   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		}},
		{"envelope_no_metadata", eventbus.Metadata{}},
		{"envelope_partial_metadata", eventbus.Metadata{CorrelationID: "corr-1", UserID: "user-7"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := goldenEnvelope(tc.md)
			got, err := json.Marshal(env)
			require.NoError(t, err)
			path := filepath.Join("testdata", tc.name+".golden.json")
			if *update {
				require.NoError(t, os.WriteFile(path, append(got, '\n'), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err)
			want = bytes.TrimSuffix(want, []byte("\n"))
			require.Equal(t, string(want), string(got), "marshal must match the golden file")

			// Decoding the golden bytes gives the same envelope back, and
			// encoding that again gives the same bytes.
			var back eventbus.Envelope
			require.NoError(t, json.Unmarshal(want, &back))
			require.Equal(t, env.EventID, back.EventID)
			require.Equal(t, env.Metadata, back.Metadata)
			require.True(t, env.OccurredAt.Equal(back.OccurredAt))
			again, err := json.Marshal(back)
			require.NoError(t, err)
			require.Equal(t, string(want), string(again), "round trip must be byte for byte")
			require.NoError(t, back.Validate())
		})
	}
}

func TestEnvelopeJSONShape(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(goldenEnvelope(eventbus.Metadata{}))
	require.NoError(t, err)
	var fields map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &fields))
	for _, k := range []string{"event_id", "event_type", "schema_version", "aggregate_id", "aggregate_type", "occurred_at", "payload"} {
		require.Contains(t, fields, k)
	}
	require.NotContains(t, fields, "metadata", "empty metadata must be omitted")
	require.Len(t, fields, 7)

	b, err = json.Marshal(goldenEnvelope(eventbus.Metadata{TraceParent: "00-x-y-01"}))
	require.NoError(t, err)
	require.Contains(t, string(b), `"metadata":{"traceparent":"00-x-y-01"}`, "only set metadata fields appear")
}

func TestEnvelopeJSONDecodesForeignProducers(t *testing.T) {
	t.Parallel()
	// Another language may indent, reorder and use an offset time zone.
	in := `{
	  "metadata": {"correlation_id": "c"},
	  "payload": {"b": 1, "a": [1, 2]},
	  "occurred_at": "2026-01-09T13:34:56.123456+01:00",
	  "aggregate_type": "session", "aggregate_id": "s",
	  "schema_version": 2, "event_type": "session.created.v2",
	  "event_id": "0190A5B0-7C3E-7D1A-9B2C-3F4E5D6C7B8A"
	}`
	var env eventbus.Envelope
	require.NoError(t, json.Unmarshal([]byte(in), &env))
	require.NoError(t, env.Validate())
	require.Equal(t, "0190a5b0-7c3e-7d1a-9b2c-3f4e5d6c7b8a", env.EventID.String())
	require.Equal(t, 2, env.SchemaVersion)
	require.True(t, env.OccurredAt.Equal(time.Date(2026, 1, 9, 12, 34, 56, 123456000, time.UTC)))
	require.Equal(t, "c", env.Metadata.CorrelationID)
}

func TestEnvelopeJSONRejectsBadID(t *testing.T) {
	t.Parallel()
	var env eventbus.Envelope
	err := json.Unmarshal([]byte(`{"event_id":"not-a-uuid"}`), &env)
	require.Error(t, err)
	require.ErrorIs(t, err, eventbus.ErrInvalidEnvelope)
}

func TestNewEnvelope(t *testing.T) {
	t.Parallel()
	before := time.Now()
	env, err := eventbus.NewEnvelope(context.Background(), sessionCreated{SessionID: "s-1", Title: "T"})
	require.NoError(t, err)
	require.NoError(t, env.Validate())

	require.Equal(t, "session.created.v1", env.EventType)
	require.Equal(t, 1, env.SchemaVersion)
	require.Equal(t, "s-1", env.AggregateID)
	require.Equal(t, "session", env.AggregateType)
	require.JSONEq(t, `{"session_id":"s-1","title":"T"}`, string(env.Payload))
	require.True(t, env.Metadata.IsZero(), "no metadata outside a handler or command")

	// UUIDv7, RFC 4122 variant.
	u := env.EventID.UUID()
	require.Equal(t, uuid.Version(7), u.Version())
	require.Equal(t, uuid.RFC4122, u.Variant())

	// UTC, microsecond precision, now.
	require.Equal(t, time.UTC, env.OccurredAt.Location())
	require.Zero(t, env.OccurredAt.Nanosecond()%1000, "microsecond precision")
	require.False(t, env.OccurredAt.Before(before.Truncate(time.Microsecond)))
	require.False(t, env.OccurredAt.After(time.Now()))
}

func TestNewEnvelopeUniqueIDs(t *testing.T) {
	t.Parallel()
	seen := make(map[eventbus.EventID]bool)
	for range 1000 {
		id := eventbus.MustEnvelope(context.Background(), sessionCreated{SessionID: "s"}).EventID
		require.False(t, seen[id], "duplicate id %s", id)
		seen[id] = true
	}
}

func TestNewEnvelopeErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, err := eventbus.NewEnvelope(ctx, nil)
	require.ErrorIs(t, err, eventbus.ErrInvalidEnvelope)

	_, err = eventbus.NewEnvelope(ctx, badType{})
	require.ErrorIs(t, err, eventbus.ErrInvalidEnvelope)
	require.True(t, eventbus.IsPermanent(err))

	_, err = eventbus.NewEnvelope(ctx, unencodable{C: make(chan int)})
	require.ErrorIs(t, err, eventbus.ErrInvalidEnvelope)

	require.Panics(t, func() { eventbus.MustEnvelope(ctx, badType{}) })

	_, err = eventbus.NewEnvelopes(ctx, sessionCreated{}, badType{})
	require.ErrorIs(t, err, eventbus.ErrInvalidEnvelope)
}

func TestNewEnvelopesKeepsOrder(t *testing.T) {
	t.Parallel()
	envs, err := eventbus.NewEnvelopes(context.Background(), orderPlaced{OrderID: "o", Seq: 1}, orderPaid{OrderID: "o"}, orderPlaced{OrderID: "o", Seq: 2})
	require.NoError(t, err)
	require.Len(t, envs, 3)
	require.Equal(t, []string{"order.placed.v1", "order.paid.v1", "order.placed.v1"},
		[]string{envs[0].EventType, envs[1].EventType, envs[2].EventType})
	require.NotEqual(t, envs[0].EventID, envs[2].EventID)
}

func TestEnvelopeValidate(t *testing.T) {
	t.Parallel()
	good := goldenEnvelope(eventbus.Metadata{})
	require.NoError(t, good.Validate())
	cases := map[string]func(e *eventbus.Envelope){
		"missing id":        func(e *eventbus.Envelope) { e.EventID = eventbus.EventID{} },
		"bad type":          func(e *eventbus.Envelope) { e.EventType = "SessionCreated" },
		"version mismatch":  func(e *eventbus.Envelope) { e.SchemaVersion = 2 },
		"missing time":      func(e *eventbus.Envelope) { e.OccurredAt = time.Time{} },
		"empty payload":     func(e *eventbus.Envelope) { e.Payload = nil },
		"invalid payload":   func(e *eventbus.Envelope) { e.Payload = json.RawMessage(`{"a":`) },
		"null payload":      func(e *eventbus.Envelope) { e.Payload = json.RawMessage(` null `) },
		"missing version 0": func(e *eventbus.Envelope) { e.EventType = "session.created.v0"; e.SchemaVersion = 0 },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := goldenEnvelope(eventbus.Metadata{})
			mutate(&e)
			err := e.Validate()
			require.ErrorIs(t, err, eventbus.ErrInvalidEnvelope)
			require.True(t, eventbus.IsPermanent(err), "an invalid envelope is permanent")
		})
	}
}

func TestParseSchemaVersion(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		want int
		base string
	}{
		{"session.created.v1", 1, "session.created"},
		{"session.created.v2", 2, "session.created"},
		{"a.v10", 10, "a"},
		{"a.v1000", eventbus.MaxSchemaVersion, "a"},
		{"a.v1.v2", 2, "a.v1"},
		{"snake_case.kebab-case.d1g1ts.v3", 3, "snake_case.kebab-case.d1g1ts"},
	}
	for _, tc := range good {
		got, err := eventbus.ParseSchemaVersion(tc.in)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
		require.Equal(t, tc.base, eventbus.BaseType(tc.in), tc.in)
		require.Equal(t, tc.in, eventbus.VersionedType(tc.base, tc.want), tc.in)
	}

	bad := []string{
		"",
		"session.created",
		"session.created.v",
		"a.vv1",
		"session.created.v0",
		"session.created.v01",
		"session.created.v-1",
		"session.created.v+1",
		"session.created.v1x",
		"session.created.v1001",           // above MaxSchemaVersion
		"session.created.v99999999999999", // would size Subscribe's type list
		"session.created.v1 ",
		"session.created.v 1",
		"session.created.V1",
		"session.createdv1",
		".v1",
		"v1",
		"Session.Created.v1",
		"session created.v1",
		"session..created.v1",
		".session.v1",
		"session..v1",
		"séssion.v1",
		"session.created.v99999999999999999999999",
		"session/created.v1",
	}
	for _, in := range bad {
		_, err := eventbus.ParseSchemaVersion(in)
		require.Error(t, err, "%q must be rejected", in)
		require.ErrorIs(t, err, eventbus.ErrInvalidEnvelope, in)
		require.Equal(t, in, eventbus.BaseType(in), "BaseType leaves an invalid type unchanged")
	}
}

func TestEventIDText(t *testing.T) {
	t.Parallel()
	id := eventbus.NewEventID()
	require.False(t, id.IsZero())
	require.True(t, eventbus.EventID{}.IsZero())

	s := id.String()
	require.Len(t, s, 36)
	require.Equal(t, strings.ToLower(s), s)

	parsed, err := eventbus.ParseEventID(s)
	require.NoError(t, err)
	require.Equal(t, id, parsed)

	txt, err := id.MarshalText()
	require.NoError(t, err)
	require.Equal(t, s, string(txt))
	var back eventbus.EventID
	require.NoError(t, back.UnmarshalText(txt))
	require.Equal(t, id, back)

	// JSON: a quoted string, also as a map key.
	b, err := json.Marshal(map[eventbus.EventID]eventbus.EventID{id: id})
	require.NoError(t, err)
	require.Equal(t, `{"`+s+`":"`+s+`"}`, string(b))
	var m map[eventbus.EventID]eventbus.EventID
	require.NoError(t, json.Unmarshal(b, &m))
	require.Equal(t, id, m[id])

	require.Equal(t, uuid.UUID(id), id.UUID())

	for _, in := range []string{"", "nope", "0190a5b0-7c3e-7d1a-9b2c-3f4e5d6c7b8", "0190a5b0-7c3e-7d1a-9b2c-3f4e5d6c7b8aa"} {
		_, err := eventbus.ParseEventID(in)
		require.ErrorIs(t, err, eventbus.ErrInvalidEnvelope, in)
		var e eventbus.EventID
		require.ErrorIs(t, e.UnmarshalText([]byte(in)), eventbus.ErrInvalidEnvelope, in)
	}
	require.Panics(t, func() { eventbus.MustParseEventID("nope") })
	require.True(t, errors.Is(func() error { _, err := eventbus.ParseEventID("x"); return err }(), eventbus.ErrInvalidEnvelope))
}

// A nil pointer event is an error, not a panic or a "null" payload.
func TestNewEnvelopeRejectsTypedNil(t *testing.T) {
	t.Parallel()
	_, err := eventbus.NewEnvelope(context.Background(), (*orderPlaced)(nil))
	require.ErrorIs(t, err, eventbus.ErrInvalidEnvelope)
}

// Pointer event types work where value types do: methods with value
// receivers are never called on a nil pointer.
func TestPointerEventTypes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := &eventbus.Registry{}
	require.NoError(t, eventbus.Register[*orderPlaced](r))
	env := eventbus.MustEnvelope(ctx, orderPlaced{OrderID: "o", Seq: 3})
	got, err := eventbus.DecodeAs[*orderPlaced](r, env)
	require.NoError(t, err)
	require.Equal(t, "o", got.OrderID)

	bus := eventbus.NewInMemoryBus(nil)
	defer bus.Close()
	var seen atomic.Int64
	_, err = eventbus.Subscribe(ctx, bus, "ptr", func(_ context.Context, ev *orderPlaced, _ eventbus.Envelope) error {
		seen.Add(int64(ev.Seq))
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, bus.Publish(ctx, env))
	require.EqualValues(t, 3, seen.Load())
}
