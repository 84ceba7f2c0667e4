package postgres_test

import (
	"context"
	"io/fs"
	"sync"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/adapters/postgres"
	"github.com/choicesherpa/eventkit/internal/testinfra"
	"github.com/jackc/pgx/v5"
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
