package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// Server URLs: the same variables and defaults as the library's tests.
const (
	// RedisURLEnv names the variable holding the Redis URL.
	RedisURLEnv = "EVENTKIT_TEST_REDIS_URL"
	// PostgresURLEnv names the variable holding the PostgreSQL URL.
	PostgresURLEnv = "EVENTKIT_TEST_POSTGRES_URL"
	// DefaultRedisURL is used when RedisURLEnv is unset.
	DefaultRedisURL = "redis://127.0.0.1:6379/0"
	// DefaultPostgresURL is used when PostgresURLEnv is unset.
	DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	// DefaultProbeTimeout bounds each server probe in DetectEnv.
	DefaultProbeTimeout = 2 * time.Second
)

// Env records the machine and the servers a run used; the table header
// prints it so figures can be read against the machine that produced them.
type Env struct {
	// NumCPU is runtime.NumCPU (what nproc reports).
	NumCPU int
	// GOMAXPROCS is the value in force.
	GOMAXPROCS int
	// GoVersion is runtime.Version.
	GoVersion string
	// GOOS and GOARCH describe the platform.
	GOOS, GOARCH string
	// RedisURL and PostgresURL are where the servers were looked for.
	RedisURL, PostgresURL string
	// RedisVersion and PostgresVersion are the servers' versions, empty
	// when the server was not reachable.
	RedisVersion, PostgresVersion string
}

// DetectEnv fills an Env, probing Redis and Postgres with a short timeout.
// An unreachable server leaves its version empty; it is not an error.
func DetectEnv(ctx context.Context) Env {
	e := Env{
		NumCPU:      runtime.NumCPU(),
		GOMAXPROCS:  runtime.GOMAXPROCS(0),
		GoVersion:   runtime.Version(),
		GOOS:        runtime.GOOS,
		GOARCH:      runtime.GOARCH,
		RedisURL:    envOr(RedisURLEnv, DefaultRedisURL),
		PostgresURL: envOr(PostgresURLEnv, DefaultPostgresURL),
	}
	e.RedisVersion = redisVersion(ctx, e.RedisURL)
	e.PostgresVersion = postgresVersion(ctx, e.PostgresURL)
	return e
}

// HasRedis reports whether Redis answered the probe.
func (e Env) HasRedis() bool { return e.RedisVersion != "" }

// HasPostgres reports whether Postgres answered the probe.
func (e Env) HasPostgres() bool { return e.PostgresVersion != "" }

// Has reports whether the named server ("redis", "postgres") is reachable.
func (e Env) Has(server string) bool {
	switch server {
	case "redis":
		return e.HasRedis()
	case "postgres":
		return e.HasPostgres()
	}
	return false
}

// WriteHeader prints the environment lines that head the table.
func (e Env) WriteHeader(w io.Writer) {
	fmt.Fprintf(w, "nproc: %d  GOMAXPROCS: %d  go: %s %s/%s\n", e.NumCPU, e.GOMAXPROCS, e.GoVersion, e.GOOS, e.GOARCH)
	fmt.Fprintf(w, "redis: %s  postgres: %s\n", orNA(e.RedisVersion), orNA(e.PostgresVersion))
}

func orNA(s string) string {
	if s == "" {
		return "n/a"
	}
	return s
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func redisVersion(ctx context.Context, url string) string {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return ""
	}
	opts.DialTimeout = DefaultProbeTimeout
	opts.MaxRetries = -1
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, DefaultProbeTimeout)
	defer cancel()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v
		}
	}
	return "unknown"
}

func postgresVersion(ctx context.Context, url string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return ""
	}
	cfg.ConnectTimeout = DefaultProbeTimeout
	ctx, cancel := context.WithTimeout(ctx, DefaultProbeTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return ""
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var v string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&v); err != nil {
		return "unknown"
	}
	return v
}
