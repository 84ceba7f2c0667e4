package redisstream

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/internal/faultproxy"
	"github.com/choicesherpa/eventkit/internal/testinfra"
)

const redisServerBin = "/usr/bin/redis-server"

// throwaway is a redis-server of the test's own, on a free port in a temp
// dir; the shared server is never touched.
type throwaway struct {
	t    *testing.T
	port int
	dir  string
	args []string
	cmd  *exec.Cmd
}

func startThrowaway(t *testing.T, args ...string) *throwaway {
	t.Helper()
	bin := redisServerBin
	if _, err := os.Stat(bin); err != nil {
		if p, err := exec.LookPath("redis-server"); err == nil {
			bin = p
		} else if testinfra.InCI() {
			t.Fatalf("redis-server not found: %v", err)
		} else {
			t.Skip("redis-server not installed")
		}
	}
	s := &throwaway{t: t, port: testinfra.FreePort(t), dir: t.TempDir(), args: args}
	s.start(bin)
	t.Cleanup(s.kill)
	return s
}

func (s *throwaway) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

func (s *throwaway) start(bin string) {
	s.t.Helper()
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir, "--daemonize", "no", "--logfile", ""}, s.args...)
	s.cmd = exec.Command(bin, args...)
	require.NoError(s.t, s.cmd.Start())
	c := redis.NewClient(&redis.Options{Addr: s.addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("throwaway redis on %s did not start: %v", s.addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill9 kills the server like a crash.
func (s *throwaway) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

func (s *throwaway) restart() {
	s.kill()
	s.start(redisServerBin)
}

func throwawayClient(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr: addr, DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second,
		PoolSize: 40, MaxRetries: 1, MinRetryBackoff: 50 * time.Millisecond, MaxRetryBackoff: 200 * time.Millisecond,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// countingHandler counts log records whose message contains a substring.
type countingHandler struct {
	slog.Handler
	sub string
	n   *atomic.Int64
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.sub) {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(as), h.sub, h.n}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// C4: Redis restarts without persistence: consumers see NOGROUP, re-create
// the group (logging it once), keep consuming, and stay cheap while Redis
// is down or idle. Not parallel: it measures this process's CPU time.
func TestRedisRestartWithoutPersistence(t *testing.T) {
	srv := startThrowaway(t, "--save", "", "--appendonly", "no")
	rdb := throwawayClient(t, srv.addr())
	ctx := ctxT(t)
	var nogroupLogs atomic.Int64
	c := fastConfig("c4:events")
	c.Block = 500 * time.Millisecond
	c.Logger = slog.New(countingHandler{slog.NewTextHandler(devNull(t), nil), "NOGROUP", &nogroupLogs})
	b, err := New(rdb, c)
	require.NoError(t, err)
	defer b.Close()
	rec := newRecorder(20, nil)
	_, err = b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	envs := mkEnvs(t, 20)
	require.NoError(t, b.Publish(ctx, envs[:10]...))
	eventually(t, 10*time.Second, func() bool { return rec.count() == 10 }, "first half")

	srv.kill()
	// Down for 2s: the subscription backs off instead of spinning.
	cpu0 := cpuTime()
	time.Sleep(2 * time.Second)
	downCPU := cpuTime() - cpu0
	srv.start(redisServerBin)

	// Publish after the restart; the group is re-created and gets it.
	var pubErr error
	for range 50 {
		if pubErr = b.Publish(ctx, envs[10:]...); pubErr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, pubErr)
	rec.wait(t, 10*time.Second)
	requirePendingZero(t, rdb, "c4:events", "g")
	require.EqualValues(t, 1, nogroupLogs.Load(), "NOGROUP is logged once")
	require.Greater(t, b.counters.groupsMade.Load(), int64(1), "the group was re-created")

	cpu1 := cpuTime()
	time.Sleep(2 * time.Second)
	idleCPU := cpuTime() - cpu1
	t.Logf("CPU while Redis was down: %s per 2s; idle: %s per 2s", downCPU, idleCPU)
	require.Less(t, downCPU, 200*time.Millisecond, "< 10%% of a core while Redis is down")
	require.Less(t, idleCPU, 200*time.Millisecond, "< 10%% of a core while idle")
}

func devNull(t *testing.T) *os.File {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

// C3: Redis with appendfsync always is killed and restarted twice during
// the publishes: every publish that returned success is received at least
// once; failing publishes fail within a bound; consumers resume on their own.
func TestRedisCrashDuringPublishes(t *testing.T) {
	t.Parallel()
	srv := startThrowaway(t, "--appendonly", "yes", "--appendfsync", "always", "--save", "")
	rdb := throwawayClient(t, srv.addr())
	ctx := ctxT(t)
	c := fastConfig("c3:events")
	c.WriteTimeout = 2 * time.Second
	b, err := New(rdb, c)
	require.NoError(t, err)
	defer b.Close()
	total := size(10000)
	var mu sync.Mutex
	received := map[eventbus.EventID]int{}
	_, err = b.Subscribe(ctx, "g", eventbus.HandlerFunc(func(_ context.Context, env eventbus.Envelope) error {
		mu.Lock()
		received[env.EventID]++
		mu.Unlock()
		return nil
	}))
	require.NoError(t, err)

	var published atomic.Int64
	var okIDs sync.Map
	var slowFail atomic.Int64
	var failed atomic.Int64
	const publishers = 100
	per := total / publishers
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				env := mkEnv(t, i, "p"+strconv.Itoa(p))
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				start := time.Now()
				err := b.Publish(pctx, env)
				cancel()
				if err != nil {
					failed.Add(1)
					if time.Since(start) > 4*time.Second {
						slowFail.Add(1)
					}
					continue
				}
				okIDs.Store(env.EventID, true)
				published.Add(1)
			}
		}()
	}
	var restarts []time.Time
	for _, frac := range []int{3, 2} {
		eventually(t, time.Minute, func() bool { return published.Load() >= int64(total/frac) }, "publishing stalled")
		srv.kill()
		time.Sleep(200 * time.Millisecond)
		srv.start(redisServerBin)
		restarts = append(restarts, time.Now())
	}
	wg.Wait()
	require.Zero(t, slowFail.Load(), "failing publishes return within a bounded time")
	// Every successful publish is received at least once.
	var want []eventbus.EventID
	okIDs.Range(func(k, _ any) bool { want = append(want, k.(eventbus.EventID)); return true })
	eventually(t, 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range want {
			if received[id] == 0 {
				return false
			}
		}
		return true
	}, "not every accepted event was received")
	// Consumers resume on their own within 5s of a restart.
	srv.restart()
	restarted := time.Now()
	marker := mkEnv(t, -1, "marker")
	require.Eventually(t, func() bool { return b.Publish(ctx, marker) == nil }, 5*time.Second, 50*time.Millisecond)
	eventually(t, 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return received[marker.EventID] > 0
	}, "consumer did not resume")
	t.Logf("consumer resumed %s after the restart", time.Since(restarted))
	_ = restarts
	t.Logf("accepted %d, failed %d of %d publishes", len(want), failed.Load(), total)
	require.GreaterOrEqual(t, len(want), total/2)
}

