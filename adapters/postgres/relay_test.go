package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/adapters/postgres"
	"github.com/choicesherpa/eventkit/deadletter"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/outbox"
)

// slowSingles fails every multi-event Publish and takes delay for each
// single one (respecting ctx): a batch that falls back to row-by-row
// publishing outlasts a short BatchTimeout.
type slowSingles struct {
	delay time.Duration
	mu    sync.Mutex
	count map[eventbus.EventID]int
}

func (p *slowSingles) Publish(ctx context.Context, envs ...eventbus.Envelope) error {
	if len(envs) > 1 {
		return errors.New("batch rejected")
	}
	select {
	case <-time.After(p.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	p.mu.Lock()
	p.count[envs[0].EventID]++
	p.mu.Unlock()
	return nil
}

func (p *slowSingles) published() (distinct, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range p.count {
		distinct++
		total += n
	}
	return distinct, total
}

// Rows published one by one after a failed batch are marked even when the
// retries used up BatchTimeout; before, the mark failed on the expired
// deadline, everything rolled back and every row was published again on
// the next claim, forever, without its attempts ever counting.
func TestSlowRetriesAreStillMarked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var envs []eventbus.Envelope
	for i := range 10 {
		envs = append(envs, newEnv(fmt.Sprintf("slow%d", i), 0))
	}
	b.write(t, envs...)
	pub := &slowSingles{delay: 60 * time.Millisecond, count: map[eventbus.EventID]int{}}
	startRelay(t, outbox.RelayConfig{Store: b.ob, Publisher: pub, BatchSize: 10, BatchTimeout: 300 * time.Millisecond,
		PollInterval: 20 * time.Millisecond, RetryBackoff: eventbus.Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond}})
	b.requireDrained(t)
	distinct, total := pub.published()
	require.Equal(t, 10, distinct)
	require.Equal(t, 10, total, "each row published once: published rows are marked, not published again")
	require.Equal(t, 0, b.count(t, "attempts > 0"), "a publish cut off by BatchTimeout is not the row's failure")
}

// gate blocks every Publish until released, then records the events.
type gate struct {
	entered chan struct{}
	release chan struct{}
	rec     *recorder
}

func (g *gate) Publish(ctx context.Context, envs ...eventbus.Envelope) error {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	select {
	case <-g.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.rec.Publish(ctx, envs...)
}

// Stop finishes the batch in hand: its publish is not cancelled, its rows
// are marked, and Stop returns only after that.
func TestStopFinishesBatchInHand(t *testing.T) {
	t.Parallel()
	b := setup(t)
	envs := []eventbus.Envelope{newEnv("s", 0), newEnv("s", 1), newEnv("t", 0)}
	b.write(t, envs...)
	g := &gate{entered: make(chan struct{}, 1), release: make(chan struct{}), rec: newRecorder()}
	r, err := outbox.NewRelay(outbox.RelayConfig{Store: b.ob, Publisher: g, PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, r.Start(context.Background()))
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the relay never published")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- r.Stop(context.Background()) }()
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) with the batch still in hand", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(g.release)
	select {
	case err := <-stopped:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return after the batch ended")
	}
	require.Len(t, g.rec.snapshot(), 3)
	require.Equal(t, 0, b.count(t, "published_at IS NULL"), "the batch was marked before Stop returned")
}

// After a failed batch, a row that fails holds back the later rows of its
// aggregate in the same batch (they are released, untouched), while other
// aggregates go out.
func TestFailedRowHoldsBackItsAggregateInBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first, second, other := newEnv("held", 0), newEnv("held", 1), newEnv("free", 0)
	b.write(t, first, second, other)
	rec := newRecorder()
	rec.setFail(failOnly(first.EventID, errors.New("broker rejected it")))
	r, err := outbox.NewRelay(outbox.RelayConfig{Store: b.ob, Publisher: rec, BatchSize: 10})
	require.NoError(t, err)
	n, progressed, err := r.RunOnce(context.Background())
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.True(t, progressed)
	got := rec.snapshot()
	require.Len(t, got, 1)
	require.Equal(t, other.EventID, got[0].EventID, "only the other aggregate went out")
	var attempts int
	var published *time.Time
	require.NoError(t, b.pool.QueryRow(context.Background(), "SELECT attempts, published_at FROM "+b.ob.Table()+" WHERE event_id = $1", second.EventID).Scan(&attempts, &published))
	require.Nil(t, published)
	require.Zero(t, attempts, "the held-back row was released, not failed")
	require.NoError(t, b.pool.QueryRow(context.Background(), "SELECT attempts FROM "+b.ob.Table()+" WHERE event_id = $1", first.EventID).Scan(&attempts))
	require.Equal(t, 1, attempts)
}

