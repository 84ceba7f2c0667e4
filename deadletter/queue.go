package deadletter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// Defaults of Config.
const (
	// DefaultPageSize is the page size List uses when none is asked for.
	DefaultPageSize = 50
	// DefaultMaxPageSize caps the page size List returns.
	DefaultMaxPageSize = 500
	// DefaultMaxReplayBatch caps how many records one ReplayFilter call replays.
	DefaultMaxReplayBatch = 100
)

// Purge confirmation tokens. Purge refuses to run unless its confirm
// argument equals ConfirmPurge, or ConfirmPurgeAll when the filter is empty
// (a purge of the whole queue has to say so).
const (
	ConfirmPurge    = "purge"
	ConfirmPurgeAll = "purge-all"
)

// Config tunes a Queue. The zero value is usable.
type Config struct {
	// Logger receives the audit log (one line per mutation: record id,
	// event type and id, handler, actor; never payloads). Defaults to
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock used for replay times. Defaults to time.Now.
	Now func() time.Time
	// RedactPayload replaces envelope payloads and raw entry values with
	// RedactedPayload in every record the Queue returns (List, Get, Replay),
	// so API responses never show event content. Replay itself still sends
	// the full event. Defaults to false.
	RedactPayload bool
	// MaxPageSize caps Page.Limit in List. Defaults to DefaultMaxPageSize.
	MaxPageSize int
	// MaxReplayBatch caps the limit of ReplayFilter. Defaults to
	// DefaultMaxReplayBatch.
	MaxReplayBatch int
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxPageSize == 0 {
		c.MaxPageSize = DefaultMaxPageSize
	}
	if c.MaxReplayBatch == 0 {
		c.MaxReplayBatch = DefaultMaxReplayBatch
	}
	return c
}

func (c Config) validate() error {
	if c.MaxPageSize < 1 {
		return fmt.Errorf("deadletter: MaxPageSize %d must be positive", c.MaxPageSize)
	}
	if c.MaxReplayBatch < 1 {
		return fmt.Errorf("deadletter: MaxReplayBatch %d must be positive", c.MaxReplayBatch)
	}
	return nil
}

// Queue is the operator-facing service over a Store: list, inspect, replay,
// delete and purge dead-lettered events, with an audit log of every
// mutation. It is safe for concurrent use.
type Queue struct {
	store    Store
	replayer Replayer
	cfg      Config
	log      *slog.Logger
}

