package eventbus_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/eventbus"
)

func TestMetadataFromCommandContext(t *testing.T) {
	t.Parallel()
	md := eventbus.Metadata{CorrelationID: "req-1", UserID: "user-7", TraceParent: "00-aa-bb-01"}
	ctx := eventbus.WithMetadata(context.Background(), md)

	require.Equal(t, md, eventbus.MetadataFromContext(ctx))
	env := eventbus.MustEnvelope(ctx, sessionCreated{SessionID: "s"})
	require.Equal(t, md, env.Metadata, "a command's metadata is stamped on the events it raises")
	_, ok := eventbus.CausingEvent(ctx)
	require.False(t, ok, "a command has no causing event")

	// Other context values still resolve through the metadata context.
	type k struct{}
	ctx2 := eventbus.WithMetadata(context.WithValue(context.Background(), k{}, "v"), md)
	require.Equal(t, "v", ctx2.Value(k{}))
	require.Equal(t, eventbus.Metadata{}, eventbus.MetadataFromContext(context.Background()))
}

func TestContextWithEventSetsCausation(t *testing.T) {
	t.Parallel()
	cmdMD := eventbus.Metadata{CorrelationID: "req-1", UserID: "user-7", TraceParent: "00-aa-bb-01"}
	consumed := eventbus.MustEnvelope(eventbus.WithMetadata(context.Background(), cmdMD), sessionCreated{SessionID: "s"})

	hctx := eventbus.ContextWithEvent(context.Background(), &consumed)
	follow := eventbus.MustEnvelope(hctx, sessionRenamed{SessionID: "s"})

	require.Equal(t, consumed.EventID.String(), follow.Metadata.CausationID)
	require.Equal(t, "req-1", follow.Metadata.CorrelationID, "correlation carries over")
	require.Equal(t, "user-7", follow.Metadata.UserID)
	require.Equal(t, "00-aa-bb-01", follow.Metadata.TraceParent)

	id, ok := eventbus.CausingEvent(hctx)
	require.True(t, ok)
	require.Equal(t, consumed.EventID, id)

	// A chain of three: correlation stays the request's, causation is the direct parent.
	hctx2 := eventbus.ContextWithEvent(context.Background(), &follow)
	third := eventbus.MustEnvelope(hctx2, sessionCreated{SessionID: "s"})
	require.Equal(t, follow.EventID.String(), third.Metadata.CausationID)
	require.Equal(t, "req-1", third.Metadata.CorrelationID)
}

func TestCorrelationDefaultsToConsumedEvent(t *testing.T) {
	t.Parallel()
	consumed := eventbus.MustEnvelope(context.Background(), sessionCreated{SessionID: "s"})
	require.Empty(t, consumed.Metadata.CorrelationID)

	follow := eventbus.MustEnvelope(eventbus.ContextWithEvent(context.Background(), &consumed), sessionRenamed{SessionID: "s"})
	require.Equal(t, consumed.EventID.String(), follow.Metadata.CausationID)
	require.Equal(t, consumed.EventID.String(), follow.Metadata.CorrelationID,
		"an event with no correlation starts one: its own id")
	require.Empty(t, follow.Metadata.UserID)
}

func TestContextWithEventInsideBusHandler(t *testing.T) {
	t.Parallel()
	bus := eventbus.NewInMemoryBus(nil)
	t.Cleanup(func() { _ = bus.Close() })
	ctx := context.Background()

	_, err := bus.Subscribe(ctx, "renamer", eventbus.HandlerFunc(func(ctx context.Context, env eventbus.Envelope) error {
		return eventbus.PublishEvents(ctx, bus, sessionRenamed{SessionID: env.AggregateID})
	}), "session.created.v1")
	require.NoError(t, err)

	cmd := eventbus.WithMetadata(ctx, eventbus.Metadata{CorrelationID: "req-9", UserID: "u"})
	require.NoError(t, eventbus.PublishEvents(cmd, bus, sessionCreated{SessionID: "s"}))

	created := bus.EventsOfType("session.created.v1")
	renamed := bus.EventsOfType("session.renamed.v1")
	require.Len(t, created, 1)
	require.Len(t, renamed, 1)
	require.Equal(t, created[0].EventID.String(), renamed[0].Metadata.CausationID)
	require.Equal(t, "req-9", renamed[0].Metadata.CorrelationID)
	require.Equal(t, "u", renamed[0].Metadata.UserID)
}

// An EventContext kept in a bus's own storage is the context
// ContextWithEvent returns, and resetting it allocates nothing.
func TestEventContextMatchesContextWithEvent(t *testing.T) {
	cmdMD := eventbus.Metadata{CorrelationID: "req-1", UserID: "user-7", TraceParent: "00-aa-bb-01"}
	consumed := eventbus.MustEnvelope(eventbus.WithMetadata(context.Background(), cmdMD), sessionCreated{SessionID: "s"})
	type k struct{}
	parent := context.WithValue(context.Background(), k{}, "v")

	var ec eventbus.EventContext
	ec.Reset(parent, &consumed)
	want := eventbus.ContextWithEvent(parent, &consumed)
	require.Equal(t, eventbus.MetadataFromContext(want), eventbus.MetadataFromContext(&ec))
	id, ok := eventbus.CausingEvent(&ec)
	require.True(t, ok)
	require.Equal(t, consumed.EventID, id)
	require.Equal(t, "v", ec.Value(k{}), "the parent's values resolve through it")
	follow := eventbus.MustEnvelope(&ec, sessionRenamed{SessionID: "s"})
	require.Equal(t, consumed.EventID.String(), follow.Metadata.CausationID)

	other := eventbus.MustEnvelope(context.Background(), sessionCreated{SessionID: "t"})
	allocs := testing.AllocsPerRun(100, func() { ec.Reset(parent, &other) })
	require.Zero(t, allocs)
	id, _ = eventbus.CausingEvent(&ec)
	require.Equal(t, other.EventID, id, "Reset replaces the event")
}
