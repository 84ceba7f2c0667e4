package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/adapters/postgres"
	"github.com/choicesherpa/eventkit/adapters/redisstream"
	"github.com/choicesherpa/eventkit/deadletter"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/idempotency"
	"github.com/choicesherpa/eventkit/internal/testinfra"
)

// i2HelperEnv makes the test binary run as TestI2ConsumerKilled's consumer
// process; its value is the crash point: "after-commit" or "before-commit".
const i2HelperEnv = "EVENTKIT_I2_HELPER"

const i2Consumer = "i2-consumer"

func i2BusConfig(stream string, dlq deadletter.Store) *redisstream.Config {
	return &redisstream.Config{Stream: stream, Consumer: i2Consumer, Block: 100 * time.Millisecond,
		HandlerTimeout: time.Second, MinIdle: 2500 * time.Millisecond, ClaimInterval: 100 * time.Millisecond,
		ShutdownTimeout: 2 * time.Second, DeadLetters: dlq, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// die is the crash: SIGKILL, no deferred function, no acknowledgement.
func die() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// runI2Helper consumes group "H" from the stream with the idempotent
// effect handler and kills itself at the crash point.
func runI2Helper(point string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "i2 helper:", err)
		return 2
	}
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(os.Getenv(testinfra.PostgresURLEnv))
	if err != nil {
		return fail(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = os.Getenv("I2_SCHEMA")
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	store, err := postgres.NewProcessedEventStore(pool, &postgres.ProcessedEventStoreConfig{Schema: os.Getenv("I2_SCHEMA")})
	if err != nil {
		return fail(err)
	}
	opts, err := redis.ParseURL(os.Getenv(testinfra.RedisURLEnv))
	if err != nil {
		return fail(err)
	}
	bus, err := redisstream.New(redis.NewClient(opts), i2BusConfig(os.Getenv("I2_STREAM"), nil))
	if err != nil {
		return fail(err)
	}
	effect := postgres.TxHandler(func(ctx context.Context, tx pgx.Tx, env eventbus.Envelope) error {
		if _, err := tx.Exec(ctx, `INSERT INTO effects (handler, event_id) VALUES ('H', $1)`, env.EventID.String()); err != nil {
			return err
		}
		if point == "before-commit" {
			die() // the effect is written, the transaction never commits
		}
		return nil
	})
	h := idempotency.Wrap(effect, store, "H")
	if _, err := bus.Subscribe(ctx, "H", eventbus.HandlerFunc(func(ctx context.Context, env eventbus.Envelope) error {
		if err := h.Handle(ctx, env); err != nil {
			return err
		}
		die() // committed; the bus never acknowledges
		return nil
	})); err != nil {
		return fail(err)
	}
	time.Sleep(30 * time.Second)
	return fail(errors.New("the event never arrived"))
}

// I2 with a real crash: the consumer process is SIGKILLed (a) after the
// handler's transaction committed and before XACK, (b) after the effect
// SQL and before COMMIT. A restarted consumer gets the entry again: in (a)
// it is a detected duplicate, acknowledged, and the effect count stays 1;
// in (b) the count is 0 after the crash and 1 after the redelivery.
func TestI2ConsumerKilledAroundCommit(t *testing.T) {
	for _, tc := range []struct {
		point       string
		effectsDead int
		duplicates  int64
	}{{"after-commit", 1, 1}, {"before-commit", 0, 0}} {
		t.Run(tc.point, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := context.Background()
			createEffects(t, b)
			rdb, prefix := testinfra.Redis(t)
			stream := prefix + "i2"
			dlq := deadletter.NewMemoryStore(nil)
			pub, err := redisstream.New(rdb, i2BusConfig(stream, dlq))
			require.NoError(t, err)
			t.Cleanup(func() { _ = pub.Close() })
			env := newEnv("i2", 0)
			require.NoError(t, pub.Publish(ctx, env))

			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), i2HelperEnv+"="+tc.point, "I2_SCHEMA="+b.schema, "I2_STREAM="+stream,
				testinfra.PostgresURLEnv+"="+testinfra.PostgresURL(t), testinfra.RedisURLEnv+"="+testinfra.RedisURL(t))
			out := &limitedBuffer{}
			cmd.Stdout, cmd.Stderr = out, out
			require.NoError(t, cmd.Start())
			waited := make(chan error, 1)
			go func() { waited <- cmd.Wait() }()
			select {
			case err := <-waited:
				var exit *exec.ExitError
				require.ErrorAs(t, err, &exit, "output:\n%s", out.b)
				require.Equal(t, syscall.SIGKILL, exit.Sys().(syscall.WaitStatus).Signal(), "the helper died at the crash point; output:\n%s", out.b)
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("the helper did not crash; output:\n%s", out.b)
			}
			require.Equal(t, tc.effectsDead, b.effects(t, "H"), "effects right after the crash")
			pending, err := rdb.XPending(ctx, stream, "H").Result()
			require.NoError(t, err)
			require.EqualValues(t, 1, pending.Count, "not acknowledged")

			// The restarted consumer (same name: it re-reads its own pending
			// entries first).
			store, err := postgres.NewProcessedEventStore(b.pool, &postgres.ProcessedEventStoreConfig{Schema: b.schema})
			require.NoError(t, err)
			h := idempotency.Wrap(named("H", effectHandler(false)), store, "H")
			var dups atomic.Int64
			h.OnDuplicate = func(context.Context, eventbus.Envelope) { dups.Add(1) }
			sub, err := pub.Subscribe(ctx, "H", h)
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				p, err := rdb.XPending(ctx, stream, "H").Result()
				return err == nil && p.Count == 0
			}, 15*time.Second, 20*time.Millisecond, "the redelivery is acknowledged")
			require.NoError(t, sub.Close())
			require.Equal(t, 1, b.effects(t, "H"), "effect exactly once")
			require.Equal(t, tc.duplicates, dups.Load(), "redelivery detected as a duplicate")
			n, err := dlq.Count(ctx, deadletter.Filter{})
			require.NoError(t, err)
			require.Zero(t, n, "nothing dead-lettered")
			b.requireEffectsOnce(t)
		})
	}
}
