package postgres_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
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

// throwawayCluster is a PostgreSQL cluster of the test's own: restarts and
// horizons there touch no other test.
type throwawayCluster struct {
	dir  string
	port int
	url  string
}

// asPostgres runs a PostgreSQL binary, as the postgres user when we are
// root (initdb and pg_ctl refuse to run as root).
func asPostgres(name string, args ...string) *exec.Cmd {
	bin := name
	for _, d := range []string{"/usr/local/bin", "/usr/lib/postgresql/15/bin"} {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			bin = filepath.Join(d, name)
			break
		}
	}
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	}
	return exec.Command(bin, args...)
}

// startThrowawayCluster initdbs and starts a cluster on a free port, stopped
// (immediate) at cleanup. It skips (fails under CI=true) with the precise
// reason when that is impossible here.
func startThrowawayCluster(t *testing.T) *throwawayCluster {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		if testinfra.InCI() {
			t.Fatalf("throwaway cluster: "+format, args...)
		}
		t.Skipf("throwaway cluster unavailable: "+format, args...)
	}
	dir, err := os.MkdirTemp("", "eventkit-chaos-")
	if err != nil {
		unavailable("temp dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres:", dir).CombinedOutput(); err != nil {
			unavailable("chown %s to postgres: %v: %s", dir, err, out)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := asPostgres("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-N").CombinedOutput(); err != nil {
		unavailable("initdb: %v: %s", err, out)
	}
	c := &throwawayCluster{dir: data, port: testinfra.FreePort(t)}
	c.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60", c.port, dir)
	if out, err := asPostgres("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "30", "start").CombinedOutput(); err != nil {
		unavailable("pg_ctl start: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = asPostgres("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop").Run() })
	return c
}

func (c *throwawayCluster) restart(t *testing.T) {
	t.Helper()
	// -l again: without it the server would inherit our output pipe.
	out, err := asPostgres("pg_ctl", "-D", c.dir, "-l", filepath.Join(filepath.Dir(c.dir), "log"), "-m", "fast", "-w", "-t", "30", "restart").CombinedOutput()
	require.NoError(t, err, "pg_ctl restart: %s", out)
}

// C7: connections of the relay, its listener, the consumer and the cleanup
// are terminated every interval, and the cluster is restarted once, during
// the writes. Each business row and its outbox row exist together or not at
// all, everything resumes, nothing is lost, effects happen once.
func TestC7ConnectionLossAndRestart(t *testing.T) {
	t.Parallel()
	c := startThrowawayCluster(t)
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(c.url)
	require.NoError(t, err)
	cfg.MaxConns = 12
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, postgres.Migrate(ctx, pool, nil))
	_, err = pool.Exec(ctx, `CREATE TABLE orders (id int PRIMARY KEY); CREATE TABLE effects (handler text NOT NULL, event_id uuid NOT NULL, n int NOT NULL DEFAULT 1)`)
	require.NoError(t, err)
	ob, err := postgres.NewOutbox(pool, &postgres.OutboxConfig{ListenBackoff: eventbus.Backoff{Initial: 50 * time.Millisecond, Max: time.Second}})
	require.NoError(t, err)
	uow, err := postgres.NewUnitOfWork(pool, ob, nil)
	require.NoError(t, err)
	store, err := postgres.NewProcessedEventStore(pool, nil)
	require.NoError(t, err)

	bus := eventbus.NewInMemoryBus(&eventbus.InMemoryConfig{History: -1})
	_, err = bus.Subscribe(ctx, "C", idempotency.Wrap(named("C", effectHandler(false)), store, "C"))
	require.NoError(t, err)
	rctx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	relay, err := outbox.NewRelay(outbox.RelayConfig{Store: ob, Publisher: bus, PollInterval: 200 * time.Millisecond,
		ErrorBackoff: eventbus.Backoff{Initial: 50 * time.Millisecond, Max: time.Second}, MaxAttempts: 1000,
		RetryBackoff: eventbus.Backoff{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond}})
	require.NoError(t, err)
	cl, err := outbox.NewCleanup(outbox.CleanupConfig{Store: ob, Markers: store, Retention: time.Hour, Interval: 100 * time.Millisecond})
	require.NoError(t, err)
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); _ = relay.Run(rctx) }()
	go func() { defer bg.Done(); _ = cl.Run(rctx) }()

	// Chaos: terminate every other client connection periodically.
	var kills atomic.Int32
	chaosCtx, stopChaos := context.WithCancel(ctx)
	bg.Add(1)
	go func() {
		defer bg.Done()
		tick := time.NewTicker(400 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-chaosCtx.Done():
				return
			case <-tick.C:
			}
			kctx, cancel := context.WithTimeout(chaosCtx, 2*time.Second)
			conn, err := pgx.Connect(kctx, c.url)
			if err == nil {
				var n int
				if conn.QueryRow(kctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'`).Scan(&n) == nil {
					kills.Add(int32(n))
				}
				_ = conn.Close(kctx)
			}
			cancel()
		}
	}()

	n := size(5000)
	var next atomic.Int64
	var wg sync.WaitGroup
	var retries atomic.Int32
	restartAt := int64(n / 2)
	var restarted sync.Once
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if i == restartAt {
					restarted.Do(func() { c.restart(t) })
				}
				deadline := time.Now().Add(30 * time.Second)
				for {
					err := uow.Do(ctx, func(ctx context.Context) error {
						tx, _ := postgres.TxFromContext(ctx)
						tag, err := tx.Exec(ctx, `INSERT INTO orders VALUES ($1) ON CONFLICT DO NOTHING`, i)
						if err != nil || tag.RowsAffected() == 0 {
							return err // already committed by an earlier, ambiguous attempt
						}
						return outbox.Raise(ctx, itemAdded{Cart: "o" + strconv.FormatInt(i, 10), Seq: int(i)})
					})
					if err == nil {
						break
					}
					retries.Add(1)
					if time.Now().After(deadline) {
						t.Errorf("write %d kept failing: %v", i, err)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	stopChaos()
	t.Logf("%d writes, %d retried attempts, %d connections terminated, 1 restart", n, retries.Load(), kills.Load())

	// Everything resumes: the outbox drains and every event has its effect.
	require.Eventually(t, func() bool {
		var pending, effects int
		err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL), (SELECT count(*) FROM effects)`).Scan(&pending, &effects)
		return err == nil && pending == 0 && effects == n
	}, 30*time.Second, 100*time.Millisecond, "drained and applied")
	stopAll()
	bg.Wait()

	var orders, events, orphans, effects, markers, dupEffects int
	require.NoError(t, pool.QueryRow(ctx, `SELECT
  (SELECT count(*) FROM orders),
  (SELECT count(*) FROM outbox),
  (SELECT count(*) FROM orders o FULL JOIN outbox e ON e.aggregate_id = 'o' || o.id WHERE o.id IS NULL OR e.id IS NULL),
  (SELECT count(*) FROM effects),
  (SELECT count(*) FROM processed_events),
  (SELECT count(*) FROM (SELECT 1 FROM effects GROUP BY event_id HAVING count(*) > 1) d)`).
		Scan(&orders, &events, &orphans, &effects, &markers, &dupEffects))
	require.Equal(t, n, orders)
	require.Equal(t, n, events)
	require.Equal(t, 0, orphans, "business row and outbox row together or not at all")
	require.Equal(t, n, effects, "0 lost")
	require.Equal(t, markers, effects, "count(effects) = count(markers)")
	require.Equal(t, 0, dupEffects, "effects exactly once")
}
