package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/adapters/postgres"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/idempotency"
	"github.com/choicesherpa/eventkit/internal/testinfra"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

const c6Batch = 100

// sinkPublisher is a durable "bus": every accepted envelope is a committed
// row of the sink table (written on its own connection, outside the relay's
// claim transaction). If killAfter > 0, the killBatch-th Publish call
// stores only its first killAfter envelopes, reports readiness in readyFile
// and blocks until the process is killed.
type sinkPublisher struct {
	pool      *pgxpool.Pool
	calls     int
	killBatch int
	killAfter int
	readyFile string
}

func (s *sinkPublisher) Publish(ctx context.Context, envs ...eventbus.Envelope) error {
	s.calls++
	store := envs
	dying := s.killBatch > 0 && s.calls == s.killBatch
	if dying {
		store = envs[:min(s.killAfter, len(envs))]
	}
	ids := make([]string, len(store))
	for i, e := range store {
		ids[i] = e.EventID.String()
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO sink (event_id) SELECT unnest($1::uuid[])`, ids); err != nil {
		return err
	}
	if dying {
		_ = os.WriteFile(s.readyFile, []byte("ready"), 0o600)
		select {} // wait for SIGKILL
	}
	return nil
}

// runC6Helper is the relay process of TestC6RelayKilledMidBatch (TestMain
// runs it instead of the tests when c6HelperEnv is set). It returns only
// on an error: its publisher blocks until the test kills the process.
func runC6Helper() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "c6 helper:", err)
		return 2
	}
	ctx := context.Background()
	schema := os.Getenv("C6_SCHEMA")
	cfg, err := pgxpool.ParseConfig(os.Getenv(testinfra.PostgresURLEnv))
	if err != nil {
		return fail(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	ob, err := postgres.NewOutbox(pool, &postgres.OutboxConfig{Schema: schema, DisableNotify: true})
	if err != nil {
		return fail(err)
	}
	kb, _ := strconv.Atoi(os.Getenv("C6_KILL_BATCH"))
	ka, _ := strconv.Atoi(os.Getenv("C6_KILL_AFTER"))
	pub := &sinkPublisher{pool: pool, killBatch: kb, killAfter: ka, readyFile: os.Getenv("C6_READY")}
	r, err := outbox.NewRelay(outbox.RelayConfig{Store: ob, Publisher: pub, BatchSize: c6Batch, PollInterval: 50 * time.Millisecond})
	if err != nil {
		return fail(err)
	}
	for range 10000 {
		if _, _, err := r.RunOnce(ctx); err != nil {
			return fail(err)
		}
	}
	return fail(errors.New("never reached the kill point"))
}

// C6: the relay (a helper process) is SIGKILLed after publishing row k of a
// batch and before marking it, three times; a restarted relay finishes.
// Every event is consumed at least once, duplicates are bounded by the
// batch size per kill, effects happen once, nothing stays unpublished.
func TestC6RelayKilledMidBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.pool.Exec(ctx, `CREATE TABLE sink (event_id uuid NOT NULL)`)
	require.NoError(t, err)
	createEffects(t, b)
	n := size(10000)
	var envs []eventbus.Envelope
	for i := range n {
		envs = append(envs, newEnv(fmt.Sprintf("c6-%d", i%37), i))
	}
	for i := 0; i < n; i += 1000 {
		b.write(t, envs[i:min(i+1000, n)]...)
	}
	dir := t.TempDir()
	for kill := range 3 {
		ready := filepath.Join(dir, fmt.Sprintf("ready%d", kill))
		k := 1 + rand.IntN(c6Batch-1)
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), c6HelperEnv+"=1", "C6_SCHEMA="+b.schema,
			"C6_KILL_BATCH="+strconv.Itoa(1+rand.IntN(2)), "C6_KILL_AFTER="+strconv.Itoa(k), "C6_READY="+ready)
		cmd.Env = append(cmd.Env, testinfra.PostgresURLEnv+"="+testinfra.PostgresURL(t))
		out := &limitedBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		require.NoError(t, cmd.Start())
		deadline := time.Now().Add(60 * time.Second)
		for {
			if _, err := os.Stat(ready); err == nil {
				break
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("helper never reached the kill point; output:\n%s", out.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		t.Logf("kill %d: after row %d of a batch", kill+1, k)
	}
	// Restart: an in-process relay into the same sink drains the rest.
	pub := &sinkPublisher{pool: b.pool}
	r, err := outbox.NewRelay(outbox.RelayConfig{Store: b.ob, Publisher: pub, BatchSize: c6Batch})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, _, err := r.RunOnce(ctx)
		require.NoError(t, err)
		return b.count(t, "published_at IS NULL") == 0
	}, 60*time.Second, time.Millisecond)

	var total, distinct int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id) FROM sink`).Scan(&total, &distinct))
	require.Equal(t, n, distinct, "every event consumed at least once")
	require.LessOrEqual(t, total-distinct, 3*c6Batch, "duplicates bounded by the batch size per kill")
	t.Logf("%d events, %d deliveries, %d duplicates after 3 kills", n, total, total-distinct)

	// The consumer applies each delivery (duplicates included) idempotently.
	store, err := postgres.NewProcessedEventStore(b.pool, &postgres.ProcessedEventStoreConfig{Schema: b.schema})
	require.NoError(t, err)
	h := idempotency.Wrap(named("C", effectHandler(false)), store, "C")
	rows, err := b.pool.Query(ctx, `SELECT event_id FROM sink`)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[[16]byte])
	require.NoError(t, err)
	for _, id := range ids {
		require.NoError(t, h.Handle(ctx, eventbus.Envelope{EventID: eventbus.EventID(id), EventType: "cart.item_added.v1", SchemaVersion: 1}))
	}
	require.Equal(t, n, b.effects(t, "C"), "effects exactly once")
	b.requireDrained(t)
	b.requireEffectsOnce(t)
}

// limitedBuffer keeps the first 64 KiB of a helper's output.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 64<<10 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }
