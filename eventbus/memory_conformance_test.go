package eventbus_test

import (
	"testing"

	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/eventbus/eventbustest"
)

// TestInMemoryConformance runs the conformance suite on the in-memory bus:
// synchronous, not persistent, competing members per name, errors returned
// to the publisher, global order. It is not parallel, so the suite's
// goroutine check sees only its own goroutines.
func TestInMemoryConformance(t *testing.T) {
	eventbustest.Run(t, func(*testing.T) eventbus.Bus {
		return eventbus.NewInMemoryBus(&eventbus.InMemoryConfig{History: -1})
	}, eventbustest.Features{
		ConsumerGroups:  true,
		GuaranteedOrder: true,
		Scale:           1, // full RELIABILITY.md sizes: cheap in memory
	})
}
