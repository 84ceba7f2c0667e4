package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults of OutboxConfig.
const (
	DefaultOutboxTable     = "outbox"
	DefaultProcessedTable  = "processed_events"
	DefaultNotifyChannel   = "eventkit_outbox"
	DefaultCleanupLockWait = 5 * time.Second
	DefaultNotifyCoalesce  = 5 * time.Millisecond
)

// OutboxConfig configures an Outbox.
type OutboxConfig struct {
	// Schema holds the table. Defaults to "" (unqualified: the connection's
	// search_path decides).
	Schema string
	// Table is the outbox table. Defaults to DefaultOutboxTable.
	Table string
	// NotifyChannel is the channel Notify signals (pg_notify, empty
	// payload) and the relay listens on. Defaults to DefaultNotifyChannel;
	// set DisableNotify to send and listen to nothing.
	NotifyChannel string
	// DisableNotify turns the LISTEN/NOTIFY wake-up off (needed behind a
	// transaction-pooling PgBouncer); relays in the same process as the
	// writer are still woken by Notify directly. Defaults to false.
	DisableNotify bool
	// NotifyInTx makes Write send the pg_notify from the writing
	// transaction itself, for writers that commit on their own and cannot
	// call Notify after COMMIT. It costs throughput under concurrency:
	// PostgreSQL serialises the commits of notifying transactions on one
	// lock held across their WAL flush. Defaults to false: Write does not
	// notify; UnitOfWork and ProcessedEventStore call Notify after their
	// COMMIT (and notify in the transaction when they joined one they do
	// not commit), and callers of Write call Notify after theirs.
	NotifyInTx bool
	// NotifyCoalesce is the shortest time between two NOTIFYs. A Notify
	// after a quiet spell is sent at once; Notify calls during a burst are
	// merged into one NOTIFY at the end of the window (sent on a pooled
	// connection, outside any business transaction), so a relay in another
	// process waits at most this much longer to be woken, and busy writers
	// pay for one NOTIFY per window, not one per commit. Defaults to
	// DefaultNotifyCoalesce; negative sends without waiting (still at most
	// one NOTIFY in flight).
	NotifyCoalesce time.Duration
	// DeleteOnPublish makes the relay delete rows once published instead of
	// setting published_at and keeping them until Cleanup's retention
	// expires. Deleting is cheaper (no new row version, no index entries)
	// but published rows can no longer be inspected or replayed from the
	// table. Defaults to false.
	DeleteOnPublish bool
	// LockTimeout bounds how long a cleanup DELETE waits for row locks
	// (SET LOCAL lock_timeout). Defaults to DefaultCleanupLockWait.
	LockTimeout time.Duration
	// ListenBackoff spaces reconnections of the LISTEN connection. Defaults
	// to eventbus.Backoff{Initial: 100ms, Max: 5s}.
	ListenBackoff eventbus.Backoff
	// Logger logs listener reconnections. Defaults to slog.Default().
	Logger *slog.Logger
}

// Outbox is the PostgreSQL outbox: the Writer applications call inside
// their transactions, and the Store (plus wake-up source and cleanup store)
// the relay and the cleanup job use. It is safe for concurrent use.
type Outbox struct {
	pool  *pgxpool.Pool
	cfg   OutboxConfig
	table string // sanitized, possibly schema-qualified
	// lockKey is the first key of the table's advisory locks: its OID + 1
	// (0 until known; see tableKey).
	lockKey atomic.Int64
	log     *slog.Logger

	insertSQL, insertNotifySQL       string
	insertOneSQL, insertOneNotifySQL string
	claimSQL                         string
	notifySQL                        string

	notifier notifier
}

var (
	_ outbox.Writer[pgx.Tx] = (*Outbox)(nil)
	_ outbox.Store          = (*Outbox)(nil)
	_ outbox.WakeSource     = (*Outbox)(nil)
	_ outbox.CleanupStore   = (*Outbox)(nil)
)

