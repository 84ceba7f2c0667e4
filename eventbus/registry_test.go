package eventbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/eventbus"
)

// A schema that evolved three times:
//
//	v1 {"name": "Ada Lovelace"}
//	v2 {"first": "Ada", "last": "Lovelace"}
//	v3 {"first": "Ada", "last": "Lovelace", "locale": "en"}
type personV1 struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

func (personV1) EventType() string     { return "regtest.person.added.v1" }
func (p personV1) AggregateID() string { return p.ID }
func (personV1) AggregateType() string { return "person" }

type personV3 struct {
	ID     string `json:"id"`
	First  string `json:"first"`
	Last   string `json:"last"`
	Locale string `json:"locale"`
}

func (personV3) EventType() string     { return "regtest.person.added.v3" }
func (p personV3) AggregateID() string { return p.ID }
func (personV3) AggregateType() string { return "person" }

func upV1toV2(p json.RawMessage) (json.RawMessage, error) {
	var in struct{ ID, Name string }
	if err := json.Unmarshal(p, &in); err != nil {
		return nil, err
	}
	first, last, _ := cut(in.Name)
	return json.Marshal(map[string]string{"id": in.ID, "first": first, "last": last})
}

func upV2toV3(p json.RawMessage) (json.RawMessage, error) {
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		return nil, err
	}
	m["locale"] = "en"
	return json.Marshal(m)
}

func cut(s string) (string, string, bool) {
	for i := range len(s) {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func personRegistry(t *testing.T) *eventbus.Registry {
	t.Helper()
	r := &eventbus.Registry{}
	require.NoError(t, eventbus.Register[personV3](r))
	require.NoError(t, r.AddUpcaster("regtest.person.added.v1", upV1toV2))
	require.NoError(t, r.AddUpcaster("regtest.person.added.v2", upV2toV3))
	return r
}

func TestRegistryUpcasterChain(t *testing.T) {
	t.Parallel()
	r := personRegistry(t)
	v1 := eventbus.MustEnvelope(context.Background(), personV1{ID: "p1", Name: "Ada Lovelace"})

	ev, err := r.Decode(v1)
	require.NoError(t, err)
	require.Equal(t, personV3{ID: "p1", First: "Ada", Last: "Lovelace", Locale: "en"}, ev)

	got, err := eventbus.DecodeAs[personV3](r, v1)
	require.NoError(t, err)
	require.Equal(t, "Ada", got.First)

	up, err := r.Upcast(v1, "regtest.person.added.v3")
	require.NoError(t, err)
	require.Equal(t, "regtest.person.added.v3", up.EventType)
	require.Equal(t, 3, up.SchemaVersion)
	require.Equal(t, v1.EventID, up.EventID, "upcasting keeps the identity")
	require.Equal(t, "regtest.person.added.v1", v1.EventType, "the original envelope is untouched")

	// The current version decodes directly.
	v3 := eventbus.MustEnvelope(context.Background(), personV3{ID: "p2", First: "Grace", Last: "Hopper", Locale: "us"})
	ev, err = r.Decode(v3)
	require.NoError(t, err)
	require.Equal(t, personV3{ID: "p2", First: "Grace", Last: "Hopper", Locale: "us"}, ev)

	for _, typ := range []string{"regtest.person.added.v1", "regtest.person.added.v2", "regtest.person.added.v3"} {
		require.True(t, r.Known(typ), typ)
	}
	require.False(t, r.Known("regtest.person.added.v4"))
	require.False(t, r.Known("regtest.person.removed.v1"))
}

func TestRegistryRegisterTwiceAndBadType(t *testing.T) {
	t.Parallel()
	r := &eventbus.Registry{}
	require.NoError(t, eventbus.Register[sessionCreated](r))
	require.NoError(t, eventbus.Register[sessionCreated](r), "registering twice is harmless")
	require.ErrorIs(t, eventbus.Register[badType](r), eventbus.ErrInvalidEnvelope)
	require.Panics(t, func() { eventbus.MustRegister[badType](r) })
	require.ErrorIs(t, r.AddUpcaster("no version", upV2toV3), eventbus.ErrInvalidEnvelope)
	require.Error(t, r.AddUpcaster("a.v1", nil))
}

func TestRegistryPermanentErrors(t *testing.T) {
	t.Parallel()
	r := personRegistry(t)
	ctx := context.Background()

	cases := map[string]struct {
		env  eventbus.Envelope
		want error
	}{
		"unknown type": {eventbus.MustEnvelope(ctx, sessionCreated{SessionID: "s"}), eventbus.ErrUnknownEventType},
		"bad payload": {func() eventbus.Envelope {
			e := eventbus.MustEnvelope(ctx, personV3{ID: "p"})
			e.Payload = json.RawMessage(`{"first": 42}`)
			return e
		}(), eventbus.ErrDecode},
		"upcaster fails": {func() eventbus.Envelope {
			e := eventbus.MustEnvelope(ctx, personV1{ID: "p"})
			e.Payload = json.RawMessage(`[1,2,3]`)
			return e
		}(), eventbus.ErrDecode},
		"newer than registered": {func() eventbus.Envelope {
			e := eventbus.MustEnvelope(ctx, personV3{ID: "p"})
			e.EventType, e.SchemaVersion = "regtest.person.added.v4", 4
			return e
		}(), eventbus.ErrUnknownEventType},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := r.Decode(tc.env)
			require.ErrorIs(t, err, tc.want)
			require.True(t, eventbus.IsPermanent(err), "%v must be permanent", err)

			_, err = eventbus.DecodeAs[personV3](r, tc.env)
			require.Error(t, err)
			require.True(t, eventbus.IsPermanent(err), "%v must be permanent", err)
		})
	}

	// The decoder's own error stays reachable through the classification.
	bad := eventbus.MustEnvelope(ctx, personV3{ID: "p"})
	bad.Payload = json.RawMessage(`{"first": 42}`)
	_, err := r.Decode(bad)
	var typeErr *json.UnmarshalTypeError
	require.ErrorAs(t, err, &typeErr)
	_, err = eventbus.DecodeAs[personV3](r, bad)
	require.ErrorAs(t, err, &typeErr)

	// A missing step in the chain is permanent too.
	gap := &eventbus.Registry{}
	require.NoError(t, eventbus.Register[personV3](gap))
	require.NoError(t, gap.AddUpcaster("regtest.person.added.v1", upV1toV2))
	_, err = eventbus.DecodeAs[personV3](gap, eventbus.MustEnvelope(ctx, personV1{ID: "p", Name: "A B"}))
	require.ErrorIs(t, err, eventbus.ErrUnknownEventType)
	require.True(t, eventbus.IsPermanent(err))

	// Asking for a different base type is refused.
	_, err = r.Upcast(eventbus.MustEnvelope(ctx, personV1{}), "session.created.v1")
	require.ErrorIs(t, err, eventbus.ErrUnknownEventType)
}

