package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migrations returns the embedded migration files (migrations/NNN_name.up.sql
// and .down.sql), for use with other migration tools. The SQL uses
// unqualified table names: run it with search_path set to your schema.
func Migrations() fs.FS { return migrationFS }

// VersionTable is the table, in the migrated schema, that records applied
// migrations.
const VersionTable = "eventkit_migrations"

// migrateLockClass is the first key of the advisory lock Migrate holds
// (the second is hashtext(schema)).
const migrateLockClass = 0x65766b6d // "evkm"

// MigrateConfig configures Migrate and MigrateDown.
type MigrateConfig struct {
	// Schema receives the tables; it is created if missing. Defaults to ""
	// (the first schema of the connection's search_path, usually public).
	Schema string
}

// Migration is one numbered migration.
type Migration struct {
	Version int
	Name    string
	Up      string
	Down    string
}

// ErrMigration wraps migration failures.
var ErrMigration = errors.New("postgres: migration failed")

// AllMigrations returns the embedded migrations in version order.
func AllMigrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("%w: read embedded migrations: %w", ErrMigration, err)
	}
	byVersion := map[int]*Migration{}
	for _, e := range entries {
		name := e.Name()
		var dir string
		switch {
		case strings.HasSuffix(name, ".up.sql"):
			dir = "up"
		case strings.HasSuffix(name, ".down.sql"):
			dir = "down"
		default:
			continue
		}
		num, rest, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("%w: bad migration file name %q", ErrMigration, name)
		}
		b, err := migrationFS.ReadFile(path.Join("migrations", name))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMigration, err)
		}
		m := byVersion[v]
		if m == nil {
			m = &Migration{Version: v, Name: strings.TrimSuffix(strings.TrimSuffix(rest, ".up.sql"), ".down.sql")}
			byVersion[v] = m
		}
		if dir == "up" {
			m.Up = string(b)
		} else {
			m.Down = string(b)
		}
	}
	out := make([]Migration, 0, len(byVersion))
	for _, m := range byVersion {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Migrate applies the pending migrations in one transaction, under an
// advisory lock on the schema, so processes that start at once apply each
// migration exactly once (the others wait, then find nothing to do). cfg may
// be nil.
func Migrate(ctx context.Context, pool *pgxpool.Pool, cfg *MigrateConfig) error {
	return pgx.BeginTxFunc(ctx, pool, migrateTxOptions, func(tx pgx.Tx) error { return MigrateTx(ctx, tx, cfg) })
}

// migrateTxOptions: read committed whatever the server's default. Under
// repeatable read the snapshot would be taken with the advisory lock
// statement, before the lock is granted, and a process that waited for it
// would not see the versions the holder recorded (it would apply them again).
var migrateTxOptions = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}

// MigrateTx is Migrate inside the caller's transaction, which should be read
// committed when several processes may migrate at once (see Migrate). It
// leaves the transaction's search_path as it found it.
func MigrateTx(ctx context.Context, tx pgx.Tx, cfg *MigrateConfig) error {
	return migrateTx(ctx, tx, cfg, -1)
}

// MigrateDown reverts the applied migrations above version target (0
// reverts everything), newest first, in one transaction.
func MigrateDown(ctx context.Context, pool *pgxpool.Pool, cfg *MigrateConfig, target int) error {
	if target < 0 {
		return fmt.Errorf("%w: negative target version", ErrMigration)
	}
	return pgx.BeginTxFunc(ctx, pool, migrateTxOptions, func(tx pgx.Tx) error { return migrateTx(ctx, tx, cfg, target) })
}

// migrateTx migrates up when down < 0, else down to version down, and
// restores the transaction's search_path.
func migrateTx(ctx context.Context, tx pgx.Tx, cfg *MigrateConfig, down int) (err error) {
	var searchPath string
	if err := tx.QueryRow(ctx, "SELECT current_setting('search_path')").Scan(&searchPath); err != nil {
		return fmt.Errorf("%w: search_path: %w", ErrMigration, err)
	}
	defer func() {
		if err != nil {
			return // the transaction is aborted and rolls back anyway
		}
		if _, rErr := tx.Exec(ctx, "SELECT set_config('search_path', $1, true)", searchPath); rErr != nil {
			err = fmt.Errorf("%w: restore search_path: %w", ErrMigration, rErr)
		}
	}()
	return migrateIn(ctx, tx, cfg, down)
}

