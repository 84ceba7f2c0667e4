package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/idempotency"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
// Process begins a transaction and inserts the marker in the same round
// trip (BEGIN and INSERT as one simple query); if the row was new it runs
// fn with the transaction in its context (TxFromContext) and a collector
// for outbox.Raise, then writes the raised events to the outbox and commits
// in one pipeline. A marker that exists means duplicate: its unique
// violation aborts the transaction before fn runs, Process rolls back and
// reports the duplicate (the server logs that violation as an ERROR line).
// A concurrent duplicate blocks on the primary key until the first delivery
// ends, then sees its marker (or runs, if the first one rolled back).
//
// When ctx already carries a transaction, Process works in a savepoint of
// it with INSERT ... ON CONFLICT DO NOTHING, so a duplicate or a failure
// never spoils the caller's transaction.
type ProcessedEventStore struct {
	pool     *pgxpool.Pool
	cfg      ProcessedEventStoreConfig
	tbl      string
	beginSQL string // BEGIN with cfg.TxOptions

	markerSQL  string // the marker INSERT, prepared on each connection
	markerStmt string // its prepared statement's name
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
	st := &ProcessedEventStore{pool: pool, cfg: c, tbl: qualify(c.Schema, c.Table), beginSQL: renderBegin(c.TxOptions)}
	st.markerSQL = `INSERT INTO ` + st.tbl + ` (handler_name, event_id, processed_at) VALUES ($1::text, $2::uuid, coalesce($3::timestamptz, now()))`
	// The name is per statement text: one per table on a connection.
	st.markerStmt = fmt.Sprintf("eventkit_marker_%08x", uint32(hashKey(st.markerSQL)))
	return st, nil
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
	if strings.IndexByte(handler, 0) >= 0 {
		return false, eventbus.Permanent(fmt.Errorf("postgres: handler name %q contains a NUL byte", handler))
	}
	if outer, ok := TxFromContext(ctx); ok {
		return s.processIn(ctx, outer, handler, id, fn)
	}
	// BEGIN and the marker INSERT travel in one simple query, so the
	// marker costs no round trip of its own; the INSERT is a statement
	// prepared once per connection (EXECUTE skips parsing and planning).
	// Without ON CONFLICT a duplicate is a unique violation that aborts the
	// transaction before fn runs (and shows in the server log as one ERROR
	// line).
	begin := func(ctx context.Context, conn *pgxpool.Conn) (pgx.Tx, error) {
		tx, err := s.beginWithMarker(ctx, conn.Conn(), handler, id)
		if err == nil {
			return tx, nil
		}
		if conn.Conn().PgConn().TxStatus() == 'E' {
			// BEGIN ran, the INSERT failed: end the aborted transaction
			// so the connection goes back to the pool.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
		if isUniqueViolation(err) {
			dup = true
			return nil, errDuplicate
		}
		return nil, fmt.Errorf("postgres: begin and insert marker for %s %q: %w", id, handler, err)
	}
	err = runInTx(ctx, s.pool, pgx.TxOptions{}, begin, s.cfg.Outbox, func(ctx context.Context, _ pgx.Tx) error {
		return fn(ctx)
	})
	if dup {
		return true, nil
	}
	return false, err
}

// processIn runs fn in a savepoint of the caller's transaction outer, after
// inserting the marker there: a duplicate or a failure rolls back to the
// savepoint without spoiling the caller's transaction.
func (s *ProcessedEventStore) processIn(ctx context.Context, outer pgx.Tx, handler string, id eventbus.EventID, fn func(ctx context.Context) error) (bool, error) {
	sp, err := outer.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("postgres: savepoint: %w", err)
	}
	tag, err := sp.Exec(ctx, `INSERT INTO `+s.tbl+` (handler_name, event_id, processed_at)
VALUES ($1, $2, coalesce($3::timestamptz, now())) ON CONFLICT DO NOTHING`, handler, [16]byte(id), s.now())
	if err != nil {
		_ = sp.Rollback(context.WithoutCancel(ctx))
		return false, fmt.Errorf("postgres: insert marker for %s %q: %w", id, handler, err)
	}
	if tag.RowsAffected() == 0 {
		_ = sp.Rollback(context.WithoutCancel(ctx))
		return true, nil
	}
	sctx, c := withTxCollector(ctx, sp)
	err = fn(sctx)
	if err == nil {
		// The caller commits: notify from inside its transaction.
		_, err = writeCollected(sctx, s.cfg.Outbox, sp, c, true)
	}
	if err != nil {
		_ = sp.Rollback(context.WithoutCancel(ctx))
		return false, err
	}
	if err := sp.Commit(ctx); err != nil {
		return false, fmt.Errorf("postgres: release savepoint: %w", err)
	}
	return false, nil
}

