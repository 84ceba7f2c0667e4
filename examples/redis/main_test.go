package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/internal/testinfra"
)

// TestExample runs the walkthrough against the test Redis.
func TestExample(t *testing.T) {
	url := testinfra.RedisURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, url, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"reason=max_deliveries attempts=3", `payload="[redacted]"`, "replayed: status=replayed replay_count=1", "depth=0 replayed=1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
