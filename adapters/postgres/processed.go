package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/idempotency"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults of ProcessedEventStoreConfig.
const (
	DefaultMarkerDeleteBatch = 1000
)

// ProcessedEventStoreConfig configures a ProcessedEventStore.
type ProcessedEventStoreConfig struct {
	// Schema holds the table. Defaults to "" (search_path decides).
	Schema string
	// Table is the markers table. Defaults to DefaultProcessedTable.
	Table string
	// Outbox receives the events handlers raise with outbox.Raise, in the
	// handler's transaction. Defaults to nil: raising an event is then an
	// error.
	Outbox *Outbox
	// TxOptions begin the handler transactions. Defaults to the zero value.
	TxOptions pgx.TxOptions
	// DeleteBatch bounds each DELETE of DeleteBefore. Defaults to
	// DefaultMarkerDeleteBatch.
	DeleteBatch int
	// LockTimeout bounds how long a marker DELETE waits for row locks.
	// Defaults to DefaultCleanupLockWait.
	LockTimeout time.Duration
	// Now stamps markers. Defaults to nil: the database's now().
	Now func() time.Time
}

// ProcessedEventStore is idempotency.ProcessedEventStore on PostgreSQL: the
// marker, the handler's writes and the events it raises commit in one
// transaction (the inbox and the outbox together).
//
// Process begins a transaction (or, when ctx already carries one, works in
// a savepoint of it), inserts the marker with ON CONFLICT DO NOTHING and, if
// the row was new, runs fn with the transaction in its context
// (TxFromContext) and a collector for outbox.Raise, writes the raised events
// to the outbox and commits. A marker that exists means duplicate: nothing
// runs, and the transaction is rolled back. A concurrent duplicate blocks on
// the primary key until the first delivery ends, then sees its marker (or
// runs, if the first one rolled back).
type ProcessedEventStore struct {
	pool *pgxpool.Pool
	cfg  ProcessedEventStoreConfig
	tbl  string
}

var (
	_ idempotency.ProcessedEventStore = (*ProcessedEventStore)(nil)
	_ idempotency.Checker             = (*ProcessedEventStore)(nil)
	_ idempotency.Pruner              = (*ProcessedEventStore)(nil)
	_ outbox.MarkerPruner             = (*ProcessedEventStore)(nil)
)

// NewProcessedEventStore returns the store over pool (migrated with
// Migrate); cfg may be nil.
func NewProcessedEventStore(pool *pgxpool.Pool, cfg *ProcessedEventStoreConfig) (*ProcessedEventStore, error) {
	if pool == nil {
		return nil, fmt.Errorf("%w: nil pool", outbox.ErrConfig)
	}
	var c ProcessedEventStoreConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Table == "" {
		c.Table = DefaultProcessedTable
	}
	if c.DeleteBatch < 0 || c.LockTimeout < 0 {
		return nil, fmt.Errorf("%w: negative ProcessedEventStore setting", outbox.ErrConfig)
	}
	if c.DeleteBatch == 0 {
		c.DeleteBatch = DefaultMarkerDeleteBatch
	}
	if c.LockTimeout == 0 {
		c.LockTimeout = DefaultCleanupLockWait
	}
	return &ProcessedEventStore{pool: pool, cfg: c, tbl: qualify(c.Schema, c.Table)}, nil
}

func (s *ProcessedEventStore) now() any {
	if s.cfg.Now == nil {
		return nil
	}
	return s.cfg.Now()
}

// Process implements idempotency.ProcessedEventStore.
func (s *ProcessedEventStore) Process(ctx context.Context, handler string, id eventbus.EventID, fn func(ctx context.Context) error) (dup bool, err error) {
	if handler == "" || id.IsZero() {
		return false, eventbus.Permanent(fmt.Errorf("postgres: processed event needs a handler name and an event id"))
	}
	run := func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO `+s.tbl+` (handler_name, event_id, processed_at)
VALUES ($1, $2, coalesce($3::timestamptz, now())) ON CONFLICT DO NOTHING`, handler, [16]byte(id), s.now())
		if err != nil {
			return fmt.Errorf("postgres: insert marker for %s %q: %w", id, handler, err)
		}
		if tag.RowsAffected() == 0 {
			dup = true
			return errDuplicate
		}
		return fn(ctx)
	}
	if outer, ok := TxFromContext(ctx); ok {
		// Join: a savepoint keeps a duplicate or a failure from spoiling
		// the caller's transaction.
		sp, err := outer.Begin(ctx)
		if err != nil {
			return false, fmt.Errorf("postgres: savepoint: %w", err)
		}
		sctx, c := outbox.WithNewCollector(WithTx(ctx, sp))
		err = run(sctx, sp)
		if err == nil {
			// The caller commits: notify from inside its transaction.
			_, err = writeCollected(sctx, s.cfg.Outbox, sp, c, true)
		}
		if err != nil {
			_ = sp.Rollback(context.WithoutCancel(ctx))
			if dup {
				return true, nil
			}
			return false, err
		}
		if err := sp.Commit(ctx); err != nil {
			return false, fmt.Errorf("postgres: release savepoint: %w", err)
		}
		return false, nil
	}
	err = runInTx(ctx, s.pool, s.cfg.TxOptions, s.cfg.Outbox, run)
	if dup {
		return true, nil
	}
	return false, err
}

var errDuplicate = fmt.Errorf("postgres: duplicate (internal)")

// IsProcessed implements idempotency.Checker.
func (s *ProcessedEventStore) IsProcessed(ctx context.Context, handler string, id eventbus.EventID) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+s.tbl+` WHERE handler_name = $1 AND event_id = $2)`, handler, id.String()).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("postgres: is processed: %w", err)
	}
	return ok, nil
}

// DeleteBefore implements idempotency.Pruner, in batches of DeleteBatch.
func (s *ProcessedEventStore) DeleteBefore(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	for {
		n, err := s.DeleteProcessedBefore(ctx, cutoff, s.cfg.DeleteBatch)
		total += n
		if err != nil || n < int64(s.cfg.DeleteBatch) {
			return total, err
		}
	}
}

// DeleteProcessedBefore implements outbox.MarkerPruner: one DELETE of at most
// limit markers processed before cutoff. Markers locked by a running
// handler are skipped; lock waits are bounded by LockTimeout.
func (s *ProcessedEventStore) DeleteProcessedBefore(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	if limit <= 0 {
		limit = s.cfg.DeleteBatch
	}
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", s.cfg.LockTimeout.Milliseconds())); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM `+s.tbl+` WHERE (handler_name, event_id) IN (
  SELECT handler_name, event_id FROM `+s.tbl+` WHERE processed_at < $1
  ORDER BY processed_at LIMIT $2 FOR UPDATE SKIP LOCKED)`, cutoff, limit)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: delete markers: %w", err)
	}
	return n, nil
}

// TxHandler adapts a handler that works with the transaction directly. Wrap
// it with idempotency.Wrap over a ProcessedEventStore: fn then runs in the
// marker's transaction. Called outside such a store it returns a permanent
// error.
func TxHandler(fn func(ctx context.Context, tx pgx.Tx, env eventbus.Envelope) error) eventbus.Handler {
	return eventbus.HandlerFunc(func(ctx context.Context, env eventbus.Envelope) error {
		tx, ok := TxFromContext(ctx)
		if !ok {
			return eventbus.Permanent(fmt.Errorf("postgres: TxHandler for %s %s called without a transaction (wrap it with idempotency.Wrap over a postgres.ProcessedEventStore)", env.EventType, env.EventID))
		}
		return fn(ctx, tx, env)
	})
}