// C5: network faults between the bus and Redis (reset, a 2s blackhole,
// 500ms latency, CLIENT KILL on the throwaway server): nothing is lost,
// reconnects are rate-limited and goroutines do not grow.
func TestNetworkFaults(t *testing.T) {
	t.Parallel()
	srv := startThrowaway(t, "--save", "", "--appendonly", "no")
	proxy, err := faultproxy.New(srv.addr())
	require.NoError(t, err)
	defer proxy.Close()
	rdb := throwawayClient(t, proxy.Addr())
	admin := throwawayClient(t, srv.addr())
	ctx := ctxT(t)
	c := fastConfig("c5:events")
	c.WriteTimeout = 2 * time.Second
	c.HandlerTimeout = 500 * time.Millisecond
	c.MinIdle = 3 * time.Second
	b, err := New(rdb, c)
	require.NoError(t, err)
	defer b.Close()
	total := size(2000)
	rec := newRecorder(total, nil)
	_, err = b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	baseG := runtime.NumGoroutine()

	// Publishers retry until accepted, as the outbox relay does.
	envs := mkEnvs(t, total)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				for {
					pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
					err := b.Publish(pctx, envs[i])
					cancel()
					if err == nil {
						break
					}
					if ctx.Err() != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	step := func(name string, f func()) {
		t.Logf("fault: %s", name)
		f()
		time.Sleep(300 * time.Millisecond)
	}
	step("reset", proxy.Reset)
	var accDuring int64
	step("blackhole 2s", func() {
		a0 := proxy.Accepted()
		proxy.Blackhole(true)
		time.Sleep(2 * time.Second)
		accDuring = proxy.Accepted() - a0
		proxy.Blackhole(false)
	})
	step("latency 500ms", func() {
		proxy.SetLatency(500 * time.Millisecond)
		time.Sleep(2 * time.Second)
		proxy.SetLatency(0)
	})
	step("client kill", func() {
		require.NoError(t, admin.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err())
	})
	wg.Wait()
	rec.wait(t, time.Minute)
	// Entries whose read reply died with a connection are recovered at once
	// (recoverUnheld) or, at worst, claimed after MinIdle.
	deadline := time.Now().Add(15 * time.Second)
	for pendingCount(t, admin, "c5:events", "g") != 0 {
		if time.Now().After(deadline) {
			p, _ := admin.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: "c5:events", Group: "g", Start: "-", End: "+", Count: 10}).Result()
			st, _ := b.Stats(ctx)
			var held []string
			b.mu.Lock()
			for s := range b.subs {
				s.heldMu.Lock()
				for _, m := range s.held {
					for id := range m {
						held = append(held, id)
					}
				}
				s.heldMu.Unlock()
				s.retryMu.Lock()
				held = append(held, fmt.Sprintf("retries=%d", len(s.retries)))
				s.retryMu.Unlock()
			}
			b.mu.Unlock()
			t.Fatalf("XPENDING not 0: %+v; stats %+v; held %v; handler failures %d", p, st, held, b.counters.failed.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The handler never fails: a failure here is a test bug (the recorder
	// once panicked on a duplicate) and would show up as an entry retried
	// forever instead of as its cause.
	require.Zero(t, b.counters.failed.Load(), "handler calls failed")
	t.Logf("connections accepted during the 2s blackhole: %d; duplicates handled: %d", accDuring, b.counters.delivered.Load()-int64(total))
	require.LessOrEqual(t, accDuring, int64(60), "reconnects are rate-limited")
	eventually(t, 10*time.Second, func() bool { return runtime.NumGoroutine() <= baseG+10 },
		"goroutines grew: %d -> %d", baseG, runtime.NumGoroutine())
}

// Publish honours ctx deadlines even when Redis stops answering (the
// client's own timeouts are longer).
func TestPublishDeadlineWhenRedisStalls(t *testing.T) {
	t.Parallel()
	_, prefix := testinfra.Redis(t)
	opts, proxy := proxiedOptions(t)
	opts.ReadTimeout, opts.WriteTimeout = 10*time.Second, 10*time.Second
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	c := fastConfig(prefix + "events")
	c.WriteTimeout = 5 * time.Second
	b, err := New(rdb, c)
	require.NoError(t, err)
	defer b.Close()
	ctx := ctxT(t)
	require.NoError(t, b.Publish(ctx, mkEnv(t, 1, "a")))

	proxy.Blackhole(true)
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = b.Publish(pctx, mkEnv(t, 2, "a"))
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), time.Second)
	proxy.Blackhole(false)
	require.Eventually(t, func() bool { return b.Publish(ctx, mkEnv(t, 3, "a")) == nil }, 20*time.Second, 100*time.Millisecond)
}

// The first read that succeeds after a failed one recovers the entries
// whose earlier reply was lost, but never the entries that very read just
// returned: those are handled once, not twice at once (recoverUnheld used
// to run before the read's own entries were held, claimed them back and
// dispatched them a second time).
func TestReadAfterErrorHandlesEachEntryOnce(t *testing.T) {
	t.Parallel()
	rdb, prefix := testinfra.Redis(t)
	opts, proxy := proxiedOptions(t)
	opts.MaxRetries = -1 // the reader must see the reset, not a silent retry
	viaProxy := redis.NewClient(opts)
	defer viaProxy.Close()

	var readFails atomic.Int64
	c := fastConfig(prefix + "events")
	c.MinIdle = time.Hour // only recoverUnheld could claim anything
	// A long first backoff: the entries are published while the reader
	// waits, so its first successful read returns them.
	c.ReconnectBackoff = eventbus.Backoff{Initial: 2 * time.Second, Max: 2 * time.Second}
	c.Logger = slog.New(countingHandler{slog.NewTextHandler(devNull(t), nil), "read failed", &readFails})
	b, err := New(viaProxy, c)
	require.NoError(t, err)
	defer b.Close()
	ctx := ctxT(t)
	envs := mkEnvs(t, 5)
	rec := newRecorder(len(envs), nil)
	_, err = b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)

	// Reset until the reader's blocked XREADGROUP fails (it may be between
	// reads when a reset lands).
	for i := 0; readFails.Load() == 0; i++ {
		require.Less(t, i, 50, "the reader never saw a reset")
		proxy.Reset()
		deadline := time.Now().Add(300 * time.Millisecond)
		for readFails.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	for i := range envs {
		fields, err := encodeEntry(&envs[i], 0)
		require.NoError(t, err)
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: c.Stream, Values: fields}).Err())
	}
	rec.wait(t, 20*time.Second)
	requirePendingZero(t, rdb, c.Stream, "g")
	require.NoError(t, b.Close()) // every delivery already routed has run
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, env := range envs {
		require.Equal(t, 1, rec.calls[env.EventID], "event %s handled more than once", env.EventID)
	}
	require.EqualValues(t, len(envs), b.counters.delivered.Load())
}

