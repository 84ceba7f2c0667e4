package testinfra_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/choicesherpa/eventkit/internal/testinfra"
)

// TestPostgresRoundTrip proves the tests reach a real server in an isolated schema.
func TestPostgresRoundTrip(t *testing.T) {
	schema, pool := testinfra.Schema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := pool.Exec(ctx, "CREATE TABLE roundtrip (v text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO roundtrip VALUES ($1)", "hello"); err != nil {
		t.Fatal(err)
	}
	var got, where string
	if err := pool.QueryRow(ctx, "SELECT v, current_schema() FROM roundtrip").Scan(&got, &where); err != nil {
		t.Fatal(err)
	}
	if got != "hello" || where != schema {
		t.Fatalf("got %q in schema %q, want hello in %q", got, where, schema)
	}
}

// TestRedisRoundTrip proves the tests reach a real Redis under their own prefix.
func TestRedisRoundTrip(t *testing.T) {
	c, prefix := testinfra.Redis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key := prefix + "stream"
	if err := c.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"k", "v"}}).Err(); err != nil {
		t.Fatal(err)
	}
	n, err := c.XLen(ctx, key).Result()
	if err != nil || n != 1 {
		t.Fatalf("XLEN = %d, %v; want 1", n, err)
	}
}

// TestCleanupRemovesSchemaAndKeys proves the isolation is torn down: once a
// test that used Schema and Redis has finished, its schema and its keys are
// gone (otherwise every run would leave debris on the shared servers).
func TestCleanupRemovesSchemaAndKeys(t *testing.T) {
	var schema, key, tagged string
	t.Run("user", func(t *testing.T) {
		s, pool := testinfra.Schema(t)
		schema = s
		if _, err := pool.Exec(t.Context(), "CREATE TABLE leftover (v int)"); err != nil {
			t.Fatal(err)
		}
		c, prefix := testinfra.Redis(t)
		key = prefix + "leftover"
		// Adapters wrap names in a cluster hash tag: "{prefix...}" must go too.
		tagged = "{" + prefix + "events}:replay:g"
		for _, k := range []string{key, tagged} {
			if err := c.Set(t.Context(), k, "x", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	conn, err := pgx.Connect(ctx, testinfra.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", schema).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("schema %s still exists after its test ended", schema)
	}

	opts, err := redis.ParseURL(testinfra.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	exists, err := rdb.Exists(ctx, key, tagged).Result()
	if err != nil {
		t.Fatal(err)
	}
	if exists != 0 {
		t.Fatalf("%d of %s, %s still exist after their test ended", exists, key, tagged)
	}
}
