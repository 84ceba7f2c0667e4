package wiring

import (
	"context"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/adapters/redisstream"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/internal/testinfra"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func init() {
	modes["postgres+redis"] = newRedisHarness
}

// newRedisHarness wires Postgres + outbox + relay onto the Redis Streams
// bus. A "recorder" consumer group copies every delivered event into an
// in-memory bus the test watches.
func newRedisHarness(t *testing.T) *harness {
	schema, pool := testinfra.Schema(t)
	rdb, prefix := testinfra.Redis(t)
	rbus, err := redisstream.New(rdb, &redisstream.Config{
		Stream: prefix + "{cs}:events", Consumer: "c-" + uuid.NewString()[:8], Block: 100 * time.Millisecond,
		OrderByAggregate: true, ShutdownTimeout: 5 * time.Second,
		Retry: eventbus.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Multiplier: 2},
	})
	require.NoError(t, err)
	recorder := eventbus.NewInMemoryBus(nil)
	sub, err := rbus.Subscribe(context.Background(), "recorder", eventbus.HandlerFunc(func(ctx context.Context, env eventbus.Envelope) error {
		return recorder.Publish(ctx, env)
	}))
	require.NoError(t, err)
	a, err := Build(context.Background(), Config{
		Pool: pool, Bus: rbus, NotifyChannel: schema, RelayPollInterval: 20 * time.Millisecond,
		RelayRetryBackoff: eventbus.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Multiplier: 2},
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, a.Close())
		require.NoError(t, sub.Close())
		require.NoError(t, rbus.Close())
		require.NoError(t, recorder.Close())
	})
	h := &harness{t: t, app: a, bus: recorder, pub: rbus, user: "user-" + uuid.NewString()[:8], async: true}
	h.drained = func() bool {
		st, err := rbus.Stats(context.Background())
		require.NoError(t, err)
		for _, s := range st.Streams {
			for _, g := range s.Groups {
				if g.Pending != 0 || g.Lag != 0 {
					return false
				}
			}
		}
		return true
	}
	return h
}
