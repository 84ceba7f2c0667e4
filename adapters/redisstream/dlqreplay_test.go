package redisstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/adapters/redisstream"
	"github.com/choicesherpa/eventkit/deadletter"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/idempotency"
	"github.com/choicesherpa/eventkit/internal/testinfra"
)

type dlqOrder struct {
	ID string `json:"id"`
}

func (dlqOrder) EventType() string     { return "order.placed.v1" }
func (o dlqOrder) AggregateID() string { return o.ID }
func (dlqOrder) AggregateType() string { return "order" }
func (o dlqOrder) envelope() eventbus.Envelope {
	return eventbus.MustEnvelope(context.Background(), o)
}

// dlqAPI calls the admin handler over HTTP as an admin.
type dlqAPI struct {
	t    *testing.T
	base string
}

func (a dlqAPI) call(method, path string, out any) int {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, nil)
	require.NoError(a.t, err)
	req.Header.Set("Authorization", "Bearer admin")
	res, err := http.DefaultClient.Do(req)
	require.NoError(a.t, err)
	defer res.Body.Close()
	if out != nil {
		require.NoError(a.t, json.NewDecoder(res.Body).Decode(out))
	}
	return res.StatusCode
}

// Q3 end to end on Redis: the bus dead-letters into the Redis store; replays
// through the admin API keep the event id (effect once after a double
// replay); a replayed event that still fails returns to the DLQ with its
// replay count and is not redelivered in a loop; replay by filter.
func TestDLQReplayThroughBusAndAdminAPI(t *testing.T) {
	t.Parallel()
	rdb, prefix := testinfra.Redis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	store, err := redisstream.NewDeadLetterStore(rdb, &redisstream.DeadLetterConfig{KeyPrefix: prefix})
	require.NoError(t, err)
	bus, err := redisstream.New(rdb, &redisstream.Config{
		Stream:          prefix + "{events}",
		Consumer:        testinfra.UniqueName("c"),
		DeadLetters:     store,
		MaxDeliveries:   2,
		Block:           100 * time.Millisecond,
		HandlerTimeout:  time.Second,
		MinIdle:         2500 * time.Millisecond,
		ClaimInterval:   100 * time.Millisecond,
		Retry:           eventbus.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		ShutdownTimeout: 5 * time.Second,
		Logger:          slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, bus.Close()) })

	var (
		failing    atomic.Bool
		calls      atomic.Int64
		duplicates = make(chan eventbus.EventID, 16)
		mu         sync.Mutex
		applied    = map[string]int{}
	)
	failing.Store(true)
	inner := eventbus.HandlerFunc(func(_ context.Context, env eventbus.Envelope) error {
		calls.Add(1)
		if failing.Load() && strings.HasPrefix(env.AggregateID, "bad") {
			return errors.New("downstream unavailable")
		}
		mu.Lock()
		applied[env.AggregateID]++
		mu.Unlock()
		return nil
	})
	idem := idempotency.Wrap(inner, idempotency.NewMemoryStore(nil), "billing")
	idem.OnDuplicate = func(_ context.Context, env eventbus.Envelope) { duplicates <- env.EventID }
	sub, err := bus.Subscribe(ctx, "billing", idem, "order.placed.v1")
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })

	queue, err := deadletter.NewQueue(store, bus, &deadletter.Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	srv := httptest.NewServer(deadletter.NewAdminHandler(queue, deadletter.AdminConfig{
		Authorize: func(r *http.Request) (string, error) {
			if r.Header.Get("Authorization") != "Bearer admin" {
				return "", deadletter.ErrUnauthenticated
			}
			return "admin", nil
		},
		Logger: slog.New(slog.DiscardHandler),
	}))
	t.Cleanup(srv.Close)
	api := dlqAPI{t: t, base: srv.URL}

	bad := dlqOrder{ID: "bad-1"}.envelope()
	batch := []eventbus.Envelope{dlqOrder{ID: "bad-2"}.envelope(), dlqOrder{ID: "bad-3"}.envelope()}
	require.NoError(t, bus.Publish(ctx, append([]eventbus.Envelope{bad, dlqOrder{ID: "good"}.envelope()}, batch...)...))
	id := deadletter.RecordID("billing", bad.EventID.String())

	getRec := func() deadletter.Record {
		var r deadletter.Record
		require.Equal(t, http.StatusOK, api.call(http.MethodGet, "/records/"+url.PathEscape(id), &r))
		return r
	}
	require.Eventually(t, func() bool {
		n, err := queue.Depth(ctx)
		return err == nil && n == 3
	}, 20*time.Second, 20*time.Millisecond, "three bad orders dead-lettered after 2 deliveries each")
	rec := getRec()
	require.Equal(t, 2, rec.Attempts)
	require.Equal(t, deadletter.ReasonMaxDeliveries, rec.Reason)
	require.Equal(t, bad.EventID.String(), rec.EventID)

	// Still failing: each replay brings it back dead with the count kept.
	for round := 1; round <= 2; round++ {
		before := calls.Load()
		var r deadletter.Record
		require.Equal(t, http.StatusOK, api.call(http.MethodPost, "/replay/"+url.PathEscape(id), &r))
		require.Equal(t, round, r.ReplayCount)
		require.Eventually(t, func() bool {
			r := getRec()
			return r.Status == deadletter.StatusDead && r.ReplayCount == round
		}, 20*time.Second, 20*time.Millisecond, "round %d: back in the DLQ", round)
		require.Equal(t, before+2, calls.Load(), "round %d: MaxDeliveries deliveries of the replay", round)
	}
	// It does not loop: no further deliveries while it sits in the DLQ.
	settled := calls.Load()
	time.Sleep(300 * time.Millisecond) // a negative check: nothing may happen
	require.Equal(t, settled, calls.Load())

	// Fixed: replay applies the effect once; a second replay is a duplicate.
	failing.Store(false)
	var r deadletter.Record
	require.Equal(t, http.StatusOK, api.call(http.MethodPost, "/replay/"+url.PathEscape(id), &r))
	require.Equal(t, 3, r.ReplayCount)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return applied["bad-1"] == 1
	}, 20*time.Second, 20*time.Millisecond)
	require.Equal(t, http.StatusOK, api.call(http.MethodPost, "/replay/"+url.PathEscape(id), &r))
	require.Equal(t, 4, r.ReplayCount)
	select {
	case dup := <-duplicates:
		require.Equal(t, bad.EventID, dup, "the replay kept the event id, so the idempotent handler skipped it")
	case <-time.After(20 * time.Second):
		t.Fatal("second replay never delivered")
	}
	mu.Lock()
	require.Equal(t, 1, applied["bad-1"])
	mu.Unlock()
	final := getRec()
	require.Equal(t, deadletter.StatusReplayed, final.Status)
	require.Equal(t, 4, final.ReplayCount)

	// Replay by filter: the two remaining dead orders.
	var res struct {
		Matched, Replayed, Failed int
		More                      bool
	}
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/replay", strings.NewReader(`{"filter":{"handler":"billing","type":"order.placed.v1"},"limit":10}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer admin")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&res))
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, 2, res.Matched)
	require.Equal(t, 2, res.Replayed)
	require.False(t, res.More)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return applied["bad-2"] == 1 && applied["bad-3"] == 1
	}, 20*time.Second, 20*time.Millisecond)
	depth, err := queue.Depth(ctx)
	require.NoError(t, err)
	require.Zero(t, depth)
	mu.Lock()
	require.Equal(t, 1, applied["good"])
	mu.Unlock()
}
