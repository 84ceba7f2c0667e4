package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/adapters/postgres"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

func TestWriteRoundTripAndValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	env := newEnv("c1", 1)
	// Odd key order and whitespace survive byte for byte (json, not jsonb).
	env.Payload = json.RawMessage(`{ "seq" : 1,   "cart":"c1", "nested": {"b":2,"a":1}, "u":"\u00e9" }`)
	env.Metadata = eventbus.Metadata{CorrelationID: "corr", CausationID: "cause", UserID: "u1", TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	b.write(t, env)

	var got []outbox.Record
	n, err := b.ob.Claim(ctx, 10, func(ctx context.Context, recs []outbox.Record) outbox.Outcome {
		got = recs
		return outbox.Outcome{}
	})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, string(env.Payload), string(got[0].Envelope.Payload))
	g := got[0].Envelope
	g.Payload, env.Payload = nil, nil
	require.Equal(t, env, g)

	// Invalid envelopes fail the whole call before anything is written.
	bad := newEnv("c1", 2)
	bad.Payload = json.RawMessage(`{not json`)
	err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error { return b.ob.Write(ctx, tx, newEnv("c1", 3), bad) })
	require.ErrorIs(t, err, eventbus.ErrInvalidEnvelope)
	noID := newEnv("c1", 4)
	noID.EventID = eventbus.EventID{}
	err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error { return b.ob.Write(ctx, tx, noID) })
	require.ErrorIs(t, err, eventbus.ErrInvalidEnvelope)
	require.Equal(t, 1, b.count(t, "true"))

	// A batch keeps its order.
	var batch []eventbus.Envelope
	for i := range 50 {
		batch = append(batch, newEnv(fmt.Sprintf("c%d", i%3), i))
	}
	b.write(t, batch...)
	rows, err := b.pool.Query(ctx, "SELECT event_id::text FROM "+b.ob.Table()+" ORDER BY id OFFSET 1")
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Len(t, ids, 50)
	for i, id := range ids {
		require.Equal(t, batch[i].EventID.String(), id)
	}
}

func TestUnitOfWork(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.pool.Exec(ctx, `CREATE TABLE carts (id text PRIMARY KEY, items int NOT NULL)`)
	require.NoError(t, err)
	uow, err := postgres.NewUnitOfWork(b.pool, b.ob, nil)
	require.NoError(t, err)
	addItem := func(ctx context.Context, cart string, seq int, fail error) error {
		return uow.Do(ctx, func(ctx context.Context) error {
			tx, ok := postgres.TxFromContext(ctx)
			if !ok {
				return errors.New("no tx")
			}
			if _, err := tx.Exec(ctx, `INSERT INTO carts VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET items = carts.items + 1`, cart); err != nil {
				return err
			}
			if err := outbox.Raise(ctx, itemAdded{Cart: cart, Seq: seq}); err != nil {
				return err
			}
			return fail
		})
	}
	require.NoError(t, addItem(ctx, "a", 1, nil))
	boom := errors.New("boom")
	require.ErrorIs(t, addItem(ctx, "a", 2, boom), boom)
	require.Panics(t, func() {
		_ = uow.Do(ctx, func(ctx context.Context) error {
			tx, _ := postgres.TxFromContext(ctx)
			_, _ = tx.Exec(ctx, `INSERT INTO carts VALUES ('p', 1)`)
			_ = outbox.Raise(ctx, itemAdded{Cart: "p", Seq: 1})
			panic("handler bug")
		})
	})
	// Nested units join the outer transaction and its fate.
	err = uow.Do(ctx, func(ctx context.Context) error {
		if err := addItem(ctx, "n", 1, nil); err != nil {
			return err
		}
		return addItem(ctx, "n", 2, nil)
	})
	require.NoError(t, err)
	err = uow.Do(ctx, func(ctx context.Context) error {
		if err := addItem(ctx, "r", 1, nil); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)

	var items int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT coalesce(sum(items),0) FROM carts`).Scan(&items))
	require.Equal(t, 3, items, "a:1 + n:2")
	require.Equal(t, 3, b.count(t, "true"), "events only from committed units")
	require.Equal(t, 1, b.count(t, "aggregate_id = 'a'"))
	require.Equal(t, 2, b.count(t, "aggregate_id = 'n'"))
	// Events from a unit of work carry the context metadata.
	mctx := eventbus.WithMetadata(ctx, eventbus.Metadata{CorrelationID: "req-1", UserID: "u9"})
	require.NoError(t, addItem(mctx, "m", 1, nil))
	var md string
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT metadata::text FROM `+b.ob.Table()+` WHERE aggregate_id = 'm'`).Scan(&md))
	require.JSONEq(t, `{"correlation_id":"req-1","user_id":"u9"}`, md)
}

