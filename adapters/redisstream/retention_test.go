package redisstream

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"weak"

	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/eventbus"
)

// Handled events do not stay in memory: not while another entry of the same
// read waits for its retry (deliveries are allocated several at a time),
// nor while the reader idles with the read's arrays; nor does the waiting
// entry's own payload (its hold is keyed by a copy of its id). Payloads are
// big enough for allocations of their own: small entries share slabs, and
// the reader keeps its current slab (at most 4 KB).
func TestHandledPayloadsAreNotKept(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.Retry = eventbus.Backoff{Initial: time.Minute, Max: time.Minute, Jitter: -1}
	b := f.bus(t, c)
	const n = 16
	big := `"` + strings.Repeat("x", 256<<10) + `"` // past a slab: an allocation of its own
	envs := mkEnvs(t, n)
	for i := range envs {
		envs[i].Payload = []byte(big)
	}
	failing := envs[0].EventID
	var mu sync.Mutex
	var kept []weak.Pointer[byte]
	handled := make(chan struct{}, n)
	// Published before the group exists: one read returns all of them.
	require.NoError(t, b.Publish(ctx, envs...))
	_, err := b.Subscribe(ctx, "g", eventbus.HandlerFunc(func(_ context.Context, env eventbus.Envelope) error {
		if env.EventID == failing {
			// Its bytes are not needed while it waits: the retry reads the
			// entry again.
			mu.Lock()
			kept = append(kept, weak.Make(&env.Payload[len(env.Payload)/2]))
			mu.Unlock()
			handled <- struct{}{}
			return errors.New("later")
		}
		mu.Lock()
		kept = append(kept, weak.Make(&env.Payload[len(env.Payload)/2]))
		mu.Unlock()
		handled <- struct{}{}
		return nil
	}))
	require.NoError(t, err)
	for range n {
		select {
		case <-handled:
		case <-ctx.Done():
			t.Fatal("not every event was handled")
		}
	}
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, f.rdb, f.stream, "g") == 1 }, "the 15 handled events were not acked")
	alive := 0
	for range 5 {
		runtime.GC()
		alive = 0
		mu.Lock()
		for _, p := range kept {
			if p.Value() != nil {
				alive++
			}
		}
		mu.Unlock()
		if alive == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.Zero(t, alive, "payloads still reachable while one retry waits")
}
