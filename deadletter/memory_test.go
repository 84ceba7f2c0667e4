package deadletter_test

import (
	"testing"

	"github.com/choicesherpa/eventkit/deadletter"
	"github.com/choicesherpa/eventkit/deadletter/deadlettertest"
)

func TestMemoryStoreConformance(t *testing.T) {
	t.Parallel()
	deadlettertest.RunStore(t, func(t *testing.T) deadletter.Store { return deadletter.NewMemoryStore(nil) })
}
