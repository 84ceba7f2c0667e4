package postgres

import (
	"context"
	"testing"

	ekpg "github.com/choicesherpa/eventkit/adapters/postgres"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/adapters/repotest"
	"github.com/choicesherpa/eventkit/internal/testinfra"
	"github.com/stretchr/testify/require"
)

func TestRepositoryContract(t *testing.T) {
	t.Parallel()
	repotest.Run(t, func(t *testing.T) repotest.Env {
		pool := testinfra.Pool(t)
		ctx := context.Background()
		require.NoError(t, Migrate(ctx, pool))
		require.NoError(t, Migrate(ctx, pool), "migrating twice is a no-op")
		ob, err := ekpg.NewOutbox(pool, &ekpg.OutboxConfig{DisableNotify: true})
		require.NoError(t, err)
		uow, err := ekpg.NewUnitOfWork(pool, ob, nil)
		require.NoError(t, err)
		store, err := NewStore(pool)
		require.NoError(t, err)
		return repotest.Env{Repos: store.Repositories(), UoW: uow}
	})
}
