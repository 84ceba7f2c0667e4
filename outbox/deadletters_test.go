package outbox_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/deadletter"
	"github.com/choicesherpa/eventkit/outbox"
)

type replayerFunc func(context.Context, deadletter.Record) error

func (f replayerFunc) Replay(ctx context.Context, rec deadletter.Record) error { return f(ctx, rec) }

// Records of other handlers go to Next (or fail as unknown); an outbox
// record without an envelope cannot be re-armed. (Re-arming itself is
// tested against PostgreSQL in adapters/postgres.)
func TestRearmReplayerRoutes(t *testing.T) {
	ctx := context.Background()
	bus := deadletter.Record{Handler: "billing"}
	require.ErrorIs(t, outbox.RearmReplayer{}.Replay(ctx, bus), deadletter.ErrUnknownHandler)
	var got []string
	next := replayerFunc(func(_ context.Context, rec deadletter.Record) error {
		got = append(got, rec.Handler)
		return nil
	})
	require.NoError(t, outbox.RearmReplayer{Next: next}.Replay(ctx, bus))
	require.Equal(t, []string{"billing"}, got)
	require.ErrorIs(t, outbox.RearmReplayer{Next: next}.Replay(ctx, deadletter.Record{Handler: outbox.QuarantineHandler}), deadletter.ErrNoEnvelope)
	require.Equal(t, []string{"billing"}, got, "outbox records never reach Next")
}