// A unit of work on a transaction of fn's own (WithTx) inside another unit
// writes its events in that transaction: each transaction commits or rolls
// back with its own events.
func TestUnitOfWorkOnAnotherTxKeepsItsEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.pool.Exec(ctx, `CREATE TABLE biz (id text PRIMARY KEY)`)
	require.NoError(t, err)
	uow, err := postgres.NewUnitOfWork(b.pool, b.ob, nil)
	require.NoError(t, err)
	write := func(ctx context.Context, id string) error {
		tx, _ := postgres.TxFromContext(ctx)
		if _, err := tx.Exec(ctx, `INSERT INTO biz VALUES ($1)`, id); err != nil {
			return err
		}
		return outbox.Raise(ctx, itemAdded{Cart: id, Seq: 1})
	}
	boom := errors.New("outer unit fails")
	for _, innerCommits := range []bool{true, false} {
		inner, outer := fmt.Sprintf("inner-%v", innerCommits), fmt.Sprintf("outer-%v", innerCommits)
		err := uow.Do(ctx, func(ctx context.Context) error {
			if err := write(ctx, outer); err != nil {
				return err
			}
			t2, err := b.pool.Begin(ctx)
			if err != nil {
				return err
			}
			defer func() { _ = t2.Rollback(ctx) }()
			if err := uow.Do(postgres.WithTx(ctx, t2), func(ctx context.Context) error { return write(ctx, inner) }); err != nil {
				return err
			}
			if innerCommits {
				if err := t2.Commit(ctx); err != nil {
					return err
				}
				return boom // the outer unit rolls back, the inner one stays
			}
			return nil // the inner transaction rolls back, the outer commits
		})
		if innerCommits {
			require.ErrorIs(t, err, boom)
		} else {
			require.NoError(t, err)
		}
		for _, id := range []string{inner, outer} {
			var rows int
			require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM biz WHERE id = $1`, id).Scan(&rows))
			require.Equal(t, rows, b.count(t, fmt.Sprintf("aggregate_id = '%s'", id)), "%s: its write and its event together", id)
		}
	}
}

// O1: 500 commits and 500 rollbacks interleaved; only committed events are
// published, and a NOTIFY from a rolled-back transaction wakes nobody.
func TestO1AtomicWrite(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.pool.Exec(ctx, `CREATE TABLE orders (id int PRIMARY KEY)`)
	require.NoError(t, err)

	// NOTIFY semantics, observed on our own LISTEN connection.
	lc := listenConn(t, b)
	uowW, err := postgres.NewUnitOfWork(b.pool, b.wob, nil)
	require.NoError(t, err)
	err = uowW.Do(ctx, func(ctx context.Context) error {
		if err := outbox.Raise(ctx, itemAdded{Cart: "rolled", Seq: 1}); err != nil {
			return err
		}
		return errors.New("roll back")
	})
	require.Error(t, err)
	requireNoNotification(t, lc, "a rolled-back unit of work must not notify")
	require.NoError(t, uowW.Do(ctx, func(ctx context.Context) error {
		return outbox.Raise(ctx, itemAdded{Cart: "committed", Seq: 1})
	}))
	note := requireNotification(t, lc, "a committed unit of work notifies after COMMIT")
	require.Equal(t, "", note.Payload, "the notification carries no payload")

	// The same with the notification sent from the writing transaction.
	inTx, err := postgres.NewOutbox(b.pool, &postgres.OutboxConfig{Schema: b.schema, NotifyChannel: b.channel, NotifyInTx: true})
	require.NoError(t, err)
	defer inTx.Close()
	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, inTx.Write(ctx, tx, newEnv("rolled", 2)))
	require.NoError(t, tx.Rollback(ctx))
	requireNoNotification(t, lc, "a rolled-back transaction must not notify (NotifyInTx)")
	require.NoError(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error { return inTx.Write(ctx, tx, newEnv("committed", 2)) }))
	requireNotification(t, lc, "a committed transaction notifies (NotifyInTx)")
	_, err = b.pool.Exec(ctx, `DELETE FROM `+b.ob.Table())
	require.NoError(t, err)

	n := 50
	if full() {
		n = 500
	}
	rec := newRecorder()
	startRelay(t, outbox.RelayConfig{Store: b.ob, Publisher: rec, PollInterval: 200 * time.Millisecond})
	uow, err := postgres.NewUnitOfWork(b.pool, b.ob, nil)
	require.NoError(t, err)
	committed := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range 2 * n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cart := fmt.Sprintf("o%d", i)
			err := uow.Do(ctx, func(ctx context.Context) error {
				tx, _ := postgres.TxFromContext(ctx)
				if _, err := tx.Exec(ctx, `INSERT INTO orders VALUES ($1)`, i); err != nil {
					return err
				}
				if err := outbox.Raise(ctx, itemAdded{Cart: cart, Seq: i}); err != nil {
					return err
				}
				if i%2 == 1 {
					return errors.New("rollback")
				}
				return nil
			})
			if i%2 == 0 {
				require.NoError(t, err)
				mu.Lock()
				committed[cart] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	got := rec.waitCount(t, 30*time.Second, n)
	for _, e := range got {
		require.True(t, committed[e.AggregateID], "published %s from a rolled-back transaction", e.AggregateID)
	}
	require.Len(t, got, n, "no duplicates")
	var orders int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&orders))
	require.Equal(t, n, orders)
	b.requireDrained(t)
}

// O2a: the watermill TestNotMissingMessages script: a transaction that
// started first commits last; every event is published exactly once.
func TestO2LateCommitNotMissed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	rec := newRecorder()
	startRelay(t, outbox.RelayConfig{Store: b.ob, Publisher: rec, PollInterval: 50 * time.Millisecond})
	envs := []eventbus.Envelope{newEnv("x0", 0), newEnv("x1", 1), newEnv("x2", 2)}

	tx0, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, b.ob.Write(ctx, tx0, envs[0])) // lowest id, still uncommitted
	tx1, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, b.ob.Write(ctx, tx1, envs[1]))
	b.write(t, envs[2])
	require.NoError(t, tx1.Commit(ctx))
	rec.waitCount(t, 10*time.Second, 2) // 1 and 2 are out before 0 commits
	require.NoError(t, tx0.Commit(ctx))
	got := rec.waitCount(t, 10*time.Second, 3)
	require.Len(t, got, 3)
	seen := map[eventbus.EventID]bool{}
	for _, e := range got {
		seen[e.EventID] = true
	}
	for _, e := range envs {
		require.True(t, seen[e.EventID])
	}
	b.requireDrained(t)
}

// O2b: 32 writers that sleep before committing plus one transaction held
// open: published set = committed set; the lag shows the held transaction
// once it commits, then recovers.
func TestO2OutOfOrderCommits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	rows := size(10000)
	hold := 3 * time.Second
	if full() {
		hold = 30 * time.Second
	}
	rec := newRecorder()
	var maxLag atomic.Int64
	relay := startRelay(t, outbox.RelayConfig{Store: b.ob, Publisher: rec, PollInterval: 100 * time.Millisecond,
		LagInterval: 50 * time.Millisecond,
		Hooks: &outbox.RelayHooks{OnLag: func(_ context.Context, lag time.Duration) {
			for {
				old := maxLag.Load()
				if int64(lag) <= old || maxLag.CompareAndSwap(old, int64(lag)) {
					return
				}
			}
		}}})

	heldAt := time.Now()
	held, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	heldEnv := newEnv("held", 0)
	require.NoError(t, b.ob.Write(ctx, held, heldEnv))

	var wg sync.WaitGroup
	per := rows / 32
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				tx, err := b.pool.Begin(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if err := b.ob.Write(ctx, tx, newEnv(fmt.Sprintf("w%d", w), i)); err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
				}
				if err := tx.Commit(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	rec.waitCount(t, 60*time.Second, 32*per)
	// Let the held transaction age, then commit it.
	if d := hold - time.Since(heldAt); d > 0 {
		time.Sleep(d)
	}
	require.NoError(t, held.Commit(ctx))
	got := rec.waitCount(t, 30*time.Second, 32*per+1)
	require.Len(t, got, 32*per+1, "published = committed, no duplicates")
	b.requireDrained(t)
	var age time.Duration
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT published_at - created_at FROM `+b.ob.Table()+` WHERE event_id = $1`, heldEnv.EventID.String()).Scan(&age))
	t.Logf("held row waited %v; max lag reported %v", age, time.Duration(maxLag.Load()))
	require.Eventually(t, func() bool { return time.Duration(maxLag.Load()) >= hold-500*time.Millisecond }, 5*time.Second, 10*time.Millisecond,
		"lag metric shows the late commit")
	require.Eventually(t, func() bool {
		lag, err := relay.Lag(ctx)
		return err == nil && lag == 0
	}, 10*time.Second, 50*time.Millisecond, "lag recovers")
	b.requireDrained(t)
}

