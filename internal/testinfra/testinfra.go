// Package testinfra finds the PostgreSQL and Redis servers integration tests
// run against and isolates each test on them.
//
// Servers are found, in order, from EVENTKIT_TEST_POSTGRES_URL /
// EVENTKIT_TEST_REDIS_URL, then the local default ports (127.0.0.1:5432
// database "test" user "postgres"; 127.0.0.1:6379), then testcontainers when
// a Docker daemon answers (see containers.go). When none is reachable the
// test is skipped, except under CI=true, where it fails loudly: CI must never
// pass by skipping.
//
// Each test gets its own PostgreSQL schema (dropped at cleanup) and its own
// Redis key prefix (its keys deleted at cleanup).
package testinfra

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Environment variables that point tests at servers.
const (
	PostgresURLEnv = "EVENTKIT_TEST_POSTGRES_URL"
	RedisURLEnv    = "EVENTKIT_TEST_REDIS_URL"

	defaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	defaultRedisURL    = "redis://127.0.0.1:6379/0"
)

var (
	pgOnce sync.Once
	pgURL  string
	pgErr  error

	redisOnce sync.Once
	redisURL  string
	redisErr  error
)

// InCI reports whether the tests run under CI (CI=true), where a missing
// server is a failure, not a skip.
func InCI() bool { return os.Getenv("CI") == "true" }

func unavailable(tb testing.TB, what string, err error) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("%s is required under CI=true but is not reachable: %v", what, err)
	}
	tb.Skipf("%s not reachable (set %s or start it): %v", what, map[string]string{"PostgreSQL": PostgresURLEnv, "Redis": RedisURLEnv}[what], err)
}

// PostgresURL returns the connection string of the test server, or skips /
// fails the test (see the package documentation).
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	pgOnce.Do(func() { pgURL, pgErr = findPostgres() })
	if pgErr != nil {
		unavailable(tb, "PostgreSQL", pgErr)
	}
	return pgURL
}

func findPostgres() (string, error) {
	candidates := []string{}
	if u := os.Getenv(PostgresURLEnv); u != "" {
		candidates = append(candidates, u)
	} else {
		candidates = append(candidates, defaultPostgresURL)
	}
	var errs []string
	for _, u := range candidates {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		conn, err := pgx.Connect(ctx, u)
		if err == nil {
			err = conn.Ping(ctx)
			_ = conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return u, nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", redactURL(u), err))
	}
	if u, err := startPostgresContainer(); err == nil {
		return u, nil
	} else {
		errs = append(errs, "testcontainers: "+err.Error())
	}
	return "", fmt.Errorf("%s", strings.Join(errs, "; "))
}

// RedisURL returns the URL of the test Redis, or skips / fails the test.
func RedisURL(tb testing.TB) string {
	tb.Helper()
	redisOnce.Do(func() { redisURL, redisErr = findRedis() })
	if redisErr != nil {
		unavailable(tb, "Redis", redisErr)
	}
	return redisURL
}

func findRedis() (string, error) {
	u := os.Getenv(RedisURLEnv)
	if u == "" {
		u = defaultRedisURL
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		return "", fmt.Errorf("%s: %w", RedisURLEnv, err)
	}
	c := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	err = c.Ping(ctx).Err()
	cancel()
	_ = c.Close()
	if err == nil {
		return u, nil
	}
	if cu, cerr := startRedisContainer(); cerr == nil {
		return cu, nil
	} else {
		return "", fmt.Errorf("%s: %v; testcontainers: %v", redactURL(u), err, cerr)
	}
}

// UniqueName returns prefix_<random hex>, safe as a schema, stream or group name.
func UniqueName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(prefix) + "_" + hex.EncodeToString(b[:])
}

// Schema creates a fresh schema for the test and returns its name and a pool
// whose connections use it as search_path. Both are removed at cleanup.
func Schema(tb testing.TB) (string, *pgxpool.Pool) {
	tb.Helper()
	base := PostgresURL(tb)
	schema := UniqueName("t")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("testinfra: connect: %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		tb.Fatalf("testinfra: create schema: %v", err)
	}
	cfg, err := pgxpool.ParseConfig(base)
	if err != nil {
		tb.Fatalf("testinfra: parse url: %v", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	if cfg.MaxConns < 8 {
		cfg.MaxConns = 8
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		tb.Fatalf("testinfra: pool: %v", err)
	}
	tb.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("testinfra: cleanup connect: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			tb.Errorf("testinfra: drop schema %s: %v", schema, err)
		}
	})
	return schema, pool
}

// Pool returns a pool isolated in a fresh schema (see Schema).
func Pool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	_, p := Schema(tb)
	return p
}

// Redis returns a client of the test Redis and a unique key prefix for the
// test. At cleanup every key that contains the prefix's unique name anywhere
// is deleted (so "{prefix...}" hash-tagged keys go too) and the client closed.
func Redis(tb testing.TB) (*redis.Client, string) {
	tb.Helper()
	opts, err := redis.ParseURL(RedisURL(tb))
	if err != nil {
		tb.Fatalf("testinfra: redis url: %v", err)
	}
	c := redis.NewClient(opts)
	prefix := UniqueName("t") + ":"
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, "*"+strings.TrimSuffix(prefix, ":")+"*", 500).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			if err := c.Del(ctx, keys...).Err(); err != nil {
				tb.Errorf("testinfra: delete %d keys: %v", len(keys), err)
			}
		}
		_ = c.Close()
	})
	return c, prefix
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testinfra: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func redactURL(u string) string {
	if i := strings.Index(u, "@"); i > 0 {
		if j := strings.Index(u, "://"); j > 0 && j < i {
			return u[:j+3] + "***" + u[i:]
		}
	}
	return u
}