// Close returns within ShutdownTimeout even when Redis stops answering
// while handlers finish: acknowledgements that cannot be sent in time are
// abandoned (their entries stay pending and are redelivered) instead of
// being retried for the ack-flush bound (10s here).
func TestCloseHonoursShutdownTimeoutWhenRedisStalls(t *testing.T) {
	t.Parallel()
	_, prefix := testinfra.Redis(t)
	opts, proxy := proxiedOptions(t)
	// A call in flight at the deadline still takes up to the client's own
	// I/O timeout to return.
	opts.ReadTimeout, opts.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond
	opts.MaxRetries = -1
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	c := fastConfig(prefix + "events")
	c.WriteTimeout = time.Second // acks are retried for max(3*WriteTimeout, 10s)
	c.ShutdownTimeout = 1500 * time.Millisecond
	b, err := New(rdb, c)
	require.NoError(t, err)
	defer b.Close()
	ctx := ctxT(t)

	started := make(chan struct{}, 10)
	release := make(chan struct{})
	_, err = b.Subscribe(ctx, "g", eventbus.HandlerFunc(func(ctx context.Context, _ eventbus.Envelope) error {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}))
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, mkEnvs(t, 3)...))
	for range 3 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("handlers never started")
		}
	}

	proxy.Blackhole(true)
	defer proxy.Blackhole(false)
	// The handlers finish once Close has begun: their acks cannot land.
	time.AfterFunc(200*time.Millisecond, func() { close(release) })
	start := time.Now()
	require.NoError(t, b.Close())
	took := time.Since(start)
	t.Logf("Close took %s", took)
	require.Less(t, took, c.ShutdownTimeout+700*time.Millisecond, "Close overran ShutdownTimeout")
}