// O3: three relays on one table: every row once, per-aggregate order kept,
// no relay starves.
func TestO3ThreeRelaysKeepAggregateOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	n := size(10000)
	// Fewer aggregates than three batches hold: without the aggregate
	// locks, relays would hold rows of one aggregate at once.
	const aggs = 24
	var envs []eventbus.Envelope
	for i := range n {
		envs = append(envs, newEnv(fmt.Sprintf("a%02d", i%aggs), i/aggs))
	}
	for i := 0; i < len(envs); i += 500 {
		b.write(t, envs[i:min(i+500, len(envs))]...)
	}
	// One shared log in publish order; each relay adds its own marks.
	var mu sync.Mutex
	var log []eventbus.Envelope
	perRelay := make([]int, 3)
	relays := make([]*outbox.Relay, 3)
	// Each relay's first batch waits until all three hold one: the three
	// claims overlap (SKIP LOCKED and the aggregate locks give them
	// disjoint rows and aggregates: the first takes 10 aggregates, the
	// second 10 others, the third the last 4, several rows each), however
	// late a relay starts on a loaded machine.
	allHold := make(chan struct{})
	var holding atomic.Int32
	for i := range relays {
		var first sync.Once
		pub := eventbus.Publisher(publisherFunc(func(ctx context.Context, envs ...eventbus.Envelope) error {
			first.Do(func() {
				if holding.Add(1) == int32(len(relays)) {
					close(allHold)
				}
				select {
				case <-allHold:
				case <-time.After(5 * time.Second): // below PublishTimeout
				}
			})
			time.Sleep(3 * time.Millisecond) // make overlap likely
			mu.Lock()
			log = append(log, envs...)
			perRelay[i] += len(envs)
			mu.Unlock()
			return nil
		}))
		relays[i] = startRelay(t, outbox.RelayConfig{Store: b.ob, Publisher: pub, BatchSize: 10, PollInterval: 10 * time.Millisecond})
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(log) >= n
	}, 120*time.Second, 20*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, log, n, "no duplicates without crashes")
	last := map[string]int{}
	for _, e := range log {
		var p itemAdded
		require.NoError(t, json.Unmarshal(e.Payload, &p))
		prev, ok := last[p.Cart]
		require.True(t, !ok && p.Seq == 0 || p.Seq == prev+1, "aggregate %s: seq %d after %d", p.Cart, p.Seq, prev)
		last[p.Cart] = p.Seq
	}
	for i, c := range perRelay {
		require.Positive(t, c, "relay %d starved", i)
	}
	t.Logf("rows per relay: %v", perRelay)
	b.requireDrained(t)
}

