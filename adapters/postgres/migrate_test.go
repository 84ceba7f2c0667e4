package postgres_test

import (
	"context"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/choicesherpa/eventkit/adapters/postgres"
	"github.com/choicesherpa/eventkit/internal/testinfra"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

func TestMigrateConcurrentUpDown(t *testing.T) {
	t.Parallel()
	base, pool := testinfra.Schema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A schema that does not exist yet: Migrate creates it.
	schema := base + "_m"
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	cfg := &postgres.MigrateConfig{Schema: schema}

	var wg sync.WaitGroup
	errs := make([]error, 6)
	start := make(chan struct{})
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = postgres.Migrate(ctx, pool, cfg)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "concurrent Migrate %d", i)
	}
	v, err := postgres.MigrationVersion(ctx, pool, cfg)
	require.NoError(t, err)
	all, err := postgres.AllMigrations()
	require.NoError(t, err)
	require.Equal(t, all[len(all)-1].Version, v)
	var rows int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, postgres.VersionTable}.Sanitize()).Scan(&rows))
	require.Equal(t, len(all), rows, "each migration recorded once")

	// Tables exist in the configured schema, not in the search_path one.
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name IN ('outbox','processed_events')`, schema).Scan(&n))
	require.Equal(t, 2, n)
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name IN ('outbox','processed_events')`, base).Scan(&n))
	require.Equal(t, 0, n)

	require.NoError(t, postgres.MigrateDown(ctx, pool, cfg, 0))
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name IN ('outbox','processed_events')`, schema).Scan(&n))
	require.Equal(t, 0, n)
	v, err = postgres.MigrationVersion(ctx, pool, cfg)
	require.NoError(t, err)
	require.Equal(t, 0, v)
	require.NoError(t, postgres.Migrate(ctx, pool, cfg))
	require.NoError(t, postgres.Migrate(ctx, pool, cfg), "idempotent")
	v, err = postgres.MigrationVersion(ctx, pool, cfg)
	require.NoError(t, err)
	require.Equal(t, all[len(all)-1].Version, v)
}

// The embedded files are plain SQL that another tool can run with
// search_path set to the target schema.
func TestMigrationsArePlainSQL(t *testing.T) {
	t.Parallel()
	schema, pool := testinfra.Schema(t)
	ctx := context.Background()
	up, err := fs.ReadFile(postgres.Migrations(), "migrations/001_outbox.up.sql")
	require.NoError(t, err)
	down, err := fs.ReadFile(postgres.Migrations(), "migrations/001_outbox.down.sql")
	require.NoError(t, err)
	// The pool's search_path is the test schema.
	_, err = pool.Exec(ctx, string(up))
	require.NoError(t, err)
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name IN ('outbox','processed_events')`, schema).Scan(&n))
	require.Equal(t, 2, n)
	_, err = pool.Exec(ctx, string(down))
	require.NoError(t, err)
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1`, schema).Scan(&n))
	require.Equal(t, 0, n)
}

// Migrate under a repeatable-read default, as a role owning only its schema,
// inside a caller's transaction, and against a schema a newer build migrated.
func TestMigrateEdges(t *testing.T) {
	t.Parallel()
	base, pool := testinfra.Schema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	drop := func(schema string) {
		t.Cleanup(func() {
			_, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		})
	}

	// Never migrated: version 0, no error.
	fresh := &postgres.MigrateConfig{Schema: base + "_fresh"}
	v, err := postgres.MigrationVersion(ctx, pool, fresh)
	require.NoError(t, err)
	require.Zero(t, v)

	// Concurrent Migrate when the server's default isolation is repeatable
	// read: the waiters must still see what the first one recorded.
	rrCfg, err := pgxpool.ParseConfig(testinfra.PostgresURL(t))
	require.NoError(t, err)
	rrCfg.ConnConfig.RuntimeParams["default_transaction_isolation"] = "repeatable read"
	rr, err := pgxpool.NewWithConfig(ctx, rrCfg)
	require.NoError(t, err)
	defer rr.Close()
	cfg := &postgres.MigrateConfig{Schema: base + "_rr"}
	drop(cfg.Schema)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = postgres.Migrate(ctx, rr, cfg) }()
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "Migrate %d under repeatable read", i)
	}

	// MigrateTx leaves the caller's search_path alone.
	txCfg := &postgres.MigrateConfig{Schema: base + "_tx"}
	drop(txCfg.Schema)
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var before, after string
		require.NoError(t, tx.QueryRow(ctx, "SHOW search_path").Scan(&before))
		require.NoError(t, postgres.MigrateTx(ctx, tx, txCfg))
		require.NoError(t, tx.QueryRow(ctx, "SHOW search_path").Scan(&after))
		require.Equal(t, before, after)
		return nil
	}))

	// A role that owns its schema but may not create schemas in the database.
	role := testinfra.UniqueName("zzrole")
	owned := base + "_owned"
	_, err = pool.Exec(ctx, "CREATE ROLE "+role+" LOGIN; CREATE SCHEMA "+pgx.Identifier{owned}.Sanitize()+" AUTHORIZATION "+role)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{owned}.Sanitize()+" CASCADE; DROP OWNED BY "+role+"; DROP ROLE IF EXISTS "+role)
	})
	roleCfg, err := pgxpool.ParseConfig(testinfra.PostgresURL(t))
	require.NoError(t, err)
	roleCfg.ConnConfig.User = role
	asRole, err := pgxpool.NewWithConfig(ctx, roleCfg)
	require.NoError(t, err)
	defer asRole.Close()
	require.NoError(t, postgres.Migrate(ctx, asRole, &postgres.MigrateConfig{Schema: owned}))

	// A version this build does not know: refuse, up and down.
	_, err = pool.Exec(ctx, "INSERT INTO "+pgx.Identifier{cfg.Schema, postgres.VersionTable}.Sanitize()+" (version, name) VALUES (999, 'from_the_future')")
	require.NoError(t, err)
	require.ErrorIs(t, postgres.Migrate(ctx, pool, cfg), postgres.ErrMigration)
	require.ErrorIs(t, postgres.MigrateDown(ctx, pool, cfg, 0), postgres.ErrMigration)
	v, err = postgres.MigrationVersion(ctx, pool, cfg)
	require.NoError(t, err)
	require.Equal(t, 999, v, "nothing was reverted")

	// Waiting for the lock past a deadline keeps the deadline in the error.
	hold, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = hold.Rollback(context.Background()) }()
	_, err = hold.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2))", int32(0x65766b6d), txCfg.Schema)
	require.NoError(t, err)
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	err = postgres.Migrate(short, pool, txCfg)
	require.ErrorIs(t, err, postgres.ErrMigration)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// The listener's application name fits PostgreSQL's 63 bytes without
// splitting a character.
func TestListenerApplicationNameStaysUTF8(t *testing.T) {
	t.Parallel()
	name := postgres.ListenerApplicationName(strings.Repeat("é", 40))
	require.LessOrEqual(t, len(name), 63)
	require.True(t, utf8.ValidString(name), "%q", name)
	require.Equal(t, "eventkit-listen-short", postgres.ListenerApplicationName("short"))
}