// NewOutbox returns the outbox over pool (migrated with Migrate); cfg may be
// nil. It does not touch the database.
func NewOutbox(pool *pgxpool.Pool, cfg *OutboxConfig) (*Outbox, error) {
	if pool == nil {
		return nil, fmt.Errorf("%w: nil pool", outbox.ErrConfig)
	}
	var c OutboxConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Table == "" {
		c.Table = DefaultOutboxTable
	}
	if c.NotifyChannel == "" {
		c.NotifyChannel = DefaultNotifyChannel
	}
	if len(c.NotifyChannel) > 63 {
		return nil, fmt.Errorf("%w: notify channel longer than 63 bytes", outbox.ErrConfig)
	}
	if strings.IndexByte(c.NotifyChannel, 0) >= 0 {
		return nil, fmt.Errorf("%w: notify channel contains a NUL byte", outbox.ErrConfig)
	}
	if c.LockTimeout < 0 {
		return nil, fmt.Errorf("%w: negative LockTimeout", outbox.ErrConfig)
	}
	if c.LockTimeout == 0 {
		c.LockTimeout = DefaultCleanupLockWait
	}
	if c.NotifyCoalesce == 0 {
		c.NotifyCoalesce = DefaultNotifyCoalesce
	}
	if c.ListenBackoff == (eventbus.Backoff{}) {
		c.ListenBackoff = eventbus.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
	}
	log := c.Logger
	if log == nil {
		log = slog.Default()
	}
	o := &Outbox{pool: pool, cfg: c, table: qualify(c.Schema, c.Table), log: log}
	o.notifier.o, o.notifier.window = o, c.NotifyCoalesce
	o.insertSQL = `INSERT INTO ` + o.table + ` (event_id, event_type, schema_version, aggregate_type, aggregate_id, payload, metadata, occurred_at)
SELECT u.event_id, u.event_type, u.schema_version, u.aggregate_type, u.aggregate_id, u.payload, u.metadata, u.occurred_at
FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[], $6::json[], $7::jsonb[], $8::timestamptz[])
  WITH ORDINALITY AS u(event_id, event_type, schema_version, aggregate_type, aggregate_id, payload, metadata, occurred_at, ord)
ORDER BY u.ord`
	o.insertNotifySQL = `WITH ins AS (` + o.insertSQL + `) SELECT pg_notify($9, '')`
	o.insertOneSQL = `INSERT INTO ` + o.table + ` (event_id, event_type, schema_version, aggregate_type, aggregate_id, payload, metadata, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`
	// A simple query with the channel as a literal: no parameters to
	// encode, and the same round trip.
	o.notifySQL = "SELECT pg_notify(" + quoteLiteral(c.NotifyChannel) + ", '')"
	o.insertOneNotifySQL = `WITH ins AS (` + o.insertOneSQL + `) SELECT pg_notify($9, '')`
	// A row the scan passes over because another relay holds its
	// aggregate, or because it is backing off (possibly only since this
	// statement's snapshot: a row lock re-check then sees the new
	// version), records its id in a transaction-local setting (the lowest
	// one wins); only then can a later row of that aggregate have been
	// claimed out of order, and only then does Claim run its order check,
	// from that id on.
	o.claimSQL = `SELECT ` + recordCols + ` FROM ` + o.table + ` o
WHERE published_at IS NULL AND quarantined_at IS NULL
  AND (next_attempt_at <= now() OR ` + claimPassedSet + `)
  AND NOT EXISTS (SELECT 1 FROM ` + o.table + ` b
      WHERE b.aggregate_type = o.aggregate_type AND b.aggregate_id = o.aggregate_id AND b.id < o.id
        AND b.published_at IS NULL AND b.quarantined_at IS NULL AND b.attempts > 0 AND b.next_attempt_at > now())
  AND (pg_try_advisory_xact_lock($2, hashtext(o.aggregate_type || '/' || o.aggregate_id)) OR ` + claimPassedSet + `)
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED`
	return o, nil
}

// claimPassedSet records, for the rest of the claim's transaction, the
// lowest id of a row the scan passed over (o.id of the row at hand); it is
// always false, so the row stays out.
const claimPassedSet = `set_config('eventkit.claim_passed',
    least(nullif(current_setting('eventkit.claim_passed', true), '')::bigint, o.id)::text, true) IS NULL`

// claimPassedSQL reads that id (NULL when no row was passed over in this
// transaction).
const claimPassedSQL = `SELECT nullif(current_setting('eventkit.claim_passed', true), '')::bigint`

func qualify(schema, table string) string {
	if schema == "" {
		return pgx.Identifier{table}.Sanitize()
	}
	return pgx.Identifier{schema, table}.Sanitize()
}