type publisherFunc func(ctx context.Context, envs ...eventbus.Envelope) error

func (f publisherFunc) Publish(ctx context.Context, envs ...eventbus.Envelope) error {
	return f(ctx, envs...)
}

// O4: one poison row among good ones: the good ones flow, the poison row
// backs off, hits max attempts, is quarantined, listed and re-armable; the
// rows after it in its aggregate wait for it, then proceed.
func TestO4PoisonRowQuarantined(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	n := size(1000)
	poison := newEnv("poison", 0)
	after := newEnv("poison", 1)
	permanent := newEnv("perm", 0)
	var envs []eventbus.Envelope
	for i := range n - 1 {
		envs = append(envs, newEnv(fmt.Sprintf("g%d", i%20), i))
		if i == n/3 {
			envs = append(envs, poison, after, permanent)
		}
	}
	b.write(t, envs...)
	normal := normalDrainTime(t, n-1)
	var poisonAttempts atomic.Int32
	var attemptTimes []time.Time
	var tmu sync.Mutex
	rec := newRecorder()
	rec.setFail(func(e eventbus.Envelope) error {
		switch e.EventID {
		case poison.EventID:
			return errors.New("message too large for the bus")
		case permanent.EventID:
			return eventbus.Permanent(errors.New("cannot serialize"))
		}
		return nil
	})
	var quarantined atomic.Int32
	start := time.Now()
	startRelay(t, outbox.RelayConfig{Store: b.ob, Publisher: rec, PollInterval: 50 * time.Millisecond, MaxAttempts: 4,
		RetryBackoff: eventbus.Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.2},
		Hooks: &outbox.RelayHooks{
			OnQuarantine: func(context.Context, eventbus.Envelope, error) { quarantined.Add(1) },
			OnPublishError: func(_ context.Context, e eventbus.Envelope, _ int, _ error) {
				if e.EventID == poison.EventID {
					poisonAttempts.Add(1)
					tmu.Lock()
					attemptTimes = append(attemptTimes, time.Now())
					tmu.Unlock()
				}
			},
		}})
	rec.waitFor(t, 30*time.Second, "good rows", func(g []eventbus.Envelope) bool {
		return uniqueIDs(g) >= n-1
	})
	withPoison := time.Since(start)
	t.Logf("%d good rows published in %v with a poison row present, %v without", n-1, withPoison, normal)
	// 2x normal time, plus a margin for parallel tests loading the machine
	// when both are a few tens of milliseconds; waiting for the poison
	// row's backoffs (100+200+400 ms before it is quarantined) exceeds it.
	require.LessOrEqual(t, withPoison, 2*normal+500*time.Millisecond, "the good rows are not held up by the poison row")
	require.Eventually(t, func() bool { return quarantined.Load() == 2 }, 30*time.Second, 20*time.Millisecond)
	require.EqualValues(t, 4, poisonAttempts.Load(), "MaxAttempts attempts, no hot loop")
	tmu.Lock()
	for i := 1; i < len(attemptTimes); i++ {
		require.GreaterOrEqual(t, attemptTimes[i].Sub(attemptTimes[i-1]), 70*time.Millisecond, "attempts back off")
	}
	tmu.Unlock()
	// The row after the poison one in its aggregate went out only after the
	// poison row was set aside.
	got := rec.waitFor(t, 10*time.Second, "row after poison", func(g []eventbus.Envelope) bool {
		for _, e := range g {
			if e.EventID == after.EventID {
				return true
			}
		}
		return false
	})
	require.Len(t, got, n, "good rows + the one after poison, each once")

	q, err := b.ob.Quarantined(ctx, 10)
	require.NoError(t, err)
	require.Len(t, q, 2)
	byID := map[eventbus.EventID]outbox.Record{}
	for _, r := range q {
		byID[r.Envelope.EventID] = r
	}
	require.Equal(t, 4, byID[poison.EventID].Attempts)
	require.Contains(t, byID[poison.EventID].LastError, "too large")
	require.Equal(t, 1, byID[permanent.EventID].Attempts, "permanent errors quarantine at once")
	require.False(t, byID[poison.EventID].QuarantinedAt.IsZero())

	// Re-arm after the fix: published.
	rec.setFail(nil)
	k, err := b.ob.Rearm(ctx, poison.EventID, permanent.EventID)
	require.NoError(t, err)
	require.EqualValues(t, 2, k)
	rec.waitFor(t, 10*time.Second, "re-armed rows", func(g []eventbus.Envelope) bool { return uniqueIDs(g) == n+2 })
	b.requireDrained(t)
	require.Equal(t, 0, b.count(t, "quarantined_at IS NOT NULL"))
}

