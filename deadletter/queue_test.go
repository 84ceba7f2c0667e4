package deadletter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/deadletter"
	"github.com/choicesherpa/eventkit/deadletter/deadlettertest"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/idempotency"
)

// clock is a settable clock for tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond) // every reading is a new instant
	return c.now
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logLines decodes the JSON log lines.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		out = append(out, m)
	}
	return out
}

// effectHandler counts applied effects per event id; it fails while failing is set.
type effectHandler struct {
	failing  atomic.Bool
	calls    atomic.Int64
	mu       sync.Mutex
	applied  map[eventbus.EventID]int
	payloads [][]byte
}

func newEffectHandler() *effectHandler {
	return &effectHandler{applied: make(map[eventbus.EventID]int)}
}

func (h *effectHandler) Handle(_ context.Context, env eventbus.Envelope) error {
	h.calls.Add(1)
	if h.failing.Load() {
		return errors.New("downstream unavailable")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.applied[env.EventID]++
	h.payloads = append(h.payloads, append([]byte(nil), env.Payload...))
	return nil
}

func (h *effectHandler) effects(id eventbus.EventID) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.applied[id]
}

type bundle struct {
	store    *deadletter.MemoryStore
	queue    *deadletter.Queue
	handler  *effectHandler
	replayer *deadletter.HandlerReplayer
	logs     *syncBuffer
	clock    *clock
}

const handlerName = "dashboard"

func setup(t *testing.T, redact bool) *bundle {
	t.Helper()
	b := &bundle{store: deadletter.NewMemoryStore(nil), handler: newEffectHandler(), logs: &syncBuffer{}, clock: newClock()}
	var err error
	b.replayer, err = deadletter.NewHandlerReplayer(b.store, b.clock.Now)
	require.NoError(t, err)
	// The handler is idempotent: replays keep the event id, so it applies each event once.
	b.replayer.Register(handlerName, idempotency.Wrap(b.handler, idempotency.NewMemoryStore(nil), handlerName))
	b.queue, err = deadletter.NewQueue(b.store, b.replayer, &deadletter.Config{
		Logger:        slog.New(slog.NewJSONHandler(b.logs, nil)),
		Now:           b.clock.Now,
		RedactPayload: redact,
	})
	require.NoError(t, err)
	return b
}

// deadLetter stores a dead record for the handler, failing at ms.
func (b *bundle) deadLetter(t *testing.T, handler, typ string, ms int) deadletter.Record {
	t.Helper()
	rec := deadlettertest.NewRecord(handler, typ, ms)
	require.NoError(t, b.store.Put(context.Background(), rec))
	return rec
}

func TestNewQueueValidates(t *testing.T) {
	t.Parallel()
	_, err := deadletter.NewQueue(nil, nil, nil)
	require.Error(t, err)
	_, err = deadletter.NewQueue(deadletter.NewMemoryStore(nil), nil, &deadletter.Config{MaxPageSize: -1})
	require.Error(t, err)
	q, err := deadletter.NewQueue(deadletter.NewMemoryStore(nil), nil, nil)
	require.NoError(t, err)
	_, err = q.Replay(context.Background(), "x")
	require.ErrorIs(t, err, deadletter.ErrNoReplayer)
}

// Q3: replay one entry; the event id is kept and the record marked replayed.
func TestReplayOneKeepsEventIDAndMarksReplayed(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	ctx := deadletter.WithActor(context.Background(), "alice")
	rec := b.deadLetter(t, handlerName, "session.created.v1", 10)

	got, err := b.queue.Replay(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, 1, b.handler.effects(rec.Envelope.EventID), "the handler saw the original event id")
	require.Equal(t, deadletter.StatusReplayed, got.Status)
	require.Equal(t, 1, got.ReplayCount)
	require.NotNil(t, got.ReplayedAt)
	stored, err := b.store.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, deadletter.StatusReplayed, stored.Status)
	require.Equal(t, rec.Attempts, stored.Attempts, "failure history is kept")

	depth, err := b.queue.Depth(ctx)
	require.NoError(t, err)
	require.Zero(t, depth)
}

// Q3: replay one entry twice; the effect happens once.
func TestReplayTwiceAppliesEffectOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	ctx := context.Background()
	rec := b.deadLetter(t, handlerName, "session.created.v1", 10)

	_, err := b.queue.Replay(ctx, rec.ID)
	require.NoError(t, err)
	got, err := b.queue.Replay(ctx, rec.ID)
	require.NoError(t, err)
	require.EqualValues(t, 1, b.handler.calls.Load(), "the idempotent wrapper skipped the second delivery")
	require.Equal(t, 1, b.handler.effects(rec.Envelope.EventID))
	require.Equal(t, 2, got.ReplayCount)
	require.Equal(t, deadletter.StatusReplayed, got.Status)
}

// Q3: an entry that still fails returns to the DLQ with its replay count
// incremented, and does not loop.
func TestReplayStillFailingReturnsToQueue(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	ctx := context.Background()
	b.handler.failing.Store(true)
	rec := b.deadLetter(t, handlerName, "session.created.v1", 10)

	got, err := b.queue.Replay(ctx, rec.ID)
	require.NoError(t, err)
	require.EqualValues(t, 1, b.handler.calls.Load(), "one delivery, no loop")
	require.Equal(t, deadletter.StatusDead, got.Status, "back in the queue")
	require.Equal(t, 1, got.ReplayCount)
	require.Equal(t, "downstream unavailable", got.LastError)
	require.Equal(t, 1, got.Attempts)
	require.True(t, got.LastFailedAt.After(rec.LastFailedAt))
	require.True(t, got.FirstFailedAt.Equal(rec.FirstFailedAt))
	require.Equal(t, rec.Envelope.EventID.String(), got.EventID)

	n, err := b.store.Count(ctx, deadletter.Filter{})
	require.NoError(t, err)
	require.Equal(t, 1, n, "the same record, not a new one")
	depth, err := b.queue.Depth(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, depth)

	// Nothing replays it again on its own; a second manual replay counts 2.
	require.EqualValues(t, 1, b.handler.calls.Load())
	got, err = b.queue.Replay(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, 2, got.ReplayCount)
	require.Equal(t, deadletter.StatusDead, got.Status)

	// Once the handler recovers the replay succeeds, exactly once.
	b.handler.failing.Store(false)
	got, err = b.queue.Replay(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, 3, got.ReplayCount)
	require.Equal(t, deadletter.StatusReplayed, got.Status)
	require.Equal(t, 1, b.handler.effects(rec.Envelope.EventID))
}

// failingReplayer cannot send anything back.
type failingReplayer struct{}

func (failingReplayer) Replay(context.Context, deadletter.Record) error {
	return errors.New("bus unavailable")
}

func TestReplayErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	ctx := context.Background()

	_, err := b.queue.Replay(ctx, "missing/1")
	require.ErrorIs(t, err, deadletter.ErrNotFound)

	raw := deadletter.Record{ID: "dashboard/1-0", Handler: handlerName, Raw: map[string]string{"data": "{"}, Reason: deadletter.ReasonPermanent}
	require.NoError(t, b.store.Put(ctx, raw))
	_, err = b.queue.Replay(ctx, raw.ID)
	require.ErrorIs(t, err, deadletter.ErrNoEnvelope)
	stored, err := b.store.Get(ctx, raw.ID)
	require.NoError(t, err)
	require.Equal(t, deadletter.StatusDead, stored.Status)
	require.Zero(t, stored.ReplayCount)

	q, err := deadletter.NewQueue(b.store, failingReplayer{}, &deadletter.Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	rec := b.deadLetter(t, handlerName, "a.b.v1", 1)
	_, err = q.Replay(ctx, rec.ID)
	require.ErrorIs(t, err, deadletter.ErrReplayFailed)
	stored, err = b.store.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, deadletter.StatusDead, stored.Status, "not marked replayed when the replay was not sent")
	require.Zero(t, stored.ReplayCount)
}