// proxiedOptions returns client options for the test Redis that go through
// a fault proxy (closed at cleanup), for the caller to tune and connect.
func proxiedOptions(t *testing.T) (*redis.Options, *faultproxy.Proxy) {
	t.Helper()
	opts, err := redis.ParseURL(testinfra.RedisURL(t))
	require.NoError(t, err)
	proxy, err := faultproxy.New(opts.Addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	opts.Addr = proxy.Addr()
	return opts, proxy
}

// silentRedisBus is a bus whose client goes through a fault proxy, for
// closing while Redis goes silent: 3 s client and write timeouts (go-redis
// bounds socket reads by its own timeouts, not by contexts, so a stuck
// start gives up after ReadTimeout, longer than ShutdownTimeout) and a 1 s
// ShutdownTimeout.
func silentRedisBus(t *testing.T) (*Bus, *Config, *redis.Client, *faultproxy.Proxy) {
	t.Helper()
	_, prefix := testinfra.Redis(t)
	opts, proxy := proxiedOptions(t)
	opts.ReadTimeout, opts.WriteTimeout = 3*time.Second, 3*time.Second
	opts.MaxRetries = -1
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	c := fastConfig(prefix + "events")
	c.WriteTimeout = 3 * time.Second
	c.ShutdownTimeout = time.Second
	b, err := New(rdb, c)
	require.NoError(t, err)
	return b, c, rdb, proxy
}

// subscribeStuck starts a broadcast Subscribe on a silent Redis and
// returns a function that requires it to have given up (bounded by the
// client's read timeout).
func subscribeStuck(t *testing.T, b *Bus, rdb *redis.Client) (requireGaveUp func()) {
	t.Helper()
	subErr := make(chan error, 1)
	go func() {
		_, err := b.SubscribeBroadcast(context.Background(), "live", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error { return nil }))
		subErr <- err
	}()
	time.Sleep(200 * time.Millisecond) // Subscribe is waiting on Redis
	return func() {
		t.Helper()
		select {
		case err := <-subErr:
			require.Error(t, err, "a subscription cannot start on a closed bus")
		case <-time.After(rdb.Options().ReadTimeout + 5*time.Second):
			t.Fatal("Subscribe did not give up")
		}
	}
}

