package memory

import (
	"testing"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/adapters/repotest"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/stretchr/testify/require"
)

func TestRepositoryContract(t *testing.T) {
	t.Parallel()
	repotest.Run(t, func(t *testing.T) repotest.Env {
		store := NewStore()
		uow, err := NewUnitOfWork(store, eventbus.NewInMemoryBus(nil), nil)
		require.NoError(t, err)
		return repotest.Env{Repos: store.Repositories(), UoW: uow}
	})
}