// normalDrainTime is how long the O4 relay setup takes to publish n good
// rows of 20 aggregates when no row fails (its own schema).
func normalDrainTime(t *testing.T, n int) time.Duration {
	t.Helper()
	b := setup(t)
	var envs []eventbus.Envelope
	for i := range n {
		envs = append(envs, newEnv(fmt.Sprintf("g%d", i%20), i))
	}
	b.write(t, envs...)
	rec := newRecorder()
	start := time.Now()
	startRelay(t, outbox.RelayConfig{Store: b.ob, Publisher: rec, PollInterval: 50 * time.Millisecond, MaxAttempts: 4})
	rec.waitCount(t, 30*time.Second, n)
	return time.Since(start)
}

// writeSpread commits writes rows (50 aggregates) spread evenly over
// outage and returns when the outage is over, with the time it began.
func (b *bundle) writeSpread(t *testing.T, prefix string, writes int, outage time.Duration) time.Time {
	t.Helper()
	start := time.Now()
	for i := range writes {
		b.write(t, newEnv(fmt.Sprintf("%s-%d", prefix, i%50), i))
		if wait := time.Duration(i+1) * outage / time.Duration(writes); time.Since(start) < wait {
			time.Sleep(wait - time.Since(start))
		}
	}
	if d := outage - time.Since(start); d > 0 {
		time.Sleep(d)
	}
	return start
}