// failOnly fails the event id with err and accepts every other.
func failOnly(id eventbus.EventID, err error) func(eventbus.Envelope) error {
	return func(e eventbus.Envelope) error {
		if e.EventID == id {
			return err
		}
		return nil
	}
}

// OnBatch, Stats and OnStoreError report what happened.
func TestRelayHooksAndStats(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ok1, ok2, bad := newEnv("a", 0), newEnv("b", 0), newEnv("c", 0)
	b.write(t, ok1, ok2, bad)
	rec := newRecorder()
	rec.setFail(failOnly(bad.EventID, eventbus.Permanent(errors.New("cannot encode"))))
	var batches []outbox.BatchStats
	var storeErrs []error
	var mu sync.Mutex
	hooks := &outbox.RelayHooks{
		OnBatch:      func(_ context.Context, s outbox.BatchStats) { mu.Lock(); batches = append(batches, s); mu.Unlock() },
		OnStoreError: func(_ context.Context, err error) { mu.Lock(); storeErrs = append(storeErrs, err); mu.Unlock() },
	}
	r, err := outbox.NewRelay(outbox.RelayConfig{Store: b.ob, Publisher: rec, Hooks: hooks})
	require.NoError(t, err)
	_, _, err = r.RunOnce(context.Background())
	require.NoError(t, err)
	require.Len(t, batches, 1)
	s := batches[0]
	require.Equal(t, 3, s.Claimed)
	require.Equal(t, 2, s.Published)
	require.Equal(t, 1, s.Failed)
	require.Equal(t, 1, s.Quarantined)
	require.Equal(t, 0, s.Released)
	require.Positive(t, s.Duration)
	st := r.Stats()
	require.Equal(t, outbox.RelayStats{Batches: 1, Claimed: 3, Published: 2, Failed: 1, Quarantined: 1, Lag: st.Lag}, st)

	// A store whose table does not exist: the claim fails, and says so.
	missing, err := postgres.NewOutbox(b.pool, &postgres.OutboxConfig{Schema: b.schema, Table: "no_such_outbox"})
	require.NoError(t, err)
	t.Cleanup(missing.Close)
	r2, err := outbox.NewRelay(outbox.RelayConfig{Store: missing, Publisher: rec, Hooks: hooks})
	require.NoError(t, err)
	_, _, err = r2.RunOnce(context.Background())
	require.Error(t, err)
	require.Len(t, storeErrs, 1)
	require.ErrorContains(t, storeErrs[0], "no_such_outbox")
	require.EqualValues(t, 1, r2.Stats().StoreErrors)
}

// The lag is the age of the first pending row in queue (id) order, the
// one the relay takes next; published and quarantined rows do not count.
func TestLagIsTheHeadOfTheQueue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	insert := func(age time.Duration, extra string) {
		t.Helper()
		cols, vals := "", ""
		switch extra {
		case "published":
			cols, vals = ", published_at", ", now()"
		case "quarantined":
			cols, vals = ", quarantined_at", ", now()"
		}
		_, err := b.pool.Exec(ctx, `INSERT INTO `+b.ob.Table()+` (event_id, event_type, schema_version, aggregate_type, aggregate_id, payload, occurred_at, created_at`+cols+`)
VALUES (gen_random_uuid(), 'cart.item_added.v1', 1, 'cart', 'lag', '{}', now(), now() - $1::interval`+vals+`)`, fmt.Sprintf("%d milliseconds", age.Milliseconds()))
		require.NoError(t, err)
	}
	r, err := outbox.NewRelay(outbox.RelayConfig{Store: b.ob, Publisher: newRecorder()})
	require.NoError(t, err)
	lag, err := r.Lag(ctx)
	require.NoError(t, err)
	require.Zero(t, lag, "nothing pending")
	insert(3*time.Hour, "published")
	insert(2*time.Hour, "quarantined")
	insert(time.Hour, "")     // the head of the queue
	insert(5*time.Minute, "") // behind it
	lag, err = r.Lag(ctx)
	require.NoError(t, err)
	require.InDelta(t, time.Hour.Seconds(), lag.Seconds(), 60)
}

