// Command redis walks through the Redis Streams bus and its dead-letter
// queue: it publishes orders, consumes them in two consumer groups, lets one
// handler fail until an order ends in the dead-letter queue, then fixes the
// handler and replays the order through the admin HTTP API.
//
//	go run ./examples/redis                       # REDIS_URL defaults to redis://127.0.0.1:6379/0
//	REDIS_URL=redis://localhost:6380/2 go run ./examples/redis
//
// Every key it creates carries a random namespace and is deleted on exit.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/choicesherpa/eventkit/adapters/redisstream"
	"github.com/choicesherpa/eventkit/deadletter"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/idempotency"
)

// OrderPlaced is the example's domain event.
type OrderPlaced struct {
	OrderID string `json:"order_id"`
	Amount  int    `json:"amount_cents"`
}

func (OrderPlaced) EventType() string     { return "order.placed.v1" }
func (e OrderPlaced) AggregateID() string { return e.OrderID }
func (OrderPlaced) AggregateType() string { return "order" }

const adminToken = "example-admin-token"

func main() {
	redisURL := os.Getenv("REDIS_URL")
	if redisURL == "" {
		redisURL = "redis://127.0.0.1:6379/0"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := run(ctx, redisURL, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "example failed:", err)
		os.Exit(1)
	}
}