// tableKey returns the first key of the table's advisory locks (the
// aggregate locks of Claim, the cleanup lock): the table's OID, looked up
// once. Every Outbox on one table agrees on it however its name was
// written (schema-qualified, or found through search_path).
func (o *Outbox) tableKey(ctx context.Context, conn *pgxpool.Conn) (int32, error) {
	if k := o.lockKey.Load(); k != 0 {
		return int32(uint32(k - 1)), nil
	}
	var oid uint32
	if err := conn.QueryRow(ctx, "SELECT $1::regclass::oid", o.table).Scan(&oid); err != nil {
		return 0, fmt.Errorf("postgres outbox: resolve table %s: %w", o.table, err)
	}
	o.lockKey.Store(int64(oid) + 1)
	return int32(oid), nil
}

// hashKey is a stable 32-bit FNV-1a hash.
func hashKey(s string) int32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return int32(h)
}

// Table returns the (sanitized, possibly schema-qualified) table name.
func (o *Outbox) Table() string { return o.table }

// Notify tells the relays that rows were committed: relays listening
// through this Outbox in this process are woken at once, and one NOTIFY
// (empty payload) is sent within NotifyCoalesce on a connection of the pool,
// covering every Notify call made meanwhile. Call it after COMMIT, never
// before (a relay woken early finds nothing and waits for its next poll). It
// never blocks and never fails: a lost wake-up costs at most one poll
// interval. UnitOfWork and ProcessedEventStore call it for you.
func (o *Outbox) Notify() { o.notifier.signal() }

// Close waits (at most a few seconds) for the NOTIFY that Notify scheduled
// and stops scheduling more; Notify after Close still wakes local relays.
// Close it before closing the pool. It does not close the pool.
func (o *Outbox) Close() { o.notifier.close() }

// Write implements outbox.Writer: it validates envs and stores them with one
// statement in tx. It does not signal the relays unless NotifyInTx is set:
// call Notify after the transaction committed. An invalid envelope fails
// the whole call with an error wrapping eventbus.ErrInvalidEnvelope, before
// anything is written.
func (o *Outbox) Write(ctx context.Context, tx pgx.Tx, envs ...eventbus.Envelope) error {
	return o.write(ctx, tx, o.cfg.NotifyInTx, envs)
}

// write stores envs in tx, with pg_notify in the same statement when
// notify is set (and notifications are enabled).
func (o *Outbox) write(ctx context.Context, tx pgx.Tx, notify bool, envs []eventbus.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	if tx == nil {
		return errors.New("postgres outbox: Write needs a transaction")
	}
	sql, args, err := o.insertStatement(notify, envs)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("postgres outbox: insert %d events: %w", len(envs), err)
	}
	return nil
}

// insertStatement validates envs (at least one) and returns the one
// statement that stores them: a single-row INSERT ... VALUES for one
// envelope, an INSERT ... SELECT unnest(...) for several, wrapped in a
// SELECT pg_notify when notify is set (and notifications are enabled).
func (o *Outbox) insertStatement(notify bool, envs []eventbus.Envelope) (string, []any, error) {
	notify = notify && !o.cfg.DisableNotify
	if len(envs) == 1 {
		return o.insertOne(notify, &envs[0])
	}
	n := len(envs)
	uuids := make([]pgtype.UUID, n)
	types := make([]string, n)
	versions := make([]int32, n)
	aggTypes := make([]string, n)
	aggIDs := make([]string, n)
	payloads := make([]string, n)
	metas := make([]string, n)
	occurred := make([]time.Time, n)
	for i := range envs {
		e := &envs[i]
		if err := e.Validate(); err != nil {
			return "", nil, fmt.Errorf("postgres outbox: envelope %d: %w", i, err)
		}
		md, err := marshalMetadata(e.Metadata)
		if err != nil {
			return "", nil, fmt.Errorf("postgres outbox: envelope %d metadata: %w", i, err)
		}
		uuids[i] = pgtype.UUID{Bytes: e.EventID, Valid: true}
		types[i], versions[i] = e.EventType, int32(e.SchemaVersion)
		aggTypes[i], aggIDs[i] = e.AggregateType, e.AggregateID
		payloads[i], metas[i], occurred[i] = string(e.Payload), string(md), e.OccurredAt
	}
	args := []any{uuids, types, versions, aggTypes, aggIDs, payloads, metas, occurred}
	if notify {
		return o.insertNotifySQL, append(args, o.cfg.NotifyChannel), nil
	}
	return o.insertSQL, args, nil
}