// Q3: replay every entry matching a filter, bounded.
func TestReplayFilter(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	ctx := context.Background()
	other := newEffectHandler()
	b.replayer.Register("tracker", other)
	var mine []deadletter.Record
	for i := range 5 {
		mine = append(mine, b.deadLetter(t, handlerName, "session.created.v1", i))
	}
	b.deadLetter(t, handlerName, "cycle.completed.v1", 100)
	b.deadLetter(t, "tracker", "session.created.v1", 200)
	raw := deadletter.Record{ID: "dashboard/9-0", Handler: handlerName, EventType: "session.created.v1",
		Raw: map[string]string{"data": "{"}, Reason: deadletter.ReasonPermanent, LastFailedAt: deadlettertest.NewRecord("x", "a.b.v1", 50).LastFailedAt}
	require.NoError(t, b.store.Put(ctx, raw))

	f := deadletter.Filter{Handler: handlerName, EventType: "session.created.v1"}
	res, err := b.queue.ReplayFilter(ctx, f, 4)
	require.NoError(t, err)
	require.Equal(t, 4, res.Matched)
	require.True(t, res.More)
	require.Equal(t, 3, res.Replayed, "newest first: the raw record and three events")
	require.Equal(t, 1, res.Failed)
	require.Len(t, res.Errors, 1)
	require.Equal(t, raw.ID, res.Errors[0].ID)
	require.ErrorIs(t, res.Errors[0].Err, deadletter.ErrNoEnvelope)

	// Only dead records are picked by default: the rest this time.
	res, err = b.queue.ReplayFilter(ctx, f, 4)
	require.NoError(t, err)
	require.Equal(t, 3, res.Matched, "two events left and the raw record")
	require.Equal(t, 2, res.Replayed)
	require.False(t, res.More)
	for _, r := range mine {
		require.Equal(t, 1, b.handler.effects(r.Envelope.EventID))
	}
	require.Zero(t, other.calls.Load(), "other handlers' records are untouched")
	n, err := b.queue.Count(ctx, deadletter.Filter{Status: deadletter.StatusReplayed})
	require.NoError(t, err)
	require.Equal(t, 5, n)

	// The limit is capped by MaxReplayBatch.
	q, err := deadletter.NewQueue(b.store, b.replayer, &deadletter.Config{MaxReplayBatch: 2, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	res, err = q.ReplayFilter(ctx, deadletter.Filter{Status: deadletter.StatusReplayed}, 1000)
	require.NoError(t, err)
	require.Equal(t, 2, res.Matched)
	require.True(t, res.More)

	_, err = b.queue.ReplayFilter(ctx, deadletter.Filter{Status: "bogus"}, 1)
	require.ErrorIs(t, err, deadletter.ErrInvalidFilter)
}

func TestPurgeNeedsConfirmation(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	ctx := context.Background()
	for i := range 3 {
		b.deadLetter(t, handlerName, "a.b.v1", i)
	}
	b.deadLetter(t, "tracker", "a.b.v1", 9)

	for _, c := range []string{"", "yes", "PURGE", deadletter.ConfirmPurgeAll} {
		_, err := b.queue.Purge(ctx, deadletter.Filter{Handler: handlerName}, c)
		require.ErrorIs(t, err, deadletter.ErrConfirmationRequired, "confirm %q", c)
	}
	_, err := b.queue.Purge(ctx, deadletter.Filter{}, deadletter.ConfirmPurge)
	require.ErrorIs(t, err, deadletter.ErrConfirmationRequired, "purging everything needs purge-all")
	n, err := b.queue.Count(ctx, deadletter.Filter{})
	require.NoError(t, err)
	require.Equal(t, 4, n, "nothing removed without confirmation")

	n, err = b.queue.Purge(ctx, deadletter.Filter{Handler: handlerName}, deadletter.ConfirmPurge)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	n, err = b.queue.Purge(ctx, deadletter.Filter{}, deadletter.ConfirmPurgeAll)
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

// The zero instant written in another zone is still "no bound": such a
// filter purges everything and needs purge-all, as the empty filter does.
func TestPurgeAllConfirmationKeepsZeroInstantsInAnyZone(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	ctx := context.Background()
	for i := range 3 {
		b.deadLetter(t, handlerName, "a.b.v1", i)
	}
	zero := time.Time{}.In(time.FixedZone("UTC+1", 3600))
	for _, f := range []deadletter.Filter{{FailedAfter: zero}, {FailedBefore: zero}} {
		require.True(t, f.IsZero())
		_, err := b.queue.Purge(ctx, f, deadletter.ConfirmPurge)
		require.ErrorIs(t, err, deadletter.ErrConfirmationRequired)
	}
	n, err := b.queue.Count(ctx, deadletter.Filter{})
	require.NoError(t, err)
	require.Equal(t, 3, n)
}

// failingPurgeStore removes the matching records, then reports an error,
// as a store whose later batches time out does.
type failingPurgeStore struct{ *deadletter.MemoryStore }

func (s failingPurgeStore) Purge(ctx context.Context, f deadletter.Filter) (int, error) {
	n, _ := s.MemoryStore.Purge(ctx, f)
	return n, context.DeadlineExceeded
}

// A purge that fails part way reports what it removed and audits it.
func TestPurgeFailingPartWayReportsAndAuditsWhatItRemoved(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	ctx := deadletter.WithActor(context.Background(), "alice")
	for i := range 3 {
		b.deadLetter(t, handlerName, "a.b.v1", i)
	}
	q, err := deadletter.NewQueue(failingPurgeStore{b.store}, b.replayer, &deadletter.Config{Logger: slog.New(slog.NewJSONHandler(b.logs, nil))})
	require.NoError(t, err)
	n, err := q.Purge(ctx, deadletter.Filter{Handler: handlerName}, deadletter.ConfirmPurge)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, 3, n)
	var audited map[string]any
	for _, l := range b.logs.lines(t) {
		if l["msg"] == "deadletter: purge failed" {
			audited = l
		}
	}
	require.NotNil(t, audited, b.logs.String())
	require.EqualValues(t, 3, audited["purged"])
	require.Equal(t, "alice", audited["actor"])
}

func TestListClampsAndValidates(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	ctx := context.Background()
	for i := range 60 {
		b.deadLetter(t, handlerName, "a.b.v1", i)
	}
	recs, next, err := b.queue.List(ctx, deadletter.Filter{}, deadletter.Page{})
	require.NoError(t, err)
	require.Len(t, recs, deadletter.DefaultPageSize)
	require.NotEmpty(t, next)
	recs, next, err = b.queue.List(ctx, deadletter.Filter{}, deadletter.Page{Cursor: next, Limit: 100000})
	require.NoError(t, err)
	require.Len(t, recs, 10)
	require.Empty(t, next)
	require.Equal(t, deadletter.DefaultMaxPageSize, b.queue.ClampLimit(100000))

	_, _, err = b.queue.List(ctx, deadletter.Filter{Status: "nope"}, deadletter.Page{})
	require.ErrorIs(t, err, deadletter.ErrInvalidFilter)
	_, _, err = b.queue.List(ctx, deadletter.Filter{}, deadletter.Page{Cursor: "garbage!"})
	require.ErrorIs(t, err, deadletter.ErrInvalidCursor)
}

// Q4: payload redaction for API output; replay still sends the full event.
func TestRedactPayload(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	ctx := context.Background()
	rec := b.deadLetter(t, handlerName, "session.created.v1", 1)
	rec.Raw = map[string]string{"data": "secret"}

	got, err := b.queue.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.JSONEq(t, string(deadletter.RedactedPayload), string(got.Envelope.Payload))
	recs, _, err := b.queue.List(ctx, deadletter.Filter{}, deadletter.Page{})
	require.NoError(t, err)
	require.JSONEq(t, string(deadletter.RedactedPayload), string(recs[0].Envelope.Payload))
	out, err := json.Marshal(recs)
	require.NoError(t, err)
	require.NotContains(t, string(out), "s3cr3t-payload")

	replayed, err := b.queue.Replay(ctx, rec.ID)
	require.NoError(t, err)
	require.JSONEq(t, string(deadletter.RedactedPayload), string(replayed.Envelope.Payload))
	require.Len(t, b.handler.payloads, 1)
	require.JSONEq(t, string(rec.Envelope.Payload), string(b.handler.payloads[0]), "the handler got the real payload")

	stored, err := b.store.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.JSONEq(t, string(rec.Envelope.Payload), string(stored.Envelope.Payload), "redaction never touches the store")

	red := deadletter.Redact(rec)
	require.Equal(t, "[redacted]", red.Raw["data"])
	require.Equal(t, "secret", rec.Raw["data"], "Redact copies")
}

// Q4: every mutation is audit-logged with ids and actor, never the payload.
func TestAuditLog(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	ctx := deadletter.WithActor(context.Background(), "alice")
	r1 := b.deadLetter(t, handlerName, "session.created.v1", 1)
	r2 := b.deadLetter(t, handlerName, "session.created.v1", 2)
	b.deadLetter(t, "tracker", "session.created.v1", 3)

	_, err := b.queue.Replay(ctx, r1.ID)
	require.NoError(t, err)
	require.NoError(t, b.queue.Delete(ctx, r2.ID))
	_, err = b.queue.Purge(ctx, deadletter.Filter{Handler: "tracker"}, deadletter.ConfirmPurge)
	require.NoError(t, err)
	_, err = b.queue.ReplayFilter(ctx, deadletter.Filter{Handler: "nobody"}, 10)
	require.NoError(t, err)

	logs := b.logs.String()
	require.NotContains(t, logs, "s3cr3t-payload")
	require.NotContains(t, logs, "payload")
	byMsg := map[string]map[string]any{}
	for _, l := range b.logs.lines(t) {
		byMsg[l["msg"].(string)] = l
		require.Equal(t, "alice", l["actor"], "every audit line names the actor: %v", l)
	}
	replayed := byMsg["deadletter: replayed"]
	require.NotNil(t, replayed, logs)
	require.Equal(t, r1.ID, replayed["record_id"])
	require.Equal(t, r1.EventID, replayed["event_id"])
	require.Equal(t, "session.created.v1", replayed["event_type"])
	require.Equal(t, handlerName, replayed["handler"])
	deleted := byMsg["deadletter: deleted"]
	require.NotNil(t, deleted, logs)
	require.Equal(t, r2.ID, deleted["record_id"])
	purged := byMsg["deadletter: purged"]
	require.NotNil(t, purged, logs)
	require.EqualValues(t, 1, purged["purged"])
	require.NotNil(t, byMsg["deadletter: replay by filter"], logs)
}

// racingStore writes a bus's re-failure of the replayed event just before
// MarkReplayed runs, as an asynchronous bus whose redelivery fails fast can.
type racingStore struct {
	*deadletter.MemoryStore
	refail func()
}

func (s *racingStore) MarkReplayed(ctx context.Context, id string, at time.Time) error {
	if s.refail != nil {
		s.refail()
		s.refail = nil
	}
	return s.MemoryStore.MarkReplayed(ctx, id, at)
}

// asyncReplayer accepts the event and delivers it later (like XADD).
type asyncReplayer struct{ sent atomic.Int64 }

func (r *asyncReplayer) Replay(context.Context, deadletter.Record) error {
	r.sent.Add(1)
	return nil
}

// Q3: a replayed event whose redelivery fails before the queue marks the
// record replayed still ends up dead (with the new failure and the replay
// counted), not "replayed" forever with nobody retrying it.
func TestReplayRefailureBeforeMarkIsKept(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	store := &racingStore{MemoryStore: deadletter.NewMemoryStore(clk.Now)}
	rp := &asyncReplayer{}
	q, err := deadletter.NewQueue(store, rp, &deadletter.Config{Logger: slog.New(slog.DiscardHandler), Now: clk.Now})
	require.NoError(t, err)
	rec := deadlettertest.NewRecord(handlerName, "session.created.v1", 10)
	require.NoError(t, store.Put(ctx, rec))

	store.refail = func() {
		again := rec
		again.Attempts, again.LastError, again.SourceID = 1, "still broken", "99-0"
		again.LastFailedAt = clk.Now()
		require.NoError(t, store.MemoryStore.Put(ctx, again))
	}
	got, err := q.Replay(ctx, rec.ID)
	require.NoError(t, err)
	require.EqualValues(t, 1, rp.sent.Load())
	require.Equal(t, deadletter.StatusDead, got.Status, "the re-failure put it back in the queue")
	require.Equal(t, "still broken", got.LastError)
	require.Equal(t, 1, got.ReplayCount)
	stored, err := store.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, deadletter.StatusDead, stored.Status)
	depth, err := q.Depth(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, depth)
}

// HandlerReplayer: a panicking handler is a failed replay written back to
// the store (not a crashed admin request), and the handler sees the replayed
// event as the cause of what it raises.
func TestHandlerReplayerPanicAndContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := deadletter.NewMemoryStore(nil)
	rp, err := deadletter.NewHandlerReplayer(store, nil)
	require.NoError(t, err)
	var cause eventbus.EventID
	var causeOK bool
	rp.Register("panicky", eventbus.HandlerFunc(func(ctx context.Context, env eventbus.Envelope) error {
		cause, causeOK = eventbus.CausingEvent(ctx)
		panic("nil map write")
	}))
	q, err := deadletter.NewQueue(store, rp, &deadletter.Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	rec := deadlettertest.NewRecord("panicky", "session.created.v1", 10)
	require.NoError(t, store.Put(ctx, rec))

	var got deadletter.Record
	require.NotPanics(t, func() { got, err = q.Replay(ctx, rec.ID) })
	require.NoError(t, err, "the event was delivered; its failure is recorded")
	require.Equal(t, deadletter.StatusDead, got.Status)
	require.Equal(t, 1, got.ReplayCount)
	require.Contains(t, got.LastError, "panicked")
	require.True(t, causeOK, "the handler context carries the replayed event (eventbus.ContextWithEvent)")
	require.Equal(t, rec.Envelope.EventID, cause)
}