// run is the whole walkthrough; it prints what happens to out.
func run(ctx context.Context, redisURL string, out io.Writer) (err error) {
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close() // we made the client, so we close it; the bus and store never do
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis at %s: %w", opts.Addr, err)
	}

	// One namespace (and Redis Cluster hash tag) for every key of this run.
	ns := "{eventkit-example-" + randomHex() + "}"
	defer func() {
		if cerr := cleanup(rdb, ns); cerr != nil && err == nil {
			err = cerr
		}
	}()
	logger := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// The dead-letter store, the bus that writes to it, and the queue over both.
	store, err := redisstream.NewDeadLetterStore(rdb, &redisstream.DeadLetterConfig{KeyPrefix: ns + ":dlq"})
	if err != nil {
		return err
	}
	bus, err := redisstream.New(rdb, &redisstream.Config{
		Stream:         ns + ":events",
		DeadLetters:    store,
		MaxDeliveries:  3,
		Retry:          eventbus.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond},
		Block:          200 * time.Millisecond,
		HandlerTimeout: 2 * time.Second,
		MinIdle:        5 * time.Second,
		Logger:         logger,
	})
	if err != nil {
		return err
	}
	defer bus.Close()
	queue, err := deadletter.NewQueue(store, bus, &deadletter.Config{
		Logger:        slog.New(slog.NewTextHandler(out, nil)), // the audit log
		RedactPayload: true,
	})
	if err != nil {
		return err
	}

	// Consumer group 1: an audit trail that always succeeds.
	var audited atomic.Int64
	auditSub, err := bus.Subscribe(ctx, "audit-trail", eventbus.HandlerFunc(func(ctx context.Context, env eventbus.Envelope) error {
		audited.Add(1)
		return nil
	}), "order.placed.v1")
	if err != nil {
		return err
	}
	defer auditSub.Close()

	// Consumer group 2: billing, idempotent, whose payment provider rejects
	// order-3 until we "fix" it.
	var (
		providerDown atomic.Bool
		billedMu     sync.Mutex
		billed       []string
	)
	providerDown.Store(true)
	billing := eventbus.HandlerFunc(func(ctx context.Context, env eventbus.Envelope) error {
		var o OrderPlaced
		if err := json.Unmarshal(env.Payload, &o); err != nil {
			return eventbus.Permanent(err)
		}
		if o.OrderID == "order-3" && providerDown.Load() {
			return errors.New("payment provider unavailable")
		}
		billedMu.Lock()
		billed = append(billed, o.OrderID)
		billedMu.Unlock()
		return nil
	})
	billingSub, err := bus.Subscribe(ctx, "billing", idempotency.Wrap(billing, idempotency.NewMemoryStore(nil), "billing"), "order.placed.v1")
	if err != nil {
		return err
	}
	defer billingSub.Close()

	// Publish five orders.
	for i := 1; i <= 5; i++ {
		if err := eventbus.PublishEvents(ctx, bus, OrderPlaced{OrderID: fmt.Sprintf("order-%d", i), Amount: 1000 * i}); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	fmt.Fprintln(out, "published 5 orders")

	// Wait until both groups are done: the audit trail saw all five, billing
	// billed four and order-3 went to the dead-letter queue after 3 deliveries.
	if err := waitFor(ctx, "audit trail and dead letter", func() (bool, error) {
		depth, err := queue.Depth(ctx)
		return audited.Load() == 5 && depth == 1, err
	}); err != nil {
		return err
	}
	billedMu.Lock()
	fmt.Fprintf(out, "audit-trail handled %d orders; billing billed %v\n", audited.Load(), billed)
	billedMu.Unlock()

	// The admin API, as the app mounts it at /admin/dlq (here in-process).
	mux := http.NewServeMux()
	mux.Handle("/admin/dlq/", http.StripPrefix("/admin/dlq", deadletter.NewAdminHandler(queue, deadletter.AdminConfig{
		Authorize: func(r *http.Request) (string, error) {
			switch r.Header.Get("Authorization") {
			case "":
				return "", deadletter.ErrUnauthenticated
			case "Bearer " + adminToken:
				return "example-operator", nil
			default:
				return "", deadletter.ErrForbidden
			}
		},
		Logger: logger,
	})))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	api := &client{base: srv.URL + "/admin/dlq", http: srv.Client()}

	var list struct {
		Records []deadletter.Record `json:"records"`
	}
	if err := api.do(ctx, http.MethodGet, "/records?handler=billing", &list); err != nil {
		return err
	}
	if len(list.Records) != 1 {
		return fmt.Errorf("expected one dead letter, got %d", len(list.Records))
	}
	dead := list.Records[0]
	fmt.Fprintf(out, "dead letter: id=%s type=%s reason=%s attempts=%d error=%q payload=%s\n",
		dead.ID, dead.EventType, dead.Reason, dead.Attempts, dead.LastError, dead.Envelope.Payload)

	// Fix the provider and replay through the API. The event keeps its id.
	providerDown.Store(false)
	var replayed deadletter.Record
	if err := api.do(ctx, http.MethodPost, "/replay/"+url.PathEscape(dead.ID), &replayed); err != nil {
		return err
	}
	fmt.Fprintf(out, "replayed: status=%s replay_count=%d\n", replayed.Status, replayed.ReplayCount)
	if err := waitFor(ctx, "billing of the replayed order", func() (bool, error) {
		billedMu.Lock()
		defer billedMu.Unlock()
		return len(billed) == 5, nil
	}); err != nil {
		return err
	}
	billedMu.Lock()
	fmt.Fprintf(out, "billing billed %v (order-3 once, with event id %s)\n", billed, dead.EventID)
	billedMu.Unlock()

	var stats map[string]int
	if err := api.do(ctx, http.MethodGet, "/stats", &stats); err != nil {
		return err
	}
	fmt.Fprintf(out, "dead-letter queue: depth=%d replayed=%d\n", stats["depth"], stats["replayed"])
	if stats["depth"] != 0 {
		return fmt.Errorf("depth %d after replay, want 0", stats["depth"])
	}
	return nil
}

// client is a tiny JSON client for the admin API.
type client struct {
	base string
	http *http.Client
}

func (c *client) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, res.Status, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, out)
}

// waitFor polls cond every 50ms until it holds, or fails after 20s.
func waitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// cleanup deletes every key of the run's namespace.
func cleanup(rdb *redis.Client, ns string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var keys []string
	iter := rdb.Scan(ctx, 0, ns+"*", 500).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	if len(keys) > 0 {
		if err := rdb.Del(ctx, keys...).Err(); err != nil {
			return fmt.Errorf("cleanup: %w", err)
		}
	}
	return nil
}

func randomHex() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