// lateRate is the number of calls per second in the outage's second half.
func lateRate(calls []time.Time, start time.Time, outage time.Duration) float64 {
	late := 0
	for _, c := range calls {
		if c.Sub(start) > outage/2 {
			late++
		}
	}
	return float64(late) / (outage / 2).Seconds()
}

// O6: the relay's LISTEN connection is terminated and rows are inserted
// while it reconnects: all are published within one poll interval + 1s, and
// the relay listens again.
func TestO6LostNotify(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const poll = 3 * time.Second
	rec := newRecorder()
	startRelay(t, outbox.RelayConfig{Store: b.ob, Publisher: rec, PollInterval: poll})
	app := postgres.ListenerApplicationName(b.channel)
	listenerPID := func() int {
		var pid int
		err := b.pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&pid)
		if err != nil {
			return 0
		}
		return pid
	}
	require.Eventually(t, func() bool { return listenerPID() != 0 }, 10*time.Second, 20*time.Millisecond)
	// Wake-up works: a write is published well within the poll interval.
	time.Sleep(200 * time.Millisecond) // let the first poll pass
	t0 := time.Now()
	b.write(t, newEnv("w", 0))
	rec.waitCount(t, poll, 1)
	require.Less(t, time.Since(t0), poll/2, "NOTIFY wakes the relay")

	pid := listenerPID()
	_, err := b.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid)
	require.NoError(t, err)
	t0 = time.Now()
	for i := range 100 {
		b.write(t, newEnv("lost", i))
	}
	rec.waitCount(t, poll+time.Second+time.Since(t0), 101)
	require.Eventually(t, func() bool { p := listenerPID(); return p != 0 && p != pid }, 10*time.Second, 20*time.Millisecond, "re-LISTEN")
	// And the new connection wakes the relay again.
	time.Sleep(300 * time.Millisecond)
	t0 = time.Now()
	b.write(t, newEnv("after", 0))
	rec.waitCount(t, poll, 102)
	require.Less(t, time.Since(t0), poll/2, "woken through the new LISTEN connection")
	b.requireDrained(t)
}

