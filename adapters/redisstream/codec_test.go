package redisstream

import (
	"context"
	"encoding/json"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/eventbus"
)

func envWith(agg, md string, at time.Time) eventbus.Envelope {
	return eventbus.Envelope{
		EventID:       eventbus.NewEventID(),
		EventType:     "a.b_c-d.v12",
		SchemaVersion: 12,
		AggregateID:   agg,
		AggregateType: "t" + agg,
		OccurredAt:    at,
		Payload:       json.RawMessage(`{"x":[1,2,{"y":"z"}]}`),
		Metadata:      eventbus.Metadata{CorrelationID: md, UserID: md + "u"},
	}
}

// The hand-written encoder produces exactly what json.Marshal does.
func TestAppendEnvelopeMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 27, 13, 0, 0, 123456000, time.UTC)
	cases := []eventbus.Envelope{
		envWith("plain", "", at),
		envWith("quote\" back\\ slash", "<script>&amp;", at),
		envWith("ctl\x00\x01\n\r\t\b\f", "\u2028\u2029 é ☃ 😀", at.Add(time.Nanosecond)),
		envWith("bad utf8 \xff\xfe end", "x", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		envWith("", "", at.In(time.FixedZone("x", 3600))),
	}
	for _, env := range cases {
		want, err := json.Marshal(env)
		require.NoError(t, err)
		got := appendEnvelope(nil, &env)
		require.Equal(t, string(want), string(got))
		fields, err := encodeEntry(&env, 0)
		require.NoError(t, err)
		values := map[string]any{FieldType: fields[1], FieldID: fields[3], FieldData: string(fields[5].([]byte))}
		back, err := decodeEntry("1-1", values)
		require.NoError(t, err)
		require.Equal(t, env.EventID, back.EventID)
		require.Equal(t, string(env.Payload), string(back.Payload))
		require.True(t, env.OccurredAt.Equal(back.OccurredAt))
	}
}

func FuzzAppendEnvelope(f *testing.F) {
	f.Add("agg", "corr", "user", `{"a":1}`)
	f.Add("\x00\"<", "\u2028", "\xff", `[1, 2]`)
	f.Fuzz(func(t *testing.T, agg, corr, user, payload string) {
		if !json.Valid([]byte(payload)) {
			return
		}
		env := envWith(agg, corr, time.Unix(1700000000, 5).UTC())
		env.Metadata.UserID = user
		var compact []byte
		compact, err := json.Marshal(json.RawMessage(payload))
		if err != nil {
			return
		}
		env.Payload = compact
		want, err := json.Marshal(env)
		require.NoError(t, err)
		require.Equal(t, string(want), string(appendEnvelope(nil, &env)))
	})
}

func FuzzDecodeEntry(f *testing.F) {
	env := envWith("a", "b", time.Unix(1700000000, 0).UTC())
	data, _ := json.Marshal(env)
	f.Add(env.EventType, env.EventID.String(), string(data))
	f.Add("x", "y", "{")
	f.Fuzz(func(t *testing.T, typ, id, data string) {
		got, err := decodeEntry("1-1", map[string]any{FieldType: typ, FieldID: id, FieldData: data})
		if err == nil {
			require.NoError(t, got.Validate())
			require.Equal(t, typ, got.EventType)
			require.Equal(t, id, got.EventID.String())
		}
	})
}

