package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/adapters/postgres"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// O7: published rows past the retention are deleted in bounded batches by
// one cleanup at a time, alongside a relay and a long open transaction;
// pending and quarantined rows are never touched.
func TestO7CleanupBesideRelayAndLongTx(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	published := size(100000)
	pendingN := size(1000)
	now := time.Now()
	const retention = time.Hour

	// Published rows: half older than the retention, half younger.
	_, err := b.pool.Exec(ctx, `INSERT INTO `+b.ob.Table()+` (event_id, event_type, schema_version, aggregate_type, aggregate_id, payload, occurred_at, published_at)
SELECT gen_random_uuid(), 'cart.item_added.v1', 1, 'cart', 'p' || (g % 50), '{"seq":1}', $1, $1::timestamptz - CASE WHEN g % 2 = 0 THEN interval '2 hours' ELSE interval '10 minutes' END
FROM generate_series(1, $2) g`, now, published)
	require.NoError(t, err)
	// Quarantined old row: kept.
	_, err = b.pool.Exec(ctx, `INSERT INTO `+b.ob.Table()+` (event_id, event_type, schema_version, aggregate_type, aggregate_id, payload, occurred_at, created_at, quarantined_at, attempts)
VALUES (gen_random_uuid(), 'cart.item_added.v1', 1, 'cart', 'q', '{}', $1, $1::timestamptz - interval '3 days', $1::timestamptz - interval '3 days', 10)`, now)
	require.NoError(t, err)

	// Old pending row, not due for a long time: kept (cleanup never touches
	// pending rows, however old).
	_, err = b.pool.Exec(ctx, `INSERT INTO `+b.ob.Table()+` (event_id, event_type, schema_version, aggregate_type, aggregate_id, payload, occurred_at, created_at, next_attempt_at, attempts)
VALUES (gen_random_uuid(), 'cart.item_added.v1', 1, 'cart', 'old-pending', '{}', $1, $1::timestamptz - interval '3 days', $1::timestamptz + interval '1 day', 1)`, now)
	require.NoError(t, err)

	// A long transaction holding an old snapshot while everything runs.
	long, err := b.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	require.NoError(t, err)
	var seen int
	require.NoError(t, long.QueryRow(ctx, `SELECT count(*) FROM `+b.ob.Table()).Scan(&seen))

	// Pending rows, drained by a relay while cleanup runs.
	var envs []eventbus.Envelope
	for i := range pendingN {
		envs = append(envs, newEnv(fmt.Sprintf("live%d", i%10), i))
	}
	b.write(t, envs...)
	rec := newRecorder()
	startRelay(t, outbox.RelayConfig{Store: b.ob, Publisher: rec, PollInterval: 50 * time.Millisecond})

	// Singleton: while one instance holds the lock, another does nothing.
	release, ok, err := b.ob.TryLock(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	c, err := outbox.NewCleanup(outbox.CleanupConfig{Store: b.ob, Retention: retention, BatchSize: 1000, Now: func() time.Time { return now }})
	require.NoError(t, err)
	res, err := c.RunOnce(ctx)
	require.NoError(t, err)
	require.False(t, res.Ran, "a second instance must not run")
	release()

	res, err = c.RunOnce(ctx)
	require.NoError(t, err)
	require.True(t, res.Ran)
	require.EqualValues(t, published/2, res.Outbox)
	require.GreaterOrEqual(t, res.Batches, published/2/1000, "bounded batches of at most 1000")
	require.Equal(t, published/2, b.count(t, "aggregate_id LIKE 'p%'"), "young published rows kept")
	require.Equal(t, 0, b.count(t, fmt.Sprintf("published_at < '%s'::timestamptz - interval '1 hour'", now.UTC().Format(time.RFC3339Nano))), "old published rows gone")
	require.Equal(t, 1, b.count(t, "quarantined_at IS NOT NULL"), "quarantined row untouched")
	require.Equal(t, 1, b.count(t, "aggregate_id = 'old-pending'"), "old pending row untouched")
	require.NoError(t, long.Rollback(ctx))
	// Not due before the test ends: out of the way of the drain checks.
	_, err = b.pool.Exec(ctx, `DELETE FROM `+b.ob.Table()+` WHERE aggregate_id = 'old-pending'`)
	require.NoError(t, err)

	rec.waitCount(t, 30*time.Second, pendingN)
	b.requireDrained(t)
	// The relay's freshly published rows are younger than the retention.
	res, err = c.RunOnce(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 0, res.Outbox)
	require.Equal(t, published/2+pendingN, b.count(t, "published_at IS NOT NULL"))

}

// O7, bloat: the outbox does not grow over 5 cycles of publish-and-clean
// once a long transaction has ended. Each cycle adds rows past the
// retention, cleanup deletes them and VACUUM (what autovacuum does, run
// here so the test does not wait on its schedule) makes their space
// reusable. The test has a cluster of its own: an old snapshot anywhere in
// the cluster, even in another database, keeps VACUUM from recycling
// emptied index pages (PostgreSQL 15 checks them against the shared
// horizon), and other tests hold old snapshots on the shared server.
func TestO7TableSizeStableOnceLongTxEnds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cluster := startThrowawayCluster(t)
	pool, err := pgxpool.New(ctx, cluster.url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, postgres.Migrate(ctx, pool, nil))
	ob, err := postgres.NewOutbox(pool, &postgres.OutboxConfig{DisableNotify: true})
	require.NoError(t, err)
	t.Cleanup(ob.Close)
	now := time.Now()
	c, err := outbox.NewCleanup(outbox.CleanupConfig{Store: ob, Retention: time.Hour, BatchSize: 1000, Now: func() time.Time { return now }})
	require.NoError(t, err)
	rows := size(50000)
	cycle := func() int64 {
		t.Helper()
		_, err := pool.Exec(ctx, `INSERT INTO `+ob.Table()+` (event_id, event_type, schema_version, aggregate_type, aggregate_id, payload, occurred_at, published_at)
SELECT gen_random_uuid(), 'cart.item_added.v1', 1, 'cart', 'c' || (g % 50), '{"seq":1}', $1, $1::timestamptz - interval '2 hours'
FROM generate_series(1, $2) g`, now, rows)
		require.NoError(t, err)
		res, err := c.RunOnce(ctx)
		require.NoError(t, err)
		require.EqualValues(t, rows, res.Outbox)
		_, err = pool.Exec(ctx, `VACUUM `+ob.Table())
		require.NoError(t, err)
		var size int64
		require.NoError(t, pool.QueryRow(ctx, `SELECT pg_total_relation_size($1::regclass)`, ob.Table()).Scan(&size))
		return size
	}

	// While a long transaction holds an old snapshot, deleted rows cannot
	// be reclaimed and the table grows: the measurement sees bloat.
	long, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	require.NoError(t, err)
	var one int
	require.NoError(t, long.QueryRow(ctx, `SELECT 1`).Scan(&one))
	held := []int64{cycle(), cycle()}
	require.Greater(t, held[1], held[0], "rows deleted under an old snapshot stay: %v", held)
	require.NoError(t, long.Rollback(ctx))

	var sizes []int64
	for range 5 {
		sizes = append(sizes, cycle())
	}
	t.Logf("outbox size (table + indexes + toast): %v with the long tx open, then %v", held, sizes)
	// The first VACUUM after the long transaction also truncates the
	// pages it emptied, so the size settles from the second cycle on.
	require.LessOrEqual(t, float64(sizes[4]), 1.2*float64(sizes[1]), "table size stable over 5 cycles: %v", sizes)
	require.LessOrEqual(t, sizes[4], held[1], "space freed once the long tx ended is reused")
}