// O5: the broker is down while writes keep committing: no write fails, the
// relay backs off (at most 2 claim attempts per second once backed off),
// then the backlog drains with nothing lost and the lag returns to 0.
func TestO5BrokerOutageBacklog(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	outage := 3 * time.Second
	if full() {
		outage = 30 * time.Second
	}
	writes := size(3000)
	var down atomic.Bool
	down.Store(true)
	var mu sync.Mutex
	var batchCalls []time.Time
	rec := newRecorder()
	pub := publisherFunc(func(ctx context.Context, envs ...eventbus.Envelope) error {
		if down.Load() {
			if len(envs) > 1 {
				mu.Lock()
				batchCalls = append(batchCalls, time.Now())
				mu.Unlock()
			}
			return errors.New("broker unavailable: connection refused")
		}
		return rec.Publish(ctx, envs...)
	})
	relay := startRelay(t, outbox.RelayConfig{Store: b.ob, Publisher: pub, PollInterval: 200 * time.Millisecond, MaxAttempts: 100,
		RetryBackoff: eventbus.Backoff{Initial: 200 * time.Millisecond, Max: time.Second}})
	start := b.writeSpread(t, "o5", writes, outage)
	mu.Lock()
	rate := lateRate(batchCalls, start, outage)
	t.Logf("outage %v: %d batch attempts in all, %.1f/s in its second half", outage, len(batchCalls), rate)
	mu.Unlock()
	require.LessOrEqual(t, rate, 2.0, "relay backs off during the outage")
	lag, err := relay.Lag(ctx)
	require.NoError(t, err)
	require.Greater(t, lag, time.Duration(0), "the backlog shows as lag")

	down.Store(false)
	rec.waitCount(t, 60*time.Second, writes)
	require.Equal(t, writes, uniqueIDs(rec.snapshot()), "0 lost")
	b.requireDrained(t)
	require.Equal(t, 0, b.count(t, "quarantined_at IS NOT NULL"))
	require.Eventually(t, func() bool {
		lag, err := relay.Lag(ctx)
		return err == nil && lag == 0
	}, 10*time.Second, 50*time.Millisecond, "lag returns to 0")
}

func listenConn(t *testing.T, b *bundle) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	lc, err := pgx.ConnectConfig(ctx, b.pool.Config().ConnConfig.Copy())
	require.NoError(t, err)
	t.Cleanup(func() { _ = lc.Close(context.Background()) })
	_, err = lc.Exec(ctx, "LISTEN "+pgx.Identifier{b.channel}.Sanitize())
	require.NoError(t, err)
	return lc
}

func requireNoNotification(t *testing.T, lc *pgx.Conn, msg string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := lc.WaitForNotification(wctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, msg)
}

func requireNotification(t *testing.T, lc *pgx.Conn, msg string) *pgconn.Notification {
	t.Helper()
	wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	note, err := lc.WaitForNotification(wctx)
	require.NoError(t, err, msg)
	return note
}

// Notify coalesces: a burst of signals from many committed writers costs a
// few NOTIFYs, not one each, and the last signal is always followed by one.
func TestNotifyCoalesces(t *testing.T) {
	t.Parallel()
	b := setup(t)
	lc := listenConn(t, b)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				b.wob.Notify()
			}
		}()
	}
	wg.Wait()
	requireNotification(t, lc, "a burst of Notify calls sends a NOTIFY")
	n := 1
	for {
		wctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err := lc.WaitForNotification(wctx)
		cancel()
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			break
		}
		n++
	}
	t.Logf("800 Notify calls -> %d NOTIFYs", n)
	require.Less(t, n, 100, "Notify calls are coalesced")
	// After the burst, one more signal is answered by one more NOTIFY.
	b.wob.Notify()
	requireNotification(t, lc, "a signal after a burst is not swallowed")
}

