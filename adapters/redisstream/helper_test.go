package redisstream

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/internal/testinfra"
)

const helperEnv = "GO_WANT_HELPER_PROCESS"

// Helper process settings (environment).
const (
	helperURL      = "HELPER_REDIS_URL"
	helperStream   = "HELPER_STREAM"
	helperGroup    = "HELPER_GROUP"
	helperConsumer = "HELPER_CONSUMER"
	helperMode     = "HELPER_MODE" // "hold": print "got <id>" and block; "work": print "done <id> <count>" and succeed
	helperExit     = "HELPER_EXIT_AFTER"
)

// runHelper is a consumer process for crash tests (C1).
func runHelper() int {
	opts, err := redis.ParseURL(os.Getenv(helperURL))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	stream, group := os.Getenv(helperStream), os.Getenv(helperGroup)
	c := fastConfig(stream)
	c.Consumer = os.Getenv(helperConsumer)
	c.HandlerTimeout = 200 * time.Millisecond
	c.MinIdle = time.Hour // this process never claims from others
	c.Concurrency = 1
	c.Buffer = 1
	c.Count = 1
	hold := os.Getenv(helperMode) == "hold"
	if hold {
		c.Concurrency, c.Count = 10, 10
	}
	b, err := New(rdb, c)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	exitAfter, _ := strconv.Atoi(os.Getenv(helperExit))
	var mu sync.Mutex
	done := 0
	finished := make(chan struct{})
	_, err = b.Subscribe(context.Background(), group, eventbus.HandlerFunc(func(ctx context.Context, env eventbus.Envelope) error {
		if hold {
			fmt.Printf("got %s\n", env.EventID)
			select {} // until SIGKILL
		}
		var count int64
		if p, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: group, Start: "-", End: "+", Count: 1000, Consumer: c.Consumer}).Result(); err == nil {
			for _, x := range p {
				if x.ID != "" {
					// the entry being handled is the one whose event id matches; find it
					vals, _ := rdb.XRange(ctx, stream, x.ID, x.ID).Result()
					if len(vals) == 1 && vals[0].Values[FieldID] == env.EventID.String() {
						count = x.RetryCount
					}
				}
			}
		}
		fmt.Printf("done %s %d\n", env.EventID, count)
		mu.Lock()
		done++
		if done == exitAfter {
			close(finished)
		}
		mu.Unlock()
		return nil
	}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	select {
	case <-finished:
	case <-time.After(time.Minute):
		return 3
	}
	_ = b.Close()
	return 0
}

// helperProc is a running helper process and its stdout lines.
type helperProc struct {
	cmd   *exec.Cmd
	lines chan string
}

func startHelper(t *testing.T, env ...string) *helperProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=1"}, env...)...)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	h := &helperProc{cmd: cmd, lines: make(chan string, 1000)}
	go func() {
		defer close(h.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return h
}

func (h *helperProc) next(t *testing.T, d time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-h.lines:
		if !ok {
			t.Fatal("helper exited early")
		}
		return l
	case <-time.After(d):
		t.Fatal("helper: no output in time")
	}
	return ""
}

// C1: a consumer process killed mid-handling; its entries are recovered by
// itself (own PEL first, after restart) or claimed by another consumer
// after min-idle with delivery counts >= 2; a consumer is deleted only with
// zero pending; XPENDING ends at 0.
func TestConsumerProcessKilled(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	pub := f.bus(t, nil)
	url := testinfra.RedisURL(t)
	env := func(mode, exit string) []string {
		return []string{helperURL + "=" + url, helperStream + "=" + f.stream, helperGroup + "=g", helperConsumer + "=A", helperMode + "=" + mode, helperExit + "=" + exit}
	}

	// Round 1: A reads 10 and is SIGKILLed mid-handling.
	first := mkEnvs(t, 10)
	require.NoError(t, pub.Publish(ctx, first...))
	a := startHelper(t, env("hold", "0")...)
	for range 10 {
		require.True(t, strings.HasPrefix(a.next(t, 20*time.Second), "got "))
	}
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGKILL))
	_ = a.cmd.Wait()
	require.EqualValues(t, 10, pendingCount(t, f.rdb, f.stream, "g"))
	n, err := deleteConsumerIfIdle(ctx, f.rdb, f.stream, "g", "A", 0)
	require.NoError(t, err)
	require.Zero(t, n, "a consumer with pending entries is never deleted")

	// Round 2: A restarts under the same name and handles its own PEL first
	// (delivery count >= 2), then new entries.
	second := mkEnvs(t, 10)
	require.NoError(t, pub.Publish(ctx, second...))
	a2 := startHelper(t, env("work", "20")...)
	firstIDs, secondIDs := ids(first), ids(second)
	for i := range 20 {
		fields := strings.Fields(a2.next(t, 20*time.Second))
		require.Len(t, fields, 3)
		id := eventbus.MustParseEventID(fields[1])
		count, _ := strconv.Atoi(fields[2])
		if i < 10 {
			require.True(t, firstIDs[id], "own pending entries come first")
			require.GreaterOrEqual(t, count, 2)
		} else {
			require.True(t, secondIDs[id])
		}
	}
	require.NoError(t, a2.cmd.Wait())
	requirePendingZero(t, f.rdb, f.stream, "g")

	// Round 3: A reads 10 more and dies; B claims them after min-idle 500ms.
	third := mkEnvs(t, 10)
	require.NoError(t, pub.Publish(ctx, third...))
	a3 := startHelper(t, env("hold", "0")...)
	for range 10 {
		a3.next(t, 20*time.Second)
	}
	require.NoError(t, a3.cmd.Process.Signal(syscall.SIGKILL))
	_ = a3.cmd.Wait()
	c := f.config()
	c.Consumer = "B"
	c.HandlerTimeout = 200 * time.Millisecond
	c.MinIdle = 500 * time.Millisecond
	c.ConsumerIdleTTL = 200 * time.Millisecond
	entryOf := map[eventbus.EventID]string{}
	msgs, err := f.rdb.XRange(ctx, f.stream, "-", "+").Result()
	require.NoError(t, err)
	for _, m := range msgs {
		entryOf[eventbus.MustParseEventID(m.Values[FieldID].(string))] = m.ID
	}
	b := f.bus(t, c)
	rec := newRecorder(10, deliveryCountProbe(t, f.rdb, f.stream, "g", entryOf))
	_, err = b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	rec.wait(t, 20*time.Second)
	for id := range ids(third) {
		require.Contains(t, rec.ok, id)
	}
	requirePendingZero(t, f.rdb, f.stream, "g")
	// Idle cleanup deletes A now that it holds nothing.
	eventually(t, 10*time.Second, func() bool {
		cs, err := f.rdb.XInfoConsumers(ctx, f.stream, "g").Result()
		if err != nil {
			return false
		}
		for _, c := range cs {
			if c.Name == "A" {
				return false
			}
		}
		return true
	}, "A not deleted after its pending entries were claimed")
}