// NewQueue returns a Queue over store. replayer may be nil, in which case
// Replay and ReplayFilter fail with ErrNoReplayer. cfg may be nil.
func NewQueue(store Store, replayer Replayer, cfg *Config) (*Queue, error) {
	if store == nil {
		return nil, errors.New("deadletter: NewQueue needs a store")
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	c = c.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &Queue{store: store, replayer: replayer, cfg: c, log: c.Logger}, nil
}

// Store returns the queue's store.
func (q *Queue) Store() Store { return q.store }

// MaxPageSize is the largest page List returns.
func (q *Queue) MaxPageSize() int { return q.cfg.MaxPageSize }

// MaxReplayBatch is the largest limit ReplayFilter accepts.
func (q *Queue) MaxReplayBatch() int { return q.cfg.MaxReplayBatch }

func (q *Queue) out(rec Record) Record {
	if q.cfg.RedactPayload {
		return Redact(rec)
	}
	return rec
}

// ClampLimit turns a requested page size into the one List uses: 0 or
// less means DefaultPageSize (or MaxPageSize when that is smaller), more
// than MaxPageSize means MaxPageSize.
func (q *Queue) ClampLimit(limit int) int {
	if limit <= 0 {
		limit = DefaultPageSize
	}
	return min(limit, q.cfg.MaxPageSize)
}

// List returns a page of records matching f, newest failure first, and the
// cursor of the next page ("" at the end). The page size is clamped with
// ClampLimit.
func (q *Queue) List(ctx context.Context, f Filter, p Page) ([]Record, string, error) {
	if err := f.Validate(); err != nil {
		return nil, "", err
	}
	p.Limit = q.ClampLimit(p.Limit)
	recs, next, err := q.store.List(ctx, f, p)
	if err != nil {
		return nil, "", fmt.Errorf("deadletter: list: %w", err)
	}
	for i := range recs {
		recs[i] = q.out(recs[i])
	}
	return recs, next, nil
}

// Get returns one record or an error wrapping ErrNotFound.
func (q *Queue) Get(ctx context.Context, id string) (Record, error) {
	rec, err := q.store.Get(ctx, id)
	if err != nil {
		return Record{}, fmt.Errorf("deadletter: get %q: %w", id, err)
	}
	return q.out(rec), nil
}

// Count returns how many records match f.
func (q *Queue) Count(ctx context.Context, f Filter) (int, error) {
	if err := f.Validate(); err != nil {
		return 0, err
	}
	n, err := q.store.Count(ctx, f)
	if err != nil {
		return 0, fmt.Errorf("deadletter: count: %w", err)
	}
	return n, nil
}

// Depth returns how many records wait for an operator (status dead): the
// DLQ depth gauge.
func (q *Queue) Depth(ctx context.Context) (int, error) {
	return q.Count(ctx, Filter{Status: StatusDead})
}

func (q *Queue) audit(ctx context.Context, level slog.Level, msg string, rec Record, attrs ...slog.Attr) {
	base := []slog.Attr{
		slog.String("record_id", rec.ID),
		slog.String("event_id", rec.EventID),
		slog.String("event_type", rec.EventType),
		slog.String("handler", rec.Handler),
		slog.String("actor", ActorFromContext(ctx)),
	}
	q.log.LogAttrs(ctx, level, msg, append(base, attrs...)...)
}

// Replay sends the record's event back to the handler that failed it,
// keeping its event id, then marks the record replayed (ReplayCount + 1).
// A record whose entry never decoded fails with ErrNoEnvelope. If the
// replayed delivery fails again before Replay returns (a synchronous
// replayer), the failure written back by the bus is kept: the record ends
// up dead again with the incremented replay count, and is not replayed
// again automatically. Replay returns the record as stored afterwards.
func (q *Queue) Replay(ctx context.Context, id string) (Record, error) {
	if q.replayer == nil {
		return Record{}, ErrNoReplayer
	}
	before, err := q.store.Get(ctx, id)
	if err != nil {
		return Record{}, fmt.Errorf("deadletter: replay %q: %w", id, err)
	}
	return q.replay(ctx, before)
}

func (q *Queue) replay(ctx context.Context, before Record) (Record, error) {
	if before.Envelope == nil {
		q.audit(ctx, slog.LevelWarn, "deadletter: replay refused: no envelope", before)
		return Record{}, fmt.Errorf("deadletter: replay %q: %w", before.ID, ErrNoEnvelope)
	}
	if err := q.replayer.Replay(ctx, before); err != nil {
		q.audit(ctx, slog.LevelError, "deadletter: replay failed", before, slog.String("error", err.Error()))
		return Record{}, fmt.Errorf("deadletter: replay %q: %w: %w", before.ID, ErrReplayFailed, err)
	}
	if err := q.store.MarkReplayed(ctx, before.ID, q.cfg.Now()); err != nil {
		q.audit(ctx, slog.LevelError, "deadletter: replayed but not marked", before, slog.String("error", err.Error()))
		return Record{}, fmt.Errorf("deadletter: mark %q replayed: %w", before.ID, err)
	}
	// The replayed delivery may already have failed and been written back
	// by the bus: synchronously inside Replay (HandlerReplayer), or by an
	// asynchronous bus at any moment since. A failure written after
	// MarkReplayed has set the record dead itself (Store.Put). One written
	// before it was overwritten to "replayed" by MarkReplayed; the record
	// then still carries the new failure, so compare it with the record we
	// replayed and put the failure back (Put keeps the replay count). The
	// comparison runs after the mark, so a failure landing anywhere
	// between Replay and MarkReplayed is seen.
	after, err := q.store.Get(ctx, before.ID)
	if err != nil {
		return Record{}, fmt.Errorf("deadletter: replay %q: reread: %w", before.ID, err)
	}
	if after.Status == StatusReplayed && refailed(before, after) {
		if err := q.store.Put(ctx, after); err != nil {
			return Record{}, fmt.Errorf("deadletter: keep failure of replayed %q: %w", before.ID, err)
		}
		if after, err = q.store.Get(ctx, before.ID); err != nil {
			return Record{}, fmt.Errorf("deadletter: replay %q: reread: %w", before.ID, err)
		}
	}
	q.audit(ctx, slog.LevelInfo, "deadletter: replayed", after,
		slog.Int("replay_count", after.ReplayCount), slog.String("status", after.Status))
	return q.out(after), nil
}

// refailed reports whether a bus wrote a new failure of the record after
// before was read (MarkReplayed leaves the failure fields alone).
func refailed(before, after Record) bool {
	return !after.LastFailedAt.Equal(before.LastFailedAt) ||
		after.Attempts != before.Attempts || after.LastError != before.LastError ||
		after.SourceID != before.SourceID
}

// ReplayResult reports a ReplayFilter run.
type ReplayResult struct {
	// Matched is how many records were selected (at most the limit).
	Matched int `json:"matched"`
	// Replayed is how many of them were sent back.
	Replayed int `json:"replayed"`
	// Failed is how many could not be replayed; Errors says why.
	Failed int `json:"failed"`
	// More is true when further records match the filter beyond the limit.
	More bool `json:"more"`
	// Errors lists the failed records.
	Errors []ReplayError `json:"errors,omitempty"`
}

// ReplayError is one record ReplayFilter could not replay.
type ReplayError struct {
	ID  string `json:"id"`
	Err error  `json:"-"`
}

// ReplayFilter replays up to limit records matching f, newest failure
// first. limit is clamped to [1, MaxReplayBatch]. When f.Status is empty
// only dead records are replayed (records already replayed are in flight).
// Per-record failures are reported in the result, not as the error; the
// error is set only when the records could not be listed.
func (q *Queue) ReplayFilter(ctx context.Context, f Filter, limit int) (ReplayResult, error) {
	if q.replayer == nil {
		return ReplayResult{}, ErrNoReplayer
	}
	if f.Status == "" {
		f.Status = StatusDead
	}
	if err := f.Validate(); err != nil {
		return ReplayResult{}, err
	}
	if limit <= 0 || limit > q.cfg.MaxReplayBatch {
		limit = q.cfg.MaxReplayBatch
	}
	// Snapshot the selection first: replaying changes statuses (and a
	// re-failure moves a record to the front), which must not disturb paging.
	var (
		selected []Record
		cursor   string
		res      ReplayResult
	)
	for len(selected) < limit {
		page, next, err := q.store.List(ctx, f, Page{Cursor: cursor, Limit: min(limit-len(selected)+1, q.cfg.MaxPageSize)})
		if err != nil {
			return ReplayResult{}, fmt.Errorf("deadletter: replay by filter: list: %w", err)
		}
		for _, r := range page {
			if len(selected) == limit {
				res.More = true
				break
			}
			selected = append(selected, r)
		}
		if next == "" {
			break
		}
		cursor = next
		if len(selected) == limit {
			res.More = true
		}
	}
	q.log.LogAttrs(ctx, slog.LevelInfo, "deadletter: replay by filter",
		slog.String("actor", ActorFromContext(ctx)),
		slog.String("filter_event_type", f.EventType), slog.String("filter_handler", f.Handler),
		slog.String("filter_status", f.Status), slog.Int("selected", len(selected)), slog.Bool("more", res.More))
	res.Matched = len(selected)
	for _, r := range selected {
		if err := ctx.Err(); err != nil {
			res.Failed++
			res.Errors = append(res.Errors, ReplayError{ID: r.ID, Err: err})
			continue
		}
		if _, err := q.replay(ctx, r); err != nil {
			res.Failed++
			res.Errors = append(res.Errors, ReplayError{ID: r.ID, Err: err})
			continue
		}
		res.Replayed++
	}
	return res, nil
}

// Delete removes one record (an error wrapping ErrNotFound if absent).
func (q *Queue) Delete(ctx context.Context, id string) error {
	rec, err := q.store.Get(ctx, id)
	if err != nil {
		return fmt.Errorf("deadletter: delete %q: %w", id, err)
	}
	if err := q.store.Delete(ctx, id); err != nil {
		return fmt.Errorf("deadletter: delete %q: %w", id, err)
	}
	q.audit(ctx, slog.LevelInfo, "deadletter: deleted", rec)
	return nil
}

// Purge removes every record matching f and returns how many. confirm must
// be ConfirmPurge, or ConfirmPurgeAll when f is the zero filter (purging
// everything); anything else fails with ErrConfirmationRequired and removes
// nothing. When the store fails part way, Purge returns how many records
// it removed with the error, and audit-logs them either way.
func (q *Queue) Purge(ctx context.Context, f Filter, confirm string) (int, error) {
	if err := f.Validate(); err != nil {
		return 0, err
	}
	want := ConfirmPurge
	if f.IsZero() {
		want = ConfirmPurgeAll
	}
	if confirm != want {
		return 0, fmt.Errorf("%w: send confirm %q to purge %s", ErrConfirmationRequired, want, describe(f))
	}
	n, err := q.store.Purge(ctx, f)
	// A purge that failed part way has still removed n records: audit them.
	attrs := []slog.Attr{
		slog.String("actor", ActorFromContext(ctx)),
		slog.String("filter_event_type", f.EventType), slog.String("filter_handler", f.Handler),
		slog.String("filter_status", f.Status),
		slog.String("filter_failed_after", timeAttr(f.FailedAfter)),
		slog.String("filter_failed_before", timeAttr(f.FailedBefore)),
		slog.Int("purged", n),
	}
	if err != nil {
		q.log.LogAttrs(ctx, slog.LevelError, "deadletter: purge failed", append(attrs, slog.Any("error", err))...)
		return n, fmt.Errorf("deadletter: purge: %w", err)
	}
	q.log.LogAttrs(ctx, slog.LevelWarn, "deadletter: purged", attrs...)
	return n, nil
}

func describe(f Filter) string {
	if f.IsZero() {
		return "every record"
	}
	return "the matching records"
}

func timeAttr(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// parseLimit parses a page-size query value ("" = 0).
func parseLimit(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("limit %q must be a non-negative integer", s)
	}
	return n, nil
}
