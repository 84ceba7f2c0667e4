package wiring

import (
	"context"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/internal/testinfra"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func init() {
	modes["postgres"] = newPostgresHarness
}

// newPostgresHarness wires Postgres repositories + outbox + relay onto an
// in-memory bus (so the test can watch what the relay published), in a
// schema of its own.
func newPostgresHarness(t *testing.T) *harness {
	schema, pool := testinfra.Schema(t)
	bus := eventbus.NewInMemoryBus(nil)
	a, err := Build(context.Background(), Config{
		Pool: pool, Bus: bus, NotifyChannel: schema, RelayPollInterval: 20 * time.Millisecond,
		RelayRetryBackoff: eventbus.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Multiplier: 2},
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, a.Close())
		require.NoError(t, bus.Close())
	})
	return &harness{t: t, app: a, bus: bus, user: "user-" + uuid.NewString()[:8], async: true}
}