func (o *Outbox) insertOne(notify bool, e *eventbus.Envelope) (string, []any, error) {
	if err := e.Validate(); err != nil {
		return "", nil, fmt.Errorf("postgres outbox: envelope 0: %w", err)
	}
	md, err := marshalMetadata(e.Metadata)
	if err != nil {
		return "", nil, fmt.Errorf("postgres outbox: envelope 0 metadata: %w", err)
	}
	// [16]byte encodes as uuid directly (uuid.UUID goes through
	// driver.Valuer and a string: 10% of the writer's CPU in B8).
	args := []any{[16]byte(e.EventID), e.EventType, int32(e.SchemaVersion), e.AggregateType, e.AggregateID, string(e.Payload), string(md), e.OccurredAt}
	if notify {
		return o.insertOneNotifySQL, append(args, o.cfg.NotifyChannel), nil
	}
	return o.insertOneSQL, args, nil
}

var emptyMetadata = []byte("{}")

// marshalMetadata is json.Marshal with the common empty case precomputed.
func marshalMetadata(m eventbus.Metadata) ([]byte, error) {
	if m.IsZero() {
		return emptyMetadata, nil
	}
	return json.Marshal(m)
}

const recordCols = `id, event_id, event_type, schema_version, aggregate_type, aggregate_id, payload::text, metadata::text, occurred_at, attempts, coalesce(last_error, ''), created_at, quarantined_at`

func scanRecord(row pgx.Row) (outbox.Record, error) {
	var (
		r        outbox.Record
		id       [16]byte
		version  int32
		attempts int32
		payload  string
		meta     string
		quar     *time.Time
	)
	err := row.Scan(&r.ID, &id, &r.Envelope.EventType, &version, &r.Envelope.AggregateType, &r.Envelope.AggregateID,
		&payload, &meta, &r.Envelope.OccurredAt, &attempts, &r.LastError, &r.CreatedAt, &quar)
	if err != nil {
		return r, err
	}
	r.Envelope.EventID = eventbus.EventID(id)
	r.Envelope.SchemaVersion = int(version)
	r.Envelope.Payload = json.RawMessage(payload)
	r.Envelope.OccurredAt = r.Envelope.OccurredAt.UTC()
	r.CreatedAt = r.CreatedAt.UTC()
	if meta != "" && meta != "{}" {
		if err := json.Unmarshal([]byte(meta), &r.Envelope.Metadata); err != nil {
			return r, fmt.Errorf("postgres outbox: row %d metadata: %w", r.ID, err)
		}
	}
	r.Attempts = int(attempts)
	if quar != nil {
		r.QuarantinedAt = quar.UTC()
	}
	return r, nil
}