func TestTypedHandlerDecodes(t *testing.T) {
	t.Parallel()
	r := personRegistry(t)
	var got personV3
	h := eventbus.Typed(r, func(_ context.Context, ev personV3, env eventbus.Envelope) error {
		got = ev
		require.Equal(t, "regtest.person.added.v1", env.EventType, "the raw envelope is passed as delivered")
		return nil
	})
	require.NoError(t, h.Handle(context.Background(), eventbus.MustEnvelope(context.Background(), personV1{ID: "p", Name: "Alan Turing"})))
	require.Equal(t, "Turing", got.Last)

	bad := eventbus.MustEnvelope(context.Background(), personV1{ID: "p"})
	bad.Payload = json.RawMessage(`"x"`)
	err := h.Handle(context.Background(), bad)
	require.True(t, eventbus.IsPermanent(err))
}

// Subscribe[T] uses DefaultRegistry, so this test registers its own
// uniquely named types there.
type subV1 struct {
	ID    string `json:"id"`
	Count int    `json:"count"`
}

func (subV1) EventType() string     { return "regtest.subscribe.counted.v1" }
func (s subV1) AggregateID() string { return s.ID }
func (subV1) AggregateType() string { return "counter" }

type subV2 struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

func (subV2) EventType() string     { return "regtest.subscribe.counted.v2" }
func (s subV2) AggregateID() string { return s.ID }
func (subV2) AggregateType() string { return "counter" }

func TestSubscribeTypedReceivesOlderVersions(t *testing.T) {
	t.Parallel()
	require.NoError(t, eventbus.DefaultRegistry.AddUpcaster("regtest.subscribe.counted.v1", func(p json.RawMessage) (json.RawMessage, error) {
		var in subV1
		if err := json.Unmarshal(p, &in); err != nil {
			return nil, err
		}
		return json.Marshal(subV2{ID: in.ID, Total: in.Count})
	}))

	bus := eventbus.NewInMemoryBus(nil)
	t.Cleanup(func() { _ = bus.Close() })
	ctx := context.Background()

	var got []subV2
	sub, err := eventbus.Subscribe(ctx, bus, "totals", func(_ context.Context, ev subV2, _ eventbus.Envelope) error {
		got = append(got, ev)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, "totals", sub.Name())

	require.NoError(t, eventbus.PublishEvents(ctx, bus, subV1{ID: "a", Count: 3}, subV2{ID: "b", Total: 5}))
	require.NoError(t, eventbus.PublishEvents(ctx, bus, sessionCreated{SessionID: "other type"}))
	require.Equal(t, []subV2{{ID: "a", Total: 3}, {ID: "b", Total: 5}}, got)

	// A payload that does not decode is returned as a permanent error.
	bad := eventbus.MustEnvelope(ctx, subV2{ID: "c"})
	bad.Payload = json.RawMessage(`{"total":"many"}`)
	err = bus.Publish(ctx, bad)
	require.ErrorIs(t, err, eventbus.ErrDecode)
	require.True(t, eventbus.IsPermanent(err))
	var he *eventbus.HandlerError
	require.ErrorAs(t, err, &he)
	require.Equal(t, "totals", he.Handler)

	_, err = eventbus.Subscribe[badType](ctx, bus, "x", func(context.Context, badType, eventbus.Envelope) error { return nil })
	require.ErrorIs(t, err, eventbus.ErrInvalidEnvelope)
	_, err = eventbus.Subscribe[subV2](ctx, bus, "nil", nil)
	require.Error(t, err)
	require.False(t, errors.Is(err, eventbus.ErrClosed))
}
