package postgres_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/adapters/redisstream"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/internal/faultproxy"
	"github.com/choicesherpa/eventkit/internal/testinfra"
	"github.com/choicesherpa/eventkit/outbox"
)

// O5 against the real broker: the relay publishes to the Redis bus through
// a fault proxy that blackholes Redis while the business writes commit. No
// write fails, the relay backs off to at most 2 batch attempts per second,
// then the backlog drains into the stream with nothing lost and the lag
// returns to 0. (TestO5BrokerOutageBacklog covers the same with a
// publisher that refuses at once.)
func TestO5RedisOutageThroughProxy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	outage := 3 * time.Second
	if full() {
		outage = 30 * time.Second
	}
	writes := size(3000)

	rdb, prefix := testinfra.Redis(t)
	opts := *rdb.Options()
	proxy, err := faultproxy.New(opts.Addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	opts.Addr = proxy.Addr()
	opts.ReadTimeout, opts.WriteTimeout, opts.DialTimeout = 500*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond
	opts.MaxRetries = -1
	client := redis.NewClient(&opts)
	t.Cleanup(func() { _ = client.Close() })
	stream := prefix + "o5"
	bus, err := redisstream.New(client, &redisstream.Config{Stream: stream, WriteTimeout: time.Second,
		ShutdownTimeout: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { _ = bus.Close() })

	var down atomic.Bool
	var mu sync.Mutex
	var batchCalls []time.Time
	pub := publisherFunc(func(ctx context.Context, envs ...eventbus.Envelope) error {
		if down.Load() && len(envs) > 1 {
			mu.Lock()
			batchCalls = append(batchCalls, time.Now())
			mu.Unlock()
		}
		return bus.Publish(ctx, envs...)
	})
	down.Store(true)
	proxy.Blackhole(true)
	relay := startRelay(t, outbox.RelayConfig{Store: b.ob, Publisher: pub, PollInterval: 200 * time.Millisecond, MaxAttempts: 100,
		PublishTimeout: 2 * time.Second, RetryBackoff: eventbus.Backoff{Initial: 200 * time.Millisecond, Max: time.Second}})
	start := b.writeSpread(t, "o5r", writes, outage) // never fails: Redis is not in the write path
	mu.Lock()
	rate := lateRate(batchCalls, start, outage)
	t.Logf("outage %v: %d batch attempts in all, %.1f/s in its second half", outage, len(batchCalls), rate)
	mu.Unlock()
	require.LessOrEqual(t, rate, 2.0, "relay backs off during the outage")
	n, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	require.Zero(t, n, "nothing reached Redis during the outage")
	lag, err := relay.Lag(ctx)
	require.NoError(t, err)
	require.Greater(t, lag, time.Duration(0), "the backlog shows as lag")

	down.Store(false)
	proxy.Blackhole(false)
	b.requireDrainedWithin(t, 60*time.Second)
	seen := map[string]bool{}
	entries, err := rdb.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	for _, e := range entries {
		seen[e.Values[redisstream.FieldID].(string)] = true
	}
	t.Logf("%d events in %d stream entries", len(seen), len(entries))
	require.Len(t, seen, writes, "every event in the stream, 0 lost")
	require.Eventually(t, func() bool {
		lag, err := relay.Lag(ctx)
		return err == nil && lag == 0
	}, 10*time.Second, 50*time.Millisecond, "lag returns to 0")
}