// Claim implements outbox.Store.
//
// In one transaction it selects up to limit due pending rows in id order
// with FOR UPDATE SKIP LOCKED, taking a transaction-scoped advisory lock per
// aggregate (pg_try_advisory_xact_lock) so that no two relays hold rows of
// one aggregate; rows whose aggregate has an earlier row backing off are not
// claimed. When the scan passed a row over (its aggregate held by another
// relay, or the row backing off), a second statement (a fresh snapshot,
// taken while the aggregate locks are held) drops claimed rows that a
// concurrent relay's failure has since put behind a backing-off row, looking
// only from the lowest id passed over to the batch's highest;
// otherwise no earlier row of a claimed aggregate can be pending, and the
// check is skipped. This assumes only relays lock pending rows (SKIP
// LOCKED passes a row locked by anyone else without recording it). fn
// publishes; its outcome is written and the transaction committed, which
// releases everything. The outcome is written on a context of its own
// (markTimeout, not ctx's deadline): rows fn published are marked even when
// publishing used up ctx, instead of being published again by the next
// claim.
func (o *Outbox) Claim(ctx context.Context, limit int, fn func(ctx context.Context, recs []outbox.Record) outbox.Outcome) (int, error) {
	if limit <= 0 {
		limit = outbox.DefaultBatchSize
	}
	conn, err := o.pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("postgres outbox: begin claim: %w", err)
	}
	// A connection whose transaction could not be ended is not idle: the
	// pool destroys it on Release.
	defer conn.Release()
	key, err := o.tableKey(ctx, conn)
	if err != nil {
		return 0, err
	}
	ended := false
	defer func() {
		if !ended {
			_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	// BEGIN and the claim travel together, and so do the outcome and
	// COMMIT: three round trips per batch instead of five.
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(o.claimSQL, limit, key)
	b.Queue(claimPassedSQL)
	br := conn.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return 0, fmt.Errorf("postgres outbox: begin claim: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return 0, fmt.Errorf("postgres outbox: claim: %w", err)
	}
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outbox.Record, error) { return scanRecord(row) })
	var passed *int64
	if err == nil {
		err = br.QueryRow().Scan(&passed)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("postgres outbox: claim: %w", err)
	}
	if len(recs) == 0 {
		return 0, nil
	}
	if passed != nil {
		recs, err = o.dropBlocked(ctx, conn, recs, *passed)
		if err != nil {
			return 0, err
		}
	}
	out := fn(ctx, recs)
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), markTimeout)
	defer cancel()
	b = &pgx.Batch{}
	o.queueOutcome(b, out)
	b.Queue("COMMIT")
	br = conn.SendBatch(mctx, b)
	for range b.Len() - 1 {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return len(recs), fmt.Errorf("postgres outbox: mark outcome: %w", err)
		}
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return len(recs), fmt.Errorf("postgres outbox: commit claim: %w", err)
	}
	ended = true
	if tag.String() == "ROLLBACK" {
		return len(recs), fmt.Errorf("postgres outbox: commit claim: %w", pgx.ErrTxCommitRollback)
	}
	return len(recs), nil
}

// markTimeout bounds writing a claim's outcome and committing it.
const markTimeout = 30 * time.Second

// dropBlocked removes claimed rows that have an earlier pending,
// non-quarantined row of their aggregate that was not claimed. It runs with
// a fresh snapshot while this transaction holds the aggregates' advisory
// locks, so no other relay is publishing rows of those aggregates: such an
// earlier row is one the claim scan passed while another relay still held
// the aggregate, or one that is backing off; minPassed is the lowest id
// the scan passed over. So it walks only the pending rows from minPassed to
// the batch's highest id, not a per-aggregate index that every INSERT would
// pay for; the range is bounded on both ends, whatever plan statistics
// choose.
func (o *Outbox) dropBlocked(ctx context.Context, tx *pgxpool.Conn, recs []outbox.Record, minPassed int64) ([]outbox.Record, error) {
	n := len(recs)
	ids, types, aggs := make([]int64, n), make([]string, n), make([]string, n)
	var maxID int64
	for i := range recs {
		ids[i], types[i], aggs[i] = recs[i].ID, recs[i].Envelope.AggregateType, recs[i].Envelope.AggregateID
		maxID = max(maxID, recs[i].ID)
	}
	if maxID < minPassed {
		return recs, nil // every row passed over comes after the batch
	}
	// Hash joins against the batch's own ids and aggregates: no lookups of
	// the claimed rows, no per-row scan of an id array.
	rows, err := tx.Query(ctx, `SELECT b.aggregate_type, b.aggregate_id, min(b.id) FROM `+o.table+` b
WHERE b.published_at IS NULL AND b.quarantined_at IS NULL AND b.id >= $5 AND b.id < $2
  AND (b.aggregate_type, b.aggregate_id) IN (SELECT * FROM unnest($3::text[], $4::text[]))
  AND NOT EXISTS (SELECT 1 FROM unnest($1::bigint[]) c(id) WHERE c.id = b.id)
GROUP BY 1, 2`, ids, maxID, types, aggs, minPassed)
	if err != nil {
		return nil, fmt.Errorf("postgres outbox: claim check: %w", err)
	}
	minBy := map[[2]string]int64{}
	var k [2]string
	var m int64
	_, err = pgx.ForEachRow(rows, []any{&k[0], &k[1], &m}, func() error {
		minBy[k] = m
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres outbox: claim check: %w", err)
	}
	if len(minBy) == 0 {
		return recs, nil
	}
	kept := recs[:0]
	for _, r := range recs {
		if m, ok := minBy[[2]string{r.Envelope.AggregateType, r.Envelope.AggregateID}]; ok && r.ID > m {
			continue
		}
		kept = append(kept, r)
	}
	return kept, nil
}

// queueOutcome queues the statements that store out.
func (o *Outbox) queueOutcome(b *pgx.Batch, out outbox.Outcome) {
	if len(out.Published) > 0 {
		sql := `UPDATE ` + o.table + ` SET published_at = now() WHERE id = ANY($1)`
		if o.cfg.DeleteOnPublish {
			sql = `DELETE FROM ` + o.table + ` WHERE id = ANY($1)`
		}
		b.Queue(sql, out.Published)
	}
	if len(out.Failed) > 0 {
		n := len(out.Failed)
		ids := make([]int64, n)
		errs := make([]string, n)
		delays := make([]float64, n)
		quar := make([]bool, n)
		for i, f := range out.Failed {
			ids[i], errs[i], delays[i], quar[i] = f.ID, strings.ToValidUTF8(strings.ReplaceAll(f.Err, "\x00", ""), "?"), f.RetryAfter.Seconds(), f.Quarantine
		}
		b.Queue(`UPDATE `+o.table+` o SET attempts = o.attempts + 1, last_error = f.err,
  next_attempt_at = clock_timestamp() + make_interval(secs => f.delay),
  quarantined_at = CASE WHEN f.quar THEN now() END
FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::bool[]) AS f(id, err, delay, quar)
WHERE o.id = f.id`, ids, errs, delays, quar)
	}
}

// OldestPending implements outbox.Store: the first pending row in id order
// (one index probe, whatever the backlog); created_at is its transaction's
// start.
func (o *Outbox) OldestPending(ctx context.Context) (time.Time, time.Time, bool, error) {
	var created, now time.Time
	err := o.pool.QueryRow(ctx, `SELECT created_at, now() FROM `+o.table+`
WHERE published_at IS NULL AND quarantined_at IS NULL ORDER BY id LIMIT 1`).Scan(&created, &now)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, time.Time{}, false, fmt.Errorf("postgres outbox: oldest pending: %w", err)
	}
	return created, now, true, nil
}