func migrateIn(ctx context.Context, tx pgx.Tx, cfg *MigrateConfig, down int) error {
	schema := ""
	if cfg != nil {
		schema = cfg.Schema
	}
	if schema == "" {
		var current *string // NULL when no schema of the search_path exists
		if err := tx.QueryRow(ctx, "SELECT current_schema()").Scan(&current); err != nil {
			return fmt.Errorf("%w: current schema: %w", ErrMigration, err)
		}
		if current == nil || *current == "" {
			return fmt.Errorf("%w: no schema in search_path (set MigrateConfig.Schema)", ErrMigration)
		}
		schema = *current
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2))", int32(migrateLockClass), schema); err != nil {
		return fmt.Errorf("%w: advisory lock: %w", ErrMigration, err)
	}
	ident := pgx.Identifier{schema}.Sanitize()
	// CREATE SCHEMA IF NOT EXISTS checks the database's CREATE privilege
	// first, which a role owning only its schema lacks: create it only when
	// it is missing.
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
		return fmt.Errorf("%w: look up schema %s: %w", ErrMigration, schema, err)
	}
	if !exists {
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+ident); err != nil {
			return fmt.Errorf("%w: create schema %s: %w", ErrMigration, schema, err)
		}
	}
	if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+ident); err != nil {
		return fmt.Errorf("%w: search_path: %w", ErrMigration, err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+VersionTable+` (
		version integer PRIMARY KEY,
		name text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("%w: version table: %w", ErrMigration, err)
	}
	applied := map[int]bool{}
	rows, err := tx.Query(ctx, "SELECT version FROM "+VersionTable)
	if err != nil {
		return fmt.Errorf("%w: read versions: %w", ErrMigration, err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("%w: read versions: %w", ErrMigration, err)
	}
	for _, v := range vs {
		applied[int(v)] = true
	}
	all, err := AllMigrations()
	if err != nil {
		return err
	}
	// A version this binary does not know was applied by a newer one: going
	// on would leave its changes in place or half undone.
	for v := range applied {
		if !slices.ContainsFunc(all, func(m Migration) bool { return m.Version == v }) {
			return fmt.Errorf("%w: schema %s has migration %03d, which this build does not know (it was applied by a newer version)", ErrMigration, schema, v)
		}
	}
	if down < 0 {
		for _, m := range all {
			if applied[m.Version] {
				continue
			}
			if _, err := tx.Exec(ctx, m.Up); err != nil {
				return fmt.Errorf("%w: %03d_%s up: %w", ErrMigration, m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO "+VersionTable+" (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
				return fmt.Errorf("%w: record %03d: %w", ErrMigration, m.Version, err)
			}
		}
		return nil
	}
	for i := len(all) - 1; i >= 0; i-- {
		m := all[i]
		if m.Version <= down || !applied[m.Version] {
			continue
		}
		if _, err := tx.Exec(ctx, m.Down); err != nil {
			return fmt.Errorf("%w: %03d_%s down: %w", ErrMigration, m.Version, m.Name, err)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM "+VersionTable+" WHERE version = $1", m.Version); err != nil {
			return fmt.Errorf("%w: unrecord %03d: %w", ErrMigration, m.Version, err)
		}
	}
	return nil
}

// MigrationVersion returns the highest applied migration version in the
// schema (0 when none).
func MigrationVersion(ctx context.Context, pool *pgxpool.Pool, cfg *MigrateConfig) (int, error) {
	table := VersionTable
	if cfg != nil && cfg.Schema != "" {
		table = pgx.Identifier{cfg.Schema, VersionTable}.Sanitize()
	}
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists); err != nil {
		return 0, fmt.Errorf("%w: read version: %w", ErrMigration, err)
	}
	if !exists {
		return 0, nil // never migrated
	}
	var v int32
	err := pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+table).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("%w: read version: %w", ErrMigration, err)
	}
	return int(v), nil
}
