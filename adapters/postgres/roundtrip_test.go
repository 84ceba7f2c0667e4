package postgres_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/adapters/postgres"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/internal/testinfra"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// tripCounter counts the exchanges pgx makes with the server: every query
// (BEGIN and COMMIT included) and every batch is one round trip once the
// statements are in pgx's cache.
type tripCounter struct{ n atomic.Int64 }

func (c *tripCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *tripCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *tripCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *tripCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *tripCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// countingPool is a one-connection pool on b's schema whose round trips are
// counted (one connection, so statement caches stay warm between calls).
func countingPool(t *testing.T, b *bundle) (*pgxpool.Pool, *tripCounter) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testinfra.PostgresURL(t))
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["search_path"] = b.schema
	cfg.MaxConns = 1
	tc := &tripCounter{}
	cfg.ConnConfig.Tracer = tc
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool, tc
}

// trips runs fn twice (the first call warms pgx's statement cache) and
// returns the round trips of the second call.
func trips(t *testing.T, tc *tripCounter, fn func(i int) error) int64 {
	t.Helper()
	require.NoError(t, fn(0))
	before := tc.n.Load()
	require.NoError(t, fn(1))
	return tc.n.Load() - before
}

// The outbox costs the unit of work no round trip (its INSERT rides with
// COMMIT), and the processed-events marker costs the idempotent handler
// none (it rides with BEGIN): both are as many round trips as the same
// transaction without them.
func TestOutboxAndMarkerCostNoRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	createEffects(t, b)
	ctx := context.Background()
	_, err := b.pool.Exec(ctx, `CREATE TABLE biz (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY)`)
	require.NoError(t, err)
	pool, tc := countingPool(t, b)
	ob, err := postgres.NewOutbox(pool, &postgres.OutboxConfig{Schema: b.schema, NotifyChannel: b.channel, DisableNotify: true})
	require.NoError(t, err)
	t.Cleanup(ob.Close)
	uow, err := postgres.NewUnitOfWork(pool, ob, nil)
	require.NoError(t, err)
	store, err := postgres.NewProcessedEventStore(pool, &postgres.ProcessedEventStoreConfig{Schema: b.schema, Outbox: ob})
	require.NoError(t, err)

	business := func(ctx context.Context) error {
		tx, _ := postgres.TxFromContext(ctx)
		_, err := tx.Exec(ctx, `INSERT INTO biz DEFAULT VALUES`)
		return err
	}
	baseline := trips(t, tc, func(int) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO biz DEFAULT VALUES`)
			return err
		})
	})
	require.Equal(t, int64(3), baseline, "BEGIN, INSERT, COMMIT")

	for _, events := range []int{0, 1, 3} {
		got := trips(t, tc, func(i int) error {
			return uow.Do(ctx, func(ctx context.Context) error {
				if err := business(ctx); err != nil {
					return err
				}
				for k := range events {
					if err := outbox.Raise(ctx, itemAdded{Cart: "rt", Seq: i*10 + k}); err != nil {
						return err
					}
				}
				return nil
			})
		})
		require.Equal(t, baseline, got, "unit of work raising %d events", events)
	}

	envs := []eventbus.Envelope{newEnv("m", 1), newEnv("m", 2), newEnv("m", 3), newEnv("m", 4)}
	for _, raise := range []bool{false, true} {
		h := named("h", effectHandler(raise))
		got := trips(t, tc, func(i int) error {
			dup, err := store.Process(ctx, "h", envs[i+2*boolInt(raise)].EventID, func(ctx context.Context) error {
				return h.Handle(ctx, envs[i+2*boolInt(raise)])
			})
			require.False(t, dup)
			return err
		})
		require.Equal(t, baseline, got, "idempotent handler (raise %v)", raise)
	}
	require.Equal(t, 2, b.count(t, "aggregate_id = 'm'"), "one event per delivery to the raising handler")

	// A duplicate: BEGIN + marker fails, ROLLBACK; the handler never runs.
	ran := false
	before := tc.n.Load()
	dup, err := store.Process(ctx, "h", envs[0].EventID, func(context.Context) error { ran = true; return nil })
	require.NoError(t, err)
	require.True(t, dup)
	require.False(t, ran)
	require.Equal(t, int64(2), tc.n.Load()-before, "BEGIN+INSERT, ROLLBACK")
	require.Equal(t, int64(1), pool.Stat().NewConnsCount(), "the duplicate's connection went back to the pool")
	b.requireEffectsOnce(t)

	// The marker statement is prepared on the connection; if the server
	// forgets it, the next Process prepares it again.
	var stmt string
	require.NoError(t, pool.QueryRow(ctx, `SELECT name FROM pg_prepared_statements WHERE name LIKE 'eventkit_marker_%'`).Scan(&stmt))
	_, err = pool.Exec(ctx, "DEALLOCATE "+stmt)
	require.NoError(t, err)
	dup, err = store.Process(ctx, "h", newEnv("m", 5).EventID, func(context.Context) error { return nil })
	require.NoError(t, err)
	require.False(t, dup)
	var again int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE name = $1`, stmt).Scan(&again))
	require.Equal(t, 1, again)
	require.Equal(t, int64(1), pool.Stat().NewConnsCount())
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// When the pipelined outbox INSERT or the COMMIT after it fails, nothing of
// the unit is stored, the error says which, and the connection is reused.
func TestUnitOfWorkPipelinedCommitFailures(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.pool.Exec(ctx, `
CREATE TABLE parents (id int PRIMARY KEY);
CREATE TABLE children (id int PRIMARY KEY, parent int NOT NULL REFERENCES parents DEFERRABLE INITIALLY DEFERRED);
ALTER TABLE outbox ADD CONSTRAINT no_boom CHECK (aggregate_id <> 'boom')`)
	require.NoError(t, err)
	pool, _ := countingPool(t, b)
	ob, err := postgres.NewOutbox(pool, &postgres.OutboxConfig{Schema: b.schema, NotifyChannel: b.channel})
	require.NoError(t, err)
	t.Cleanup(ob.Close)
	uow, err := postgres.NewUnitOfWork(pool, ob, nil)
	require.NoError(t, err)
	addChild := func(id, parent int, cart string) error {
		return uow.Do(ctx, func(ctx context.Context) error {
			tx, _ := postgres.TxFromContext(ctx)
			if _, err := tx.Exec(ctx, `INSERT INTO children VALUES ($1, $2)`, id, parent); err != nil {
				return err
			}
			return outbox.Raise(ctx, itemAdded{Cart: cart, Seq: id})
		})
	}
	_, err = pool.Exec(ctx, `INSERT INTO parents VALUES (1)`)
	require.NoError(t, err)
	require.NoError(t, addChild(1, 1, "ok"))
	conns := pool.Stat().NewConnsCount()

	var pgErr *pgconn.PgError
	// The INSERT fails: PostgreSQL skips the COMMIT.
	err = addChild(2, 1, "boom")
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "23514", pgErr.Code, "check violation: %v", err)
	require.ErrorContains(t, err, "insert 1 events")
	// The COMMIT fails (deferred foreign key).
	err = addChild(3, 99, "late")
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "23503", pgErr.Code, "foreign key violation at commit: %v", err)
	require.ErrorContains(t, err, "commit")
	// fn swallowed a failed statement: the transaction is aborted and
	// must not commit (neither its rows nor its events).
	err = uow.Do(ctx, func(ctx context.Context) error {
		tx, _ := postgres.TxFromContext(ctx)
		_, _ = tx.Exec(ctx, `INSERT INTO children VALUES (4, 1)`)
		_, _ = tx.Exec(ctx, `INSERT INTO children VALUES (4, 1)`) // duplicate key, ignored
		return outbox.Raise(ctx, itemAdded{Cart: "aborted", Seq: 4})
	})
	require.Error(t, err)

	var children int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM children`).Scan(&children))
	require.Equal(t, 1, children, "only the first unit committed")
	require.Equal(t, 1, b.count(t, "true"), "only the first unit's event")
	require.Equal(t, conns, pool.Stat().NewConnsCount(), "failed units gave their connection back idle")

	// A cancelled context mid-unit leaves nothing behind either.
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err = uow.Do(cctx, func(ctx context.Context) error {
		if err := outbox.Raise(ctx, itemAdded{Cart: "late", Seq: 5}); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	})
	require.Error(t, err)
	require.Equal(t, 1, b.count(t, "true"))
}

// Handler names are quoted into the simple query that begins the
// transaction: quotes, backslashes and non-ASCII survive byte for byte, a
// NUL is refused, the injected clock stamps the marker and the configured
// transaction options apply; both with the prepared marker statement (pgx's
// default exec mode) and without (simple protocol, as behind a
// transaction-pooling PgBouncer, where no statement may be prepared).
func TestProcessMarkerLiterals(t *testing.T) {
	t.Parallel()
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			b := setup(t)
			ctx := context.Background()
			cfg, err := pgxpool.ParseConfig(testinfra.PostgresURL(t))
			require.NoError(t, err)
			cfg.ConnConfig.RuntimeParams["search_path"] = b.schema
			cfg.ConnConfig.DefaultQueryExecMode = mode
			cfg.MaxConns = 1
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			at := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
			store, err := postgres.NewProcessedEventStore(pool, &postgres.ProcessedEventStoreConfig{
				Schema:    b.schema,
				Now:       func() time.Time { return at },
				TxOptions: pgx.TxOptions{IsoLevel: pgx.Serializable},
			})
			require.NoError(t, err)
			names := []string{`it's`, `back\slash`, `\'; DROP TABLE processed_events; --`, "ünïcødé ✓", `E'x'`}
			for _, name := range names {
				env := newEnv("lit", 1)
				var iso string
				dup, err := store.Process(ctx, name, env.EventID, func(ctx context.Context) error {
					tx, _ := postgres.TxFromContext(ctx)
					return tx.QueryRow(ctx, `SHOW transaction_isolation`).Scan(&iso)
				})
				require.NoError(t, err, name)
				require.False(t, dup, name)
				require.Equal(t, "serializable", iso)
				var stored string
				var stamped time.Time
				require.NoError(t, b.pool.QueryRow(ctx, `SELECT handler_name, processed_at FROM processed_events WHERE event_id = $1`, env.EventID.String()).Scan(&stored, &stamped))
				require.Equal(t, name, stored)
				require.True(t, at.Equal(stamped), "processed_at %v", stamped)
				dup, err = store.Process(ctx, name, env.EventID, func(context.Context) error { return errors.New("must not run") })
				require.NoError(t, err, name)
				require.True(t, dup, name)
			}
			require.Equal(t, len(names), b.markers(t, ""))
			_, err = store.Process(ctx, "nul\x00name", newEnv("lit", 2).EventID, func(context.Context) error { return nil })
			require.True(t, eventbus.IsPermanent(err), "%v", err)
			var prepared int
			require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'eventkit_marker_%'`).Scan(&prepared))
			require.Equal(t, boolInt(mode == pgx.QueryExecModeCacheStatement), prepared, "marker statement prepared only in the default mode")
			require.Equal(t, int64(1), pool.Stat().NewConnsCount(), "duplicates gave their connection back")

			// The unit of work's pipelined outbox INSERT + COMMIT in this mode.
			ob, err := postgres.NewOutbox(pool, &postgres.OutboxConfig{Schema: b.schema, DisableNotify: true})
			require.NoError(t, err)
			t.Cleanup(ob.Close)
			uow, err := postgres.NewUnitOfWork(pool, ob, nil)
			require.NoError(t, err)
			require.NoError(t, uow.Do(ctx, func(ctx context.Context) error {
				return outbox.Raise(ctx, itemAdded{Cart: "mode", Seq: 1}, itemAdded{Cart: "mode", Seq: 2})
			}))
			require.Equal(t, 2, b.count(t, "aggregate_id = 'mode'"))
		})
	}
}