// PendingCount returns the number of pending (unpublished, not quarantined)
// rows.
func (o *Outbox) PendingCount(ctx context.Context) (int64, error) {
	var n int64
	err := o.pool.QueryRow(ctx, `SELECT count(*) FROM `+o.table+` WHERE published_at IS NULL AND quarantined_at IS NULL`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("postgres outbox: count pending: %w", err)
	}
	return n, nil
}

// Quarantined implements outbox.Store.
func (o *Outbox) Quarantined(ctx context.Context, limit int) ([]outbox.Record, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := o.pool.Query(ctx, `SELECT `+recordCols+` FROM `+o.table+`
WHERE quarantined_at IS NOT NULL AND published_at IS NULL ORDER BY quarantined_at, id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres outbox: list quarantined: %w", err)
	}
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outbox.Record, error) { return scanRecord(row) })
	if err != nil {
		return nil, fmt.Errorf("postgres outbox: list quarantined: %w", err)
	}
	return recs, nil
}

// Rearm implements outbox.Store.
func (o *Outbox) Rearm(ctx context.Context, ids ...eventbus.EventID) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	tag, err := o.pool.Exec(ctx, `UPDATE `+o.table+` SET quarantined_at = NULL, attempts = 0, next_attempt_at = now()
WHERE event_id = ANY($1::uuid[]) AND quarantined_at IS NOT NULL AND published_at IS NULL`, s)
	if err != nil {
		return 0, fmt.Errorf("postgres outbox: rearm: %w", err)
	}
	return tag.RowsAffected(), nil
}

// TryLock implements outbox.CleanupStore with a session advisory lock held
// on a dedicated pooled connection.
func (o *Outbox) TryLock(ctx context.Context) (func(), bool, error) {
	conn, err := o.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("postgres outbox: cleanup lock: %w", err)
	}
	key, err := o.tableKey(ctx, conn)
	if err != nil {
		conn.Release()
		return nil, false, err
	}
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, $2)", key, int32(0x636c6e)).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("postgres outbox: cleanup lock: %w", err)
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	release := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1, $2)", key, int32(0x636c6e)); err != nil {
			// The session may still hold the lock: drop the connection.
			_ = conn.Conn().Close(ctx)
		}
		conn.Release()
	}
	return release, true, nil
}

// DeletePublishedBefore implements outbox.CleanupStore. Rows locked by
// someone else are skipped, and lock waits are bounded by LockTimeout.
func (o *Outbox) DeletePublishedBefore(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", o.cfg.LockTimeout.Milliseconds())); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM `+o.table+` WHERE id IN (
  SELECT id FROM `+o.table+` WHERE published_at IS NOT NULL AND published_at < $1
  ORDER BY published_at LIMIT $2 FOR UPDATE SKIP LOCKED)`, cutoff, limit)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("postgres outbox: delete published: %w", err)
	}
	return n, nil
}

