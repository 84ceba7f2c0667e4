package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/internal/testinfra"
)

// lockedBuilder is written by the relay's and the test's goroutines.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestExample runs the walkthrough against the test PostgreSQL: the failed
// command leaves nothing, the event and its follow-up are published once,
// the redelivery is skipped, and the example drops its schema.
func TestExample(t *testing.T) {
	url := testinfra.PostgresURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out lockedBuilder
	if err := run(ctx, url, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"o-2 rejected, rolled back: amount must be positive",
		"published: order.placed.v1 o-1",
		"published: invoice.issued.v1 o-1",
		"duplicate skipped: order.placed.v1",
		"orders=1 invoices=1 markers=1",
		"dropped schema eventkit_example_",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "published: order.placed.v1"); n != 1 {
		t.Errorf("order.placed.v1 published %d times:\n%s", n, got)
	}
	if strings.Contains(got, "o-2 (causation") {
		t.Errorf("the rolled-back order's event was published:\n%s", got)
	}
}
