package postgres_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/adapters/postgres"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/internal/testinfra"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// full reports whether the full RELIABILITY.md sizes were asked for.
func full() bool { return os.Getenv("EVENTKIT_FULL") == "1" }

// size returns n under EVENTKIT_FULL=1 and n/10 otherwise.
func size(n int) int {
	if full() {
		return n
	}
	return n / 10
}

type itemAdded struct {
	Cart string `json:"cart"`
	Seq  int    `json:"seq"`
}

func (itemAdded) EventType() string     { return "cart.item_added.v1" }
func (e itemAdded) AggregateID() string { return e.Cart }
func (itemAdded) AggregateType() string { return "cart" }
func newEnv(cart string, seq int) eventbus.Envelope {
	return eventbus.MustEnvelope(context.Background(), itemAdded{Cart: cart, Seq: seq})
}

type bundle struct {
	schema  string
	pool    *pgxpool.Pool
	ob      *postgres.Outbox // the relays' outbox
	wob     *postgres.Outbox // the writers': another instance, as in another process
	channel string
}

func setup(t *testing.T) *bundle {
	t.Helper()
	schema, pool := testinfra.Schema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, postgres.Migrate(ctx, pool, &postgres.MigrateConfig{Schema: schema}))
	channel := testinfra.UniqueName("ch")
	ob, err := postgres.NewOutbox(pool, &postgres.OutboxConfig{Schema: schema, NotifyChannel: channel})
	require.NoError(t, err)
	t.Cleanup(ob.Close)
	// A writer's Notify wakes relays of its own Outbox directly; writing
	// through a second instance makes the wake-up go through NOTIFY, as
	// between processes.
	wob, err := postgres.NewOutbox(pool, &postgres.OutboxConfig{Schema: schema, NotifyChannel: channel})
	require.NoError(t, err)
	t.Cleanup(wob.Close)
	return &bundle{schema: schema, pool: pool, ob: ob, wob: wob, channel: channel}
}

// write stores envs in one committed transaction and notifies after COMMIT
// (through the writers' Outbox, so relays are woken by NOTIFY).
func (b *bundle) write(t testing.TB, envs ...eventbus.Envelope) {
	t.Helper()
	err := pgx.BeginFunc(context.Background(), b.pool, func(tx pgx.Tx) error {
		return b.wob.Write(context.Background(), tx, envs...)
	})
	require.NoError(t, err)
	b.wob.Notify()
}

func (b *bundle) count(t testing.TB, where string) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+b.ob.Table()+" WHERE "+where).Scan(&n))
	return n
}

// requireDrained is the closing invariant of every outbox test: no pending row.
func (b *bundle) requireDrained(t testing.TB) {
	t.Helper()
	// The publisher sees an event just before the relay commits its mark.
	b.requireDrainedWithin(t, 10*time.Second)
}

// requireDrainedWithin waits up to d for no pending row.
func (b *bundle) requireDrainedWithin(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for b.count(t, "published_at IS NULL AND quarantined_at IS NULL") != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.Equal(t, 0, b.count(t, "published_at IS NULL AND quarantined_at IS NULL"), "unpublished outbox rows left")
}

// recorder is a Publisher that records what it accepted, in order, and can
// fail chosen events.
type recorder struct {
	mu     sync.Mutex
	got    []eventbus.Envelope
	calls  int
	fail   func(env eventbus.Envelope) error
	signal chan struct{}
}

func newRecorder() *recorder { return &recorder{signal: make(chan struct{}, 1)} }

func (r *recorder) Publish(ctx context.Context, envs ...eventbus.Envelope) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fail != nil {
		for _, e := range envs {
			if err := r.fail(e); err != nil {
				return err
			}
		}
	}
	r.got = append(r.got, envs...)
	select {
	case r.signal <- struct{}{}:
	default:
	}
	return nil
}

func (r *recorder) setFail(f func(eventbus.Envelope) error) {
	r.mu.Lock()
	r.fail = f
	r.mu.Unlock()
}

func (r *recorder) snapshot() []eventbus.Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]eventbus.Envelope(nil), r.got...)
}

// waitFor polls cond (every 10 ms, signalled earlier by publishes) until it
// holds or d passes.
func (r *recorder) waitFor(t testing.TB, d time.Duration, what string, cond func([]eventbus.Envelope) bool) []eventbus.Envelope {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		got := r.snapshot()
		if cond(got) {
			return got
		}
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s (have %d events)", d, what, len(got))
		case <-r.signal:
		case <-tick.C:
		}
	}
}

func (r *recorder) waitCount(t testing.TB, d time.Duration, n int) []eventbus.Envelope {
	t.Helper()
	return r.waitFor(t, d, fmt.Sprintf("%d events", n), func(g []eventbus.Envelope) bool { return uniqueIDs(g) >= n })
}

func uniqueIDs(envs []eventbus.Envelope) int {
	seen := map[eventbus.EventID]bool{}
	for _, e := range envs {
		seen[e.EventID] = true
	}
	return len(seen)
}

// startRelay runs a relay until the test ends.
func startRelay(t *testing.T, cfg outbox.RelayConfig) *outbox.Relay {
	t.Helper()
	r, err := outbox.NewRelay(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("relay did not stop within 30s")
		}
	})
	return r
}