// With DisableNotify nothing is sent, but a relay in the same process as
// the writer is still woken by Notify at once.
func TestNotifyWakesLocalRelayWithoutListen(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ob, err := postgres.NewOutbox(b.pool, &postgres.OutboxConfig{Schema: b.schema, NotifyChannel: b.channel, DisableNotify: true})
	require.NoError(t, err)
	lc := listenConn(t, b)
	rec := newRecorder()
	const poll = 5 * time.Second
	startRelay(t, outbox.RelayConfig{Store: ob, Publisher: rec, PollInterval: poll})
	time.Sleep(200 * time.Millisecond) // let the first claim pass
	uow, err := postgres.NewUnitOfWork(b.pool, ob, nil)
	require.NoError(t, err)
	t0 := time.Now()
	require.NoError(t, uow.Do(context.Background(), func(ctx context.Context) error {
		return outbox.Raise(ctx, itemAdded{Cart: "local", Seq: 1})
	}))
	rec.waitCount(t, poll, 1)
	require.Less(t, time.Since(t0), poll/2, "woken in process, not by the poll")
	requireNoNotification(t, lc, "DisableNotify sends no NOTIFY")
}

// DeleteOnPublish: published rows are deleted, failed rows stay with their
// error, and per-aggregate order holds.
func TestDeleteOnPublish(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ob, err := postgres.NewOutbox(b.pool, &postgres.OutboxConfig{Schema: b.schema, NotifyChannel: b.channel, DeleteOnPublish: true})
	require.NoError(t, err)
	t.Cleanup(ob.Close)
	rec := newRecorder()
	rec.setFail(func(e eventbus.Envelope) error {
		if e.AggregateID == "poison" {
			return eventbus.Permanent(errors.New("rejected"))
		}
		return nil
	})
	const n = 300
	for i := range n {
		b.write(t, newEnv(fmt.Sprintf("d%d", i%7), i))
	}
	b.write(t, newEnv("poison", 0))
	startRelay(t, outbox.RelayConfig{Store: ob, Publisher: rec, BatchSize: 50, PollInterval: 50 * time.Millisecond})
	got := rec.waitCount(t, 30*time.Second, n)
	last := map[string]int{}
	for _, e := range got {
		var p itemAdded
		require.NoError(t, json.Unmarshal(e.Payload, &p))
		require.Greater(t, p.Seq+1, last[e.AggregateID], "order within %s", e.AggregateID)
		last[e.AggregateID] = p.Seq + 1
	}
	require.Eventually(t, func() bool {
		return b.count(t, "aggregate_id = 'poison' AND quarantined_at IS NOT NULL AND last_error <> ''") == 1
	}, 10*time.Second, 20*time.Millisecond, "the quarantined row stays")
	require.Eventually(t, func() bool { return b.count(t, "true") == 1 }, 10*time.Second, 20*time.Millisecond, "published rows deleted")
}

// A Notify after a quiet spell is sent at once; one within NotifyCoalesce of
// the last NOTIFY waits for the end of that window (rate limit), and is
// still sent.
func TestNotifyLeadingEdgeThenRateLimited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const window = 1500 * time.Millisecond
	ob, err := postgres.NewOutbox(b.pool, &postgres.OutboxConfig{Schema: b.schema, NotifyChannel: b.channel, NotifyCoalesce: window})
	require.NoError(t, err)
	t.Cleanup(ob.Close)
	lc := listenConn(t, b)

	t0 := time.Now()
	ob.Notify()
	requireNotification(t, lc, "first signal")
	require.Less(t, time.Since(t0), window/2, "a signal after a quiet spell is not delayed by the window")

	t1 := time.Now()
	ob.Notify()
	ob.Notify()
	requireNotification(t, lc, "signals within the window are sent at its end")
	require.GreaterOrEqual(t, time.Since(t0), window, "at most one NOTIFY per window")
	require.Less(t, time.Since(t1), 2*window)
	wctx, cancel := context.WithTimeout(context.Background(), window/2)
	defer cancel()
	_, err = lc.WaitForNotification(wctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "two signals in one window cost one NOTIFY")
}