// Outboxes on one table agree on its advisory locks however its name was
// written: a relay that names the schema and one that finds the table
// through search_path never hold rows of one aggregate at once.
func TestAggregateLockAgreesAcrossNamings(t *testing.T) {
	t.Parallel()
	b := setup(t) // the pool's search_path is b.schema
	unqualified, err := postgres.NewOutbox(b.pool, nil)
	require.NoError(t, err)
	t.Cleanup(unqualified.Close)
	first, second := newEnv("shared", 0), newEnv("shared", 1)
	b.write(t, first, second)
	ctx := context.Background()
	var inner []outbox.Record
	var innerErr error
	_, err = b.ob.Claim(ctx, 1, func(ctx context.Context, recs []outbox.Record) outbox.Outcome {
		require.Len(t, recs, 1)
		require.Equal(t, first.EventID, recs[0].Envelope.EventID)
		_, innerErr = unqualified.Claim(ctx, 10, func(_ context.Context, rs []outbox.Record) outbox.Outcome {
			inner = rs
			return outbox.Outcome{}
		})
		return outbox.Outcome{}
	})
	require.NoError(t, err)
	require.NoError(t, innerErr)
	require.Empty(t, inner, "the second row of an aggregate another relay holds must not be handed out")
}

// O4, visible in the admin API: a quarantined row gets a dead-letter
// record (handler "outbox"); replaying it through the admin API re-arms the
// row, which is then published with its event id; failing again puts the
// record back in the queue instead of looping.
func TestO4QuarantinedRowInDeadLetterAdmin(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	poison, good := newEnv("q", 0), newEnv("g", 0)
	b.write(t, poison, good)
	rec := newRecorder()
	rec.setFail(failOnly(poison.EventID, eventbus.Permanent(errors.New("schema rejected"))))
	dlq := deadletter.NewMemoryStore(nil)
	r, err := outbox.NewRelay(outbox.RelayConfig{Store: b.ob, Publisher: rec, DeadLetters: dlq})
	require.NoError(t, err)
	_, _, err = r.RunOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, b.count(t, "quarantined_at IS NOT NULL"))

	q, err := deadletter.NewQueue(dlq, outbox.RearmReplayer{Store: b.ob}, nil)
	require.NoError(t, err)
	api := deadletter.NewAdminHandler(q, deadletter.AdminConfig{Authorize: func(*http.Request) (string, error) { return "ops", nil }})
	call := func(method, path string) map[string]any {
		t.Helper()
		w := httptest.NewRecorder()
		api.ServeHTTP(w, httptest.NewRequest(method, path, nil))
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		var body map[string]any
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body))
		return body
	}
	list := call("GET", "/records?handler="+outbox.QuarantineHandler)["records"].([]any)
	require.Len(t, list, 1)
	got := list[0].(map[string]any)
	require.Equal(t, poison.EventID.String(), got["event_id"])
	require.Equal(t, deadletter.ReasonPermanent, got["reason"])
	require.Equal(t, "outbox", got["source"])
	require.Contains(t, got["last_error"], "schema rejected")

	// Replayed while still failing: re-armed, failed again, quarantined
	// again, and the record is back in the queue (no loop).
	call("POST", "/replay/"+got["id"].(string))
	require.Equal(t, 0, b.count(t, "quarantined_at IS NOT NULL"), "re-armed")
	_, _, err = r.RunOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, b.count(t, "quarantined_at IS NOT NULL"), "quarantined again")
	again, err := dlq.Get(ctx, got["id"].(string))
	require.NoError(t, err)
	require.Equal(t, deadletter.StatusDead, again.Status)
	require.Equal(t, 1, again.ReplayCount)

	// Fixed: replay through the API re-arms the row; the relay publishes it.
	rec.setFail(nil)
	call("POST", "/replay/"+got["id"].(string))
	require.Equal(t, 0, b.count(t, "quarantined_at IS NOT NULL"), "re-armed")
	_, _, err = r.RunOnce(ctx)
	require.NoError(t, err)
	b.requireDrained(t)
	published := rec.snapshot()
	require.Equal(t, poison.EventID, published[len(published)-1].EventID, "published with its event id")
	after, err := dlq.Get(ctx, got["id"].(string))
	require.NoError(t, err)
	require.Equal(t, deadletter.StatusReplayed, after.Status)
	require.Equal(t, 2, after.ReplayCount)

	// A second replay finds nothing to re-arm and says so.
	w := httptest.NewRecorder()
	api.ServeHTTP(w, httptest.NewRequest("POST", "/replay/"+got["id"].(string), nil))
	require.NotEqual(t, http.StatusOK, w.Code)
}