// beginWithMarker begins a transaction on conn and inserts the marker in
// the same round trip: "BEGIN; EXECUTE <marker statement>(...)" as one
// simple query. pgx prepares the statement on the first call on conn and
// remembers it; if the server forgot it (DISCARD ALL, DEALLOCATE), it is
// prepared again and the call retried once. A connection configured not to
// keep prepared statements (pgx's exec modes other than the default
// QueryExecModeCacheStatement, e.g. behind a transaction-pooling PgBouncer)
// gets the INSERT itself instead of EXECUTE.
func (s *ProcessedEventStore) beginWithMarker(ctx context.Context, conn *pgx.Conn, handler string, id eventbus.EventID) (pgx.Tx, error) {
	if conn.Config().DefaultQueryExecMode != pgx.QueryExecModeCacheStatement {
		return conn.BeginTx(ctx, pgx.TxOptions{BeginQuery: s.beginMarkerSQL(handler, id, false)})
	}
	for attempt := 0; ; attempt++ {
		if _, err := conn.Prepare(ctx, s.markerStmt, s.markerSQL); err != nil {
			return nil, fmt.Errorf("prepare marker insert: %w", err)
		}
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{BeginQuery: s.beginMarkerSQL(handler, id, true)})
		var pgErr *pgconn.PgError
		if attempt == 0 && errors.As(err, &pgErr) && pgErr.Code == "26000" { // invalid_sql_statement_name
			if conn.PgConn().TxStatus() == 'E' {
				if _, rerr := conn.Exec(ctx, "ROLLBACK"); rerr != nil {
					return nil, err
				}
			}
			if derr := conn.Deallocate(ctx, s.markerStmt); derr != nil {
				return nil, err
			}
			continue
		}
		return tx, err
	}
}

// beginMarkerSQL is the BEGIN (with the configured transaction options)
// and the marker insert (EXECUTE of the prepared statement, or the INSERT
// itself) as one simple query. Simple queries take no parameters, so the
// values are literals: the handler name is quoted as an escape string
// literal (safe whatever standard_conforming_strings says), the event id is
// a UUID's canonical text, the time NULL (the database's now()) or RFC 3339
// text.
func (s *ProcessedEventStore) beginMarkerSQL(handler string, id eventbus.EventID, prepared bool) string {
	var b strings.Builder
	b.Grow(len(s.beginSQL) + len(s.tbl) + len(handler) + 160)
	b.WriteString(s.beginSQL)
	if prepared {
		b.WriteString("; EXECUTE ")
		b.WriteString(s.markerStmt)
		b.WriteString("(E'")
	} else {
		b.WriteString("; INSERT INTO ")
		b.WriteString(s.tbl)
		b.WriteString(" (handler_name, event_id, processed_at) VALUES (E'")
	}
	writeEscaped(&b, handler)
	b.WriteString("', '")
	b.WriteString(id.String())
	b.WriteString("', ")
	switch {
	case s.cfg.Now != nil:
		b.WriteByte('\'')
		b.WriteString(s.cfg.Now().UTC().Format(time.RFC3339Nano))
		b.WriteString("'::timestamptz")
	case prepared:
		b.WriteString("NULL") // the statement's coalesce(..., now())
	default:
		b.WriteString("now()")
	}
	b.WriteByte(')')
	return b.String()
}

// writeEscaped writes s for the inside of an escape string literal (E'...'):
// quotes and backslashes doubled, which is safe whatever
// standard_conforming_strings says. s must not contain NUL.
func writeEscaped(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' || c == '\'' {
			b.WriteByte(c)
		}
		b.WriteByte(c)
	}
}

// quoteLiteral is s as an escape string literal. s must not contain NUL.
func quoteLiteral(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 4)
	b.WriteString("E'")
	writeEscaped(&b, s)
	b.WriteByte('\'')
	return b.String()
}

// renderBegin is the BEGIN statement for opts (pgx renders it the same
// way; its renderer is not exported).
func renderBegin(opts pgx.TxOptions) string {
	if opts.BeginQuery != "" {
		return opts.BeginQuery
	}
	sql := "BEGIN"
	if opts.IsoLevel != "" {
		sql += " ISOLATION LEVEL " + string(opts.IsoLevel)
	}
	if opts.AccessMode != "" {
		sql += " " + string(opts.AccessMode)
	}
	if opts.DeferrableMode != "" {
		sql += " " + string(opts.DeferrableMode)
	}
	return sql
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
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