// Bus.Close keeps to ShutdownTimeout while a Subscribe is stuck starting
// on a silent Redis; the Subscribe then fails on its own, bounded by
// WriteTimeout.
func TestCloseDuringSubscribeOnSilentRedis(t *testing.T) {
	t.Parallel()
	b, c, rdb, proxy := silentRedisBus(t)
	require.NoError(t, rdb.Ping(ctxT(t)).Err()) // a pooled connection, then silence
	proxy.Blackhole(true)
	requireGaveUp := subscribeStuck(t, b, rdb)
	start := time.Now()
	require.NoError(t, b.Close())
	require.Less(t, time.Since(start), c.ShutdownTimeout+500*time.Millisecond, "Close kept to ShutdownTimeout")
	requireGaveUp()
	proxy.Blackhole(false)
}

// Bus.Close keeps to one ShutdownTimeout when a Subscribe is stuck starting
// on a silent Redis while a handler is busy: waiting for the start does not
// add a ShutdownTimeout of its own, and the tidying calls that go-redis
// would let run for its read timeout are not waited for. It took 5 s for a
// 1 s timeout.
func TestBusCloseWithBusyHandlerAndStalledSubscribe(t *testing.T) {
	t.Parallel()
	b, c, rdb, proxy := silentRedisBus(t)
	ctx := ctxT(t)
	started := make(chan struct{}, 1)
	_, err := b.Subscribe(ctx, "busy", eventbus.HandlerFunc(func(hctx context.Context, _ eventbus.Envelope) error {
		started <- struct{}{}
		<-hctx.Done() // busy until Close gives up on it
		return hctx.Err()
	}))
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, mkEnv(t, 1, "a")))
	<-started
	proxy.Blackhole(true)
	requireGaveUp := subscribeStuck(t, b, rdb)
	start := time.Now()
	_ = b.Close()
	require.Less(t, time.Since(start), c.ShutdownTimeout+700*time.Millisecond, "Close kept to ShutdownTimeout")
	requireGaveUp()
	proxy.Blackhole(false)
}

// On a healthy Redis, Close tidies up (deletes its idle consumer) even when
// its reader is still blocked in an XREADGROUP longer than ShutdownTimeout:
// a blocked read is not a silent Redis.
func TestCloseTidiesWhileTheReadStillBlocks(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	c := f.config()
	c.Block = 3 * time.Second
	c.ShutdownTimeout = 300 * time.Millisecond
	b, err := New(f.rdb, c)
	require.NoError(t, err)
	rec := newRecorder(1, nil)
	_, err = b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, mkEnv(t, 1, "a")))
	rec.wait(t, 10*time.Second)
	requirePendingZero(t, f.rdb, f.stream, "g")
	time.Sleep(100 * time.Millisecond) // the reader is in its next 3 s BLOCK
	start := time.Now()
	require.NoError(t, b.Close())
	require.Less(t, time.Since(start), time.Second)
	cs, err := f.rdb.XInfoConsumers(ctx, f.stream, "g").Result()
	require.NoError(t, err)
	for _, ci := range cs {
		require.NotEqual(t, c.Consumer, ci.Name, "the consumer was left behind")
	}
}
