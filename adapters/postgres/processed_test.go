package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/adapters/postgres"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/idempotency"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

type itemCounted struct {
	Cart  string `json:"cart"`
	Total int    `json:"total"`
}

func (itemCounted) EventType() string     { return "cart.item_counted.v1" }
func (e itemCounted) AggregateID() string { return e.Cart }
func (itemCounted) AggregateType() string { return "cart" }

// effects is the business table a handler writes to.
func createEffects(t *testing.T, b *bundle) {
	t.Helper()
	_, err := b.pool.Exec(context.Background(), `CREATE TABLE effects (handler text NOT NULL, event_id uuid NOT NULL, n int NOT NULL DEFAULT 1)`)
	require.NoError(t, err)
}

func (b *bundle) effects(t testing.TB, handler string) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT count(*) FROM effects WHERE handler = $1 OR $1 = ''`, handler).Scan(&n))
	return n
}

func (b *bundle) markers(t testing.TB, handler string) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT count(*) FROM processed_events WHERE handler_name = $1 OR $1 = ''`, handler).Scan(&n))
	return n
}

// requireEffectsOnce is the closing invariant: count(effects) = count(markers).
func (b *bundle) requireEffectsOnce(t testing.TB) {
	t.Helper()
	require.Equal(t, b.markers(t, ""), b.effects(t, ""), "count(effects) = count(markers)")
	var dups int
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT count(*) FROM (SELECT 1 FROM effects GROUP BY handler, event_id HAVING count(*) > 1) d`).Scan(&dups))
	require.Equal(t, 0, dups, "duplicate effects")
}

func effectHandler(raise bool) eventbus.Handler {
	return postgres.TxHandler(func(ctx context.Context, tx pgx.Tx, env eventbus.Envelope) error {
		h, _ := ctx.Value(handlerNameKey{}).(string)
		if _, err := tx.Exec(ctx, `INSERT INTO effects (handler, event_id) VALUES ($1, $2)`, h, env.EventID.String()); err != nil {
			return err
		}
		if raise {
			return outbox.Raise(ctx, itemCounted{Cart: env.AggregateID, Total: 1})
		}
		return nil
	})
}

type handlerNameKey struct{}

func named(name string, h eventbus.Handler) eventbus.Handler {
	return eventbus.HandlerFunc(func(ctx context.Context, env eventbus.Envelope) error {
		return h.Handle(context.WithValue(ctx, handlerNameKey{}, name), env)
	})
}

// The seed's idempotency integration test, end to end: a command writes an
// event through the unit of work, the relay publishes it, an idempotent
// handler applies its effect and raises a follow-up event in the same
// transaction; a redelivery is acknowledged and skipped; the follow-up event
// is relayed too and carries the causation chain.
func TestIdempotencyIntegration(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	createEffects(t, b)
	store, err := postgres.NewProcessedEventStore(b.pool, &postgres.ProcessedEventStoreConfig{Schema: b.schema, Outbox: b.ob})
	require.NoError(t, err)
	bus := eventbus.NewInMemoryBus(nil)
	var dups atomic.Int32
	h := idempotency.Wrap(named("counter", effectHandler(true)), store, "counter")
	h.OnDuplicate = func(context.Context, eventbus.Envelope) { dups.Add(1) }
	_, err = bus.Subscribe(ctx, "counter", h, itemAdded{}.EventType())
	require.NoError(t, err)
	startRelay(t, outbox.RelayConfig{Store: b.ob, Publisher: bus, PollInterval: 100 * time.Millisecond})

	uow, err := postgres.NewUnitOfWork(b.pool, b.ob, nil)
	require.NoError(t, err)
	cmdCtx := eventbus.WithMetadata(ctx, eventbus.Metadata{CorrelationID: "req-42"})
	require.NoError(t, uow.Do(cmdCtx, func(ctx context.Context) error {
		return outbox.Raise(ctx, itemAdded{Cart: "c1", Seq: 1})
	}))
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	follow, err := bus.WaitForCount(wctx, itemCounted{}.EventType(), 1)
	require.NoError(t, err)
	orig := bus.EventsOfType(itemAdded{}.EventType())
	require.Len(t, orig, 1)
	require.Equal(t, orig[0].EventID.String(), follow[0].Metadata.CausationID)
	require.Equal(t, "req-42", follow[0].Metadata.CorrelationID)

	// Redeliver the same event: detected, acknowledged, skipped.
	for range 3 {
		require.NoError(t, h.Handle(ctx, orig[0]))
	}
	require.EqualValues(t, 3, dups.Load())
	require.Equal(t, 1, b.effects(t, "counter"))
	ok, err := store.IsProcessed(ctx, "counter", orig[0].EventID)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 2, b.count(t, "true"), "the event and exactly one follow-up")
	b.requireDrained(t)
	b.requireEffectsOnce(t)
}

// I1: the same event delivered 5x concurrently to each of two handlers.
func TestI1ConcurrentDuplicatesPerHandler(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	createEffects(t, b)
	store, err := postgres.NewProcessedEventStore(b.pool, &postgres.ProcessedEventStoreConfig{Schema: b.schema, Outbox: b.ob})
	require.NoError(t, err)
	slow := func(name string) eventbus.Handler {
		inner := effectHandler(false)
		return named(name, eventbus.HandlerFunc(func(ctx context.Context, env eventbus.Envelope) error {
			time.Sleep(20 * time.Millisecond) // keep the first delivery in flight
			return inner.Handle(ctx, env)
		}))
	}
	hs := []*idempotency.Handler{idempotency.Wrap(slow("H1"), store, "H1"), idempotency.Wrap(slow("H2"), store, "H2")}
	for round := range 10 {
		env := newEnv("i1", round)
		var wg sync.WaitGroup
		errs := make(chan error, 10)
		for _, h := range hs {
			for range 5 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- h.Handle(ctx, env)
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err, "every delivery is acked")
		}
	}
	require.Equal(t, 10, b.effects(t, "H1"))
	require.Equal(t, 10, b.effects(t, "H2"))
	require.Equal(t, 10, b.markers(t, "H1"))
	require.Equal(t, 10, b.markers(t, "H2"))
	b.requireEffectsOnce(t)
}

// I2: (a) a crash after COMMIT and before the ack: the redelivery is a
// detected duplicate. (b) a crash after the effect SQL and before COMMIT
// (the handler's connection is killed): nothing is applied, and the
// redelivery applies it once.
func TestI2CrashAroundCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	createEffects(t, b)
	store, err := postgres.NewProcessedEventStore(b.pool, &postgres.ProcessedEventStoreConfig{Schema: b.schema, Outbox: b.ob})
	require.NoError(t, err)

	// (a)
	env := newEnv("i2a", 0)
	h := idempotency.Wrap(named("H", effectHandler(true)), store, "H")
	require.NoError(t, h.Handle(ctx, env)) // committed; the "ack" is lost
	dup, err := store.Process(ctx, "H", env.EventID, func(context.Context) error { t.Fatal("must not run"); return nil })
	require.NoError(t, err)
	require.True(t, dup)
	require.Equal(t, 1, b.effects(t, "H"))

	// (b)
	env = newEnv("i2b", 0)
	kill := true
	crashing := idempotency.Wrap(named("K", postgres.TxHandler(func(ctx context.Context, tx pgx.Tx, env eventbus.Envelope) error {
		if _, err := tx.Exec(ctx, `INSERT INTO effects (handler, event_id) VALUES ('K', $1)`, env.EventID.String()); err != nil {
			return err
		}
		if err := outbox.Raise(ctx, itemCounted{Cart: env.AggregateID}); err != nil {
			return err
		}
		if kill {
			// The process dies here: its connection goes away mid-transaction.
			_, _ = b.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, tx.Conn().PgConn().PID())
			return errors.New("crashed")
		}
		return nil
	})), store, "K")
	require.Error(t, crashing.Handle(ctx, env))
	require.Equal(t, 0, b.effects(t, "K"), "no effect after a crash before commit")
	require.Equal(t, 0, b.markers(t, "K"))
	require.Equal(t, 0, b.count(t, "aggregate_id = 'i2b'"), "no follow-up event either")
	kill = false
	require.NoError(t, crashing.Handle(ctx, env))
	require.NoError(t, crashing.Handle(ctx, env))
	require.Equal(t, 1, b.effects(t, "K"))
	require.Equal(t, 1, b.count(t, "aggregate_id = 'i2b'"))
	b.requireEffectsOnce(t)
}

// I3: errors injected at random points inside the handler transaction:
// count(effects) = count(markers) at every checkpoint, all effects at the
// end, and exactly one follow-up event per effect.
func TestI3EffectAndMarkerAtomic(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	createEffects(t, b)
	store, err := postgres.NewProcessedEventStore(b.pool, &postgres.ProcessedEventStoreConfig{Schema: b.schema, Outbox: b.ob})
	require.NoError(t, err)
	n := size(1000)
	injected := errors.New("injected")
	h := idempotency.Wrap(postgres.TxHandler(func(ctx context.Context, tx pgx.Tx, env eventbus.Envelope) error {
		if rand.IntN(4) == 0 {
			return injected
		}
		if _, err := tx.Exec(ctx, `INSERT INTO effects (handler, event_id) VALUES ('H', $1)`, env.EventID.String()); err != nil {
			return err
		}
		if rand.IntN(4) == 0 {
			return injected
		}
		if err := outbox.Raise(ctx, itemCounted{Cart: env.AggregateID}); err != nil {
			return err
		}
		if rand.IntN(4) == 0 {
			panic(injected) // recovered below, like the Recover middleware
		}
		return nil
	}), store, "H")
	safe := eventbus.Chain(h, eventbus.Recover())
	envs := make([]eventbus.Envelope, n)
	for i := range envs {
		envs[i] = newEnv(fmt.Sprintf("i3-%d", i), 0)
	}
	pending := envs
	for round := 0; len(pending) > 0; round++ {
		require.Less(t, round, 100)
		var next []eventbus.Envelope
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 6)
		for _, env := range pending {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				// Every delivery is delivered twice: duplicates must be no-ops.
				if err := safe.Handle(ctx, env); err != nil {
					mu.Lock()
					next = append(next, env)
					mu.Unlock()
					return
				}
				require.NoError(t, safe.Handle(ctx, env))
			}()
		}
		wg.Wait()
		b.requireEffectsOnce(t) // checkpoint
		pending = next
	}
	require.Equal(t, n, b.effects(t, "H"))
	require.Equal(t, n, b.count(t, "event_type = 'cart.item_counted.v1'"))
	b.requireEffectsOnce(t)
}

// I4: the dedup window: markers younger than W survive cleanup (a
// redelivery inside the window is deduplicated), older ones are deleted in
// batches; cleanup skips markers locked by a running handler instead of
// waiting on them. After W a redelivery runs the handler again (documented).
func TestI4RetentionWindow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	createEffects(t, b)
	store, err := postgres.NewProcessedEventStore(b.pool, &postgres.ProcessedEventStoreConfig{Schema: b.schema, Outbox: b.ob})
	require.NoError(t, err)
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	const w = 7 * 24 * time.Hour
	// 250 old markers, 1 just inside the window, 1 held by a "running handler".
	_, err = b.pool.Exec(ctx, `INSERT INTO processed_events (handler_name, event_id, processed_at)
SELECT 'H', gen_random_uuid(), $1::timestamptz - interval '1 hour' * g FROM generate_series(1, 250) g`, now.Add(-w))
	require.NoError(t, err)
	inside := newEnv("inside", 0)
	_, err = b.pool.Exec(ctx, `INSERT INTO processed_events VALUES ('H', $1, $2)`, inside.EventID.String(), now.Add(-w+time.Second))
	require.NoError(t, err)
	lockedEnv := newEnv("locked", 0)
	_, err = b.pool.Exec(ctx, `INSERT INTO processed_events VALUES ('H', $1, $2)`, lockedEnv.EventID.String(), now.Add(-2*w))
	require.NoError(t, err)
	holder, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	_, err = holder.Exec(ctx, `SELECT 1 FROM processed_events WHERE event_id = $1 FOR UPDATE`, lockedEnv.EventID.String())
	require.NoError(t, err)

	var batches []int64
	c, err := outbox.NewCleanup(outbox.CleanupConfig{Store: b.ob, Markers: countingPruner{store, &batches}, MarkerRetention: w, BatchSize: 100, Now: func() time.Time { return now }})
	require.NoError(t, err)
	t0 := time.Now()
	res, err := c.RunOnce(ctx)
	require.NoError(t, err)
	require.Less(t, time.Since(t0), 3*time.Second, "cleanup does not wait on a handler's lock")
	require.True(t, res.Ran)
	require.EqualValues(t, 250, res.Markers)
	require.Equal(t, []int64{100, 100, 50}, batches, "bounded batches")
	require.NoError(t, holder.Rollback(ctx))
	require.Equal(t, 2, b.markers(t, "H"), "inside-window and locked markers survive")

	// A redelivery at W-ε is deduplicated.
	dup, err := store.Process(ctx, "H", inside.EventID, func(context.Context) error { return nil })
	require.NoError(t, err)
	require.True(t, dup)
	// After W the marker is gone and the handler runs again: the documented
	// behaviour (choose W longer than any redelivery path).
	batches = nil
	later, err := outbox.NewCleanup(outbox.CleanupConfig{Store: b.ob, Markers: countingPruner{store, &batches}, MarkerRetention: w, BatchSize: 100,
		Now: func() time.Time { return now.Add(2 * time.Second) }})
	require.NoError(t, err)
	res, err = later.RunOnce(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, res.Markers)
	dup, err = store.Process(ctx, "H", inside.EventID, func(context.Context) error { return nil })
	require.NoError(t, err)
	require.False(t, dup)
}

type countingPruner struct {
	s       *postgres.ProcessedEventStore
	batches *[]int64
}

func (p countingPruner) DeleteProcessedBefore(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	n, err := p.s.DeleteProcessedBefore(ctx, cutoff, limit)
	*p.batches = append(*p.batches, n)
	return n, err
}

// Process joins a transaction already in ctx (a savepoint): a duplicate or
// a failure does not spoil the caller's transaction.
func TestProcessJoinsCallerTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	createEffects(t, b)
	store, err := postgres.NewProcessedEventStore(b.pool, &postgres.ProcessedEventStoreConfig{Schema: b.schema, Outbox: b.ob})
	require.NoError(t, err)
	env := newEnv("j", 0)
	err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		tctx := postgres.WithTx(ctx, tx)
		h := idempotency.Wrap(named("J", effectHandler(true)), store, "J")
		if err := h.Handle(tctx, env); err != nil {
			return err
		}
		if err := h.Handle(tctx, env); err != nil { // duplicate inside the same tx
			return err
		}
		dup, err := store.Process(tctx, "J2", env.EventID, func(context.Context) error { return errors.New("fails") })
		require.False(t, dup)
		require.Error(t, err)
		_, err = tx.Exec(ctx, `INSERT INTO effects (handler, event_id) VALUES ('after', $1)`, env.EventID.String())
		return err
	})
	require.NoError(t, err)
	require.Equal(t, 1, b.effects(t, "J"))
	require.Equal(t, 1, b.effects(t, "after"))
	require.Equal(t, 0, b.markers(t, "J2"))
	require.Equal(t, 1, b.count(t, "event_type = 'cart.item_counted.v1'"))
}
