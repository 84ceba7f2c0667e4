package redisstream

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/internal/testinfra"
)

// benchBus returns a bus on a fresh stream, a context that bounds the run,
// and what to call at its end (a benchmark function runs once per b.N).
func benchBus(b *testing.B) (*Bus, context.Context, func()) {
	rdb, prefix := testinfra.Redis(b)
	bus, err := New(rdb, fastConfig(prefix+"events"))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	return bus, ctx, func() { cancel(); _ = bus.Close() }
}

// benchPublish publishes b.N envelopes from workers goroutines, one per
// call, and reports the average number of entries per pipeline (the
// coalescing the publish path achieved).
func benchPublish(b *testing.B, workers int) {
	bus, ctx, done := benchBus(b)
	defer done()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := mkEnv(b, 0, "k")
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				binary.BigEndian.PutUint64(env.EventID[:8], uint64(i))
				if err := bus.Publish(ctx, env); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	st := &bus.counters
	if p := st.pipelines.Load(); p > 0 {
		b.ReportMetric(float64(st.published.Load())/float64(p), "entries/pipeline")
	}
}

func BenchmarkPublish1(b *testing.B)  { benchPublish(b, 1) }
func BenchmarkPublish16(b *testing.B) { benchPublish(b, 16) }

// BenchmarkConsume drains b.N pre-loaded entries through one consumer
// group (read, decode, handle, ack) and reports allocations per entry.
func BenchmarkConsume(b *testing.B) {
	bus, ctx, end := benchBus(b)
	defer end()
	env := mkEnv(b, 0, "k")
	batch := make([]eventbus.Envelope, 0, 500)
	for i := 0; i < b.N; {
		batch = batch[:0]
		for ; i < b.N && len(batch) < cap(batch); i++ {
			binary.BigEndian.PutUint64(env.EventID[:8], uint64(i))
			batch = append(batch, env)
		}
		if err := bus.Publish(ctx, batch...); err != nil {
			b.Fatal(err)
		}
	}
	var handled atomic.Int64
	done := make(chan struct{})
	b.ReportAllocs()
	b.ResetTimer()
	sub, err := bus.Subscribe(ctx, "bench", eventbus.HandlerFunc(func(context.Context, eventbus.Envelope) error {
		if handled.Add(1) == int64(b.N) {
			close(done)
		}
		return nil
	}))
	if err != nil {
		b.Fatal(err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		b.Fatal("timed out")
	}
	if err := sub.Close(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
}
