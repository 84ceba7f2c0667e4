package testinfra_test

import (
	"context"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/internal/testinfra"
	"github.com/redis/go-redis/v9"
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