// Listen implements outbox.WakeSource: LISTEN on a dedicated connection
// (not from the pool), reconnecting with backoff after connection loss and
// waking once after every (re)connection, since notifications sent while
// disconnected are lost. While it runs, Notify calls on this Outbox wake it
// directly too. With DisableNotify it only waits for those and for ctx.
func (o *Outbox) Listen(ctx context.Context, wake func()) error {
	defer o.notifier.addLocal(wake)()
	if o.cfg.DisableNotify {
		<-ctx.Done()
		return ctx.Err()
	}
	cc := o.pool.Config().ConnConfig.Copy()
	cc.RuntimeParams["application_name"] = ListenerApplicationName(o.cfg.NotifyChannel)
	failures := 0
	for ctx.Err() == nil {
		err := o.listenOnce(ctx, cc, wake, &failures)
		if ctx.Err() != nil {
			break
		}
		failures++
		d := o.cfg.ListenBackoff.Delay(failures)
		o.log.Warn("outbox listener: connection lost, reconnecting", "channel", o.cfg.NotifyChannel, "retry_in", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	return ctx.Err()
}

// ListenerApplicationName is the application_name of the relay's LISTEN
// connection for a channel (operators and tests find it in pg_stat_activity).
func ListenerApplicationName(channel string) string {
	name := "eventkit-listen-" + channel
	if len(name) <= 63 {
		return name
	}
	// PostgreSQL keeps 63 bytes; cut at a character boundary so the name
	// stays valid UTF-8 and can be looked up in pg_stat_activity.
	n := 63
	for n > 0 && !utf8.RuneStart(name[n]) {
		n--
	}
	return name[:n]
}

func (o *Outbox) listenOnce(ctx context.Context, cc *pgx.ConnConfig, wake func(), failures *int) error {
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{o.cfg.NotifyChannel}.Sanitize()); err != nil {
		return err
	}
	*failures = 0
	wake() // anything committed while we were not listening
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		wake()
	}
}

// writeAndCommit stores envs in tx and commits it in one round trip: the
// INSERT and COMMIT go in one pipeline. If the INSERT fails, PostgreSQL
// skips the COMMIT (and a COMMIT of an aborted transaction reports
// ROLLBACK), so nothing is stored without its events. ended reports
// whether the transaction is over (committed, or ended by a failed COMMIT);
// when it is not, the caller rolls back. tx must not be used for anything
// after a call that ended it, not even Rollback: pgx does not know the
// pipeline committed.
func (o *Outbox) writeAndCommit(ctx context.Context, tx pgx.Tx, envs []eventbus.Envelope) (ended bool, err error) {
	sql, args, err := o.insertStatement(o.cfg.NotifyInTx, envs)
	if err != nil {
		return false, err
	}
	var b pgx.Batch
	b.Queue(sql, args...)
	b.Queue("COMMIT")
	br := tx.SendBatch(ctx, &b)
	_, insErr := br.Exec()
	tag, commitErr := br.Exec()
	closeErr := br.Close()
	status := tx.Conn().PgConn().TxStatus()
	ended = status == 'I' || tx.Conn().IsClosed()
	switch {
	case insErr != nil:
		return ended, fmt.Errorf("postgres outbox: insert %d events: %w", len(envs), insErr)
	case commitErr != nil:
		return ended, fmt.Errorf("postgres: commit: %w", commitErr)
	case closeErr != nil:
		return ended, fmt.Errorf("postgres: commit: %w", closeErr)
	case tag.String() == "ROLLBACK":
		return ended, fmt.Errorf("postgres: commit: %w", pgx.ErrTxCommitRollback)
	}
	return ended, nil
}