// The fast decoder agrees with encoding/json on whatever it accepts.
func FuzzFastEnvelope(f *testing.F) {
	for _, env := range []eventbus.Envelope{envWith("a", "b", time.Unix(1700000000, 7).UTC()), envWith("", "", time.Unix(1, 0).UTC())} {
		data, _ := json.Marshal(env)
		f.Add(string(data))
	}
	f.Add(`{"event_id":"01a21d34-675c-7d12-9a79-35bffe392aff","event_type":"a.v1","schema_version":1,"aggregate_id":"x","aggregate_type":"y","occurred_at":"2026-01-01T00:00:00Z","payload":{"a":"}"},"metadata":{"user_id":"u"}}`)
	f.Fuzz(func(t *testing.T, data string) {
		var fast eventbus.Envelope
		if fastEnvelope(data, nil, &fast) != nil {
			return
		}
		var slow eventbus.Envelope
		require.NoError(t, json.Unmarshal([]byte(data), &slow), "fast path accepted what encoding/json rejects: %q", data)
		require.Equal(t, slow.EventID, fast.EventID)
		require.Equal(t, slow.EventType, fast.EventType)
		require.Equal(t, slow.SchemaVersion, fast.SchemaVersion)
		require.Equal(t, slow.AggregateID, fast.AggregateID)
		require.Equal(t, slow.AggregateType, fast.AggregateType)
		require.True(t, slow.OccurredAt.Equal(fast.OccurredAt))
		require.Equal(t, string(slow.Payload), string(fast.Payload))
		require.Equal(t, slow.Metadata, fast.Metadata)
	})
}

// A recycled entry encodes without allocating and its command costs only
// go-redis's command object: the publish path's budget (B14).
func TestPubEntryReuseAllocs(t *testing.T) {
	env := envWith("agg", "corr", time.Unix(1700000000, 5).UTC())
	var e pubEntry
	require.NoError(t, e.encode(&env, 0))
	var stream any = "s"
	// AllocsPerRun counts every goroutine's allocations: the best of a few
	// runs keeps other tests' background work out.
	allocs := math.Inf(1)
	for range 5 {
		allocs = min(allocs, testing.AllocsPerRun(100, func() {
			if err := e.encode(&env, 0); err != nil {
				t.Fatal(err)
			}
			_ = e.command(context.Background(), stream)
		}))
	}
	require.LessOrEqual(t, allocs, 1.0)
	want, err := json.Marshal(env)
	require.NoError(t, err)
	require.Equal(t, string(want), string(e.data))
	require.Equal(t, env.EventID.String(), string(e.id))
	require.Equal(t, env.EventType, string(e.typ))
	require.Equal(t, []any{"xadd", "s", "*", FieldType, &e.typ, FieldID, &e.id, FieldData, &e.data}, e.cmd.Args())
}

// Decoding into a delivery's own envelope allocates nothing for an entry
// read raw (the payload shares the entry's storage) and only the payload
// copy for one go-redis parsed: the consume path's budget (B14).
func TestDecodeIntoAllocs(t *testing.T) {
	env := envWith("agg", "corr", time.Unix(1700000000, 5).UTC())
	fields, err := encodeEntry(&env, 0)
	require.NoError(t, err)
	values := map[string]any{FieldType: fields[1], FieldID: fields[3], FieldData: string(fields[5].([]byte))}
	parsed := entriesFromMessages([]redis.XMessage{{ID: "1-1", Values: values}})[0]
	raw := rawEntry(t, "1-1", FieldType, fields[1].(string), FieldID, fields[3].(string), FieldData, string(fields[5].([]byte)))
	for _, tc := range []struct {
		name   string
		e      entry
		allocs float64
	}{{"raw", raw, 0}, {"parsed", parsed, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			var got eventbus.Envelope
			allocs := math.Inf(1)
			for range 5 {
				allocs = min(allocs, testing.AllocsPerRun(100, func() {
					if err := decodeInto(&tc.e, &got); err != nil {
						t.Fatal(err)
					}
				}))
			}
			require.LessOrEqual(t, allocs, tc.allocs)
			require.Equal(t, env.EventID, got.EventID)
			require.Equal(t, string(env.Payload), string(got.Payload))
			if tc.e.raw != nil {
				require.Equal(t, len(got.Payload), cap(got.Payload), "a handler appending to the payload must not write into the entry")
			}
		})
	}
	parsed.fields = slices.Clone(parsed.fields)
	for i := 0; i < len(parsed.fields); i += 2 {
		if parsed.fields[i] == FieldID {
			parsed.fields[i+1] = eventbus.NewEventID().String()
		}
	}
	var got eventbus.Envelope
	require.ErrorIs(t, decodeInto(&parsed, &got), ErrMalformedEntry, "a mismatched id field is still caught")
}
