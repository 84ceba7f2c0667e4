package redisstream

import (
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/eventbus/eventbustest"
	"github.com/choicesherpa/eventkit/internal/testinfra"
)

// conformanceFactory opens buses that share one stream per test (several
// buses = several processes), each with its own consumer name.
func conformanceFactory(tune func(*Config)) eventbustest.Factory {
	type shared struct {
		rdb    *redis.Client
		stream string
	}
	var mu sync.Mutex
	byTest := map[*testing.T]*shared{}
	return func(t *testing.T) eventbus.Bus {
		mu.Lock()
		s := byTest[t]
		if s == nil {
			rdb, prefix := testinfra.Redis(t)
			s = &shared{rdb: rdb, stream: prefix + "events"}
			byTest[t] = s
			t.Cleanup(func() { mu.Lock(); delete(byTest, t); mu.Unlock() })
		}
		mu.Unlock()
		c := fastConfig(s.stream)
		c.MaxDeliveries = 10
		if tune != nil {
			tune(c)
		}
		b, err := New(s.rdb, c)
		require.NoError(t, err)
		return b
	}
}

func TestConformance(t *testing.T) {
	eventbustest.Run(t, conformanceFactory(nil), eventbustest.Features{
		Async:          true,
		Persistent:     true,
		MultiInstance:  true,
		ConsumerGroups: true,
		Redelivery:     true,
		MaxDeliveries:  10,
		Timeout:        20 * time.Second,
	})
}

func TestConformanceOrderedPerAggregate(t *testing.T) {
	eventbustest.Run(t, conformanceFactory(func(c *Config) { c.OrderByAggregate = true }), eventbustest.Features{
		Async:               true,
		Persistent:          true,
		MultiInstance:       true,
		ConsumerGroups:      true,
		Redelivery:          true,
		MaxDeliveries:       10,
		OrderedPerAggregate: true,
		Timeout:             20 * time.Second,
	})
}
