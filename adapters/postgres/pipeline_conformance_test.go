package postgres_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/adapters/postgres"
	"github.com/choicesherpa/eventkit/adapters/redisstream"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/eventbus/eventbustest"
	"github.com/choicesherpa/eventkit/internal/testinfra"
	"github.com/choicesherpa/eventkit/outbox"
)

// pipelineBus is the whole durable path as one eventbus.Bus: Publish writes
// the envelopes to the outbox through a unit of work (one transaction), this
// bus's relay moves them to Redis Streams, and subscribers consume from
// there. Several pipelineBuses of one test share the schema and the stream,
// as processes would: their relays compete for rows.
type pipelineBus struct {
	uow   *postgres.UnitOfWork
	ob    *postgres.Outbox
	relay *outbox.Relay
	bus   *redisstream.Bus

	mu     sync.Mutex
	closed bool
}

func (p *pipelineBus) Publish(ctx context.Context, envs ...eventbus.Envelope) error {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return eventbus.ErrClosed
	}
	return p.uow.Do(ctx, func(ctx context.Context) error { return outbox.RaiseEnvelopes(ctx, envs...) })
}

func (p *pipelineBus) Subscribe(ctx context.Context, name string, h eventbus.Handler, types ...string) (eventbus.Subscription, error) {
	return p.bus.Subscribe(ctx, name, h, types...)
}

func (p *pipelineBus) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := p.relay.Stop(ctx)
	p.ob.Close()
	return errors.Join(err, p.bus.Close())
}

func pipelineFactory(orderByAggregate bool) eventbustest.Factory {
	type shared struct {
		schema string
		pool   *pgxpool.Pool
		rdb    *redis.Client
		stream string
		ch     string
	}
	var mu sync.Mutex
	byTest := map[*testing.T]*shared{}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	return func(t *testing.T) eventbus.Bus {
		mu.Lock()
		s := byTest[t]
		if s == nil {
			b := setup(t)
			rdb, prefix := testinfra.Redis(t)
			s = &shared{schema: b.schema, pool: b.pool, rdb: rdb, stream: prefix + "events", ch: b.channel}
			byTest[t] = s
			t.Cleanup(func() { mu.Lock(); delete(byTest, t); mu.Unlock() })
		}
		mu.Unlock()
		ob, err := postgres.NewOutbox(s.pool, &postgres.OutboxConfig{Schema: s.schema, NotifyChannel: s.ch, Logger: quiet})
		require.NoError(t, err)
		uow, err := postgres.NewUnitOfWork(s.pool, ob, nil)
		require.NoError(t, err)
		bus, err := redisstream.New(s.rdb, &redisstream.Config{
			Stream:           s.stream,
			Consumer:         testinfra.UniqueName("c"),
			Block:            100 * time.Millisecond,
			HandlerTimeout:   time.Second,
			MinIdle:          2500 * time.Millisecond,
			ClaimInterval:    100 * time.Millisecond,
			Retry:            eventbus.Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond},
			MaxDeliveries:    10,
			OrderByAggregate: orderByAggregate,
			ShutdownTimeout:  5 * time.Second,
			WriteTimeout:     3 * time.Second,
			Logger:           quiet,
		})
		require.NoError(t, err)
		relay, err := outbox.NewRelay(outbox.RelayConfig{Store: ob, Publisher: bus, PollInterval: 200 * time.Millisecond, Logger: quiet})
		require.NoError(t, err)
		require.NoError(t, relay.Start(context.Background()))
		return &pipelineBus{uow: uow, ob: ob, relay: relay, bus: bus}
	}
}

// The conformance suite on the durable pipeline: outbox (PostgreSQL) ->
// relays -> Redis Streams consumer groups, several buses as several
// processes.
func TestConformanceOutboxToRedis(t *testing.T) {
	// Not parallel: the suite checks for leaked goroutines after each
	// scenario, which other tests' goroutines would trip.
	eventbustest.Run(t, pipelineFactory(false), pipelineFeatures(false))
}

// With OrderByAggregate on the consumers, per-aggregate order holds end to
// end: the relays keep it from the outbox to the stream.
func TestConformanceOutboxToRedisOrderedPerAggregate(t *testing.T) {
	// Not parallel, as above.
	eventbustest.Run(t, pipelineFactory(true), pipelineFeatures(true))
}

// pipelineFeatures is what the durable pipeline promises.
func pipelineFeatures(ordered bool) eventbustest.Features {
	return eventbustest.Features{
		Async:               true,
		Persistent:          true,
		MultiInstance:       true,
		ConsumerGroups:      true,
		Redelivery:          true,
		MaxDeliveries:       10,
		OrderedPerAggregate: ordered,
		Timeout:             30 * time.Second,
	}
}
