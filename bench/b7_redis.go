package bench

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"

	"github.com/choicesherpa/eventkit/eventbus"
)

func init() {
	Register(Case{
		ID:     "B7",
		Name:   "Redis end-to-end latency at 5k msg/s (open loop)",
		Target: "p99 <= 2 ms, p99.9 <= 5 ms; p99 <= 0.5x watermill-redisstream",
		Needs:  []string{"redis"},
		Run:    runB7,
	})
}

const (
	b7Rate    = 5000
	b7Senders = 8
)

// openLoopPool runs OpenLoop with the sends handed to b7Senders goroutines,
// so one slow synchronous publish does not delay the schedule (a real open
// loop). Both contenders use it.
func openLoopPool(ctx context.Context, n int, intended []atomic.Int64, send func(i int) error) error {
	type job struct{ i int }
	jobs := make(chan job, n)
	errs := make(chan error, b7Senders)
	var wg sync.WaitGroup
	for range b7Senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if err := send(j.i); err != nil {
					errs <- err
					for range jobs {
					}
					return
				}
			}
		}()
	}
	err := OpenLoop(ctx, b7Rate, n, func(ctx context.Context, i int, at time.Time) error {
		intended[i].Store(at.UnixNano()) // before the send: the handler reads it
		jobs <- job{i}
		return nil
	})
	close(jobs)
	wg.Wait()
	close(errs)
	if err != nil {
		return err
	}
	return <-errs
}

// latencySample turns a run's recorder and tally into a sample whose Value
// is p99 in ms.
func latencySample(lat *LatencyRecorder, tally *Tally) Sample {
	q := lat.Quantiles()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return Sample{Value: ms(q.P99), Check: tally.Check(), Extra: map[string]float64{"p50_ms": ms(q.P50), "p999_ms": ms(q.P999), "max_ms": ms(q.Max)}}
}

func oursLatency(cfg Config, n int) Contender {
	return Contender{Name: "ours", Run: func(ctx context.Context) (Sample, error) {
		run, err := newRedisRun(cfg)
		if err != nil {
			return Sample{}, err
		}
		defer run.cleanup()
		b, err := run.bus(nil)
		if err != nil {
			return Sample{}, err
		}
		defer b.Close()
		intended := make([]atomic.Int64, n)
		lat := NewLatencyRecorder(n)
		tally := NewTally(n, 1)
		var got atomic.Int64
		if _, err := b.Subscribe(ctx, "g", eventbus.HandlerFunc(func(_ context.Context, env eventbus.Envelope) error {
			seq := redisSeqOf(env.EventID)
			if seq >= 0 && seq < n {
				lat.Add(time.Since(time.Unix(0, intended[seq].Load())))
			}
			tally.Mark(0, seq)
			got.Add(1)
			return nil
		})); err != nil {
			return Sample{}, err
		}
		// The same settle time the peer gets before its clock starts: the
		// first read of a new subscription is not steady state.
		time.Sleep(200 * time.Millisecond)
		if err := openLoopPool(ctx, n, intended, func(i int) error {
			env := redisEnvelope()
			redisSeq(&env, i)
			return b.Publish(ctx, env)
		}); err != nil {
			return Sample{}, err
		}
		if err := waitCount(ctx, &got, n); err != nil {
			return Sample{}, err
		}
		return latencySample(lat, tally), nil
	}}
}

func wmLatency(cfg Config, n int) Contender {
	return Contender{Name: "watermill-redisstream", Run: func(ctx context.Context) (Sample, error) {
		run, err := newRedisRun(cfg)
		if err != nil {
			return Sample{}, err
		}
		defer run.cleanup()
		pubClient, err := withOwnClient(cfg)
		if err != nil {
			return Sample{}, err
		}
		p, err := wmPublisher(pubClient)
		if err != nil {
			return Sample{}, err
		}
		defer p.Close()
		subClient, err := withOwnClient(cfg)
		if err != nil {
			return Sample{}, err
		}
		sub, err := wmredis.NewSubscriber(wmredis.SubscriberConfig{
			Client: subClient, Unmarshaller: &wmredis.DefaultMarshallerUnmarshaller{}, Consumer: "c", ConsumerGroup: "g",
		}, watermill.NopLogger{})
		if err != nil {
			return Sample{}, err
		}
		defer sub.Close()
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ch, err := sub.Subscribe(sctx, run.stream())
		if err != nil {
			return Sample{}, err
		}
		intended := make([]atomic.Int64, n)
		lat := NewLatencyRecorder(n)
		tally := NewTally(n, 1)
		var got atomic.Int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			for m := range ch {
				seq := wmSeq(m)
				if seq >= 0 && seq < n {
					lat.Add(time.Since(time.Unix(0, intended[seq].Load())))
				}
				tally.Mark(0, seq)
				m.Ack()
				if got.Add(1) == int64(n) {
					return
				}
			}
		}()
		// Give the subscriber's group a moment to exist before the clock starts.
		time.Sleep(200 * time.Millisecond)
		if err := openLoopPool(ctx, n, intended, func(i int) error {
			return p.Publish(run.stream(), wmMessage(i))
		}); err != nil {
			cancel()
			<-done
			return Sample{}, err
		}
		err = waitCount(ctx, &got, n)
		cancel()
		<-done
		if err != nil {
			return Sample{}, err
		}
		return latencySample(lat, tally), nil
	}}
}

// rawLatency is the physical-limit proxy: go-redis with nothing of a bus.
// The same senders XADD pre-encoded fields one at a time; one goroutine
// reads with XREADGROUP COUNT 100 BLOCK, stamps each entry as it is read and
// acks each read with one XACK. No envelope is decoded, no worker hop.
func rawLatency(cfg Config, n int) Contender {
	return Contender{Name: "raw XADD + XREADGROUP loop", Run: func(ctx context.Context) (Sample, error) {
		run, err := newRedisRun(cfg)
		if err != nil {
			return Sample{}, err
		}
		defer run.cleanup()
		data, err := json.Marshal(redisEnvelope())
		if err != nil {
			return Sample{}, err
		}
		st := run.stream()
		if err := run.rdb.XGroupCreateMkStream(ctx, st, "g", "$").Err(); err != nil {
			return Sample{}, err
		}
		intended := make([]atomic.Int64, n)
		lat := NewLatencyRecorder(n)
		tally := NewTally(n, 1)
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		readErr := make(chan error, 1)
		go func() {
			ids := make([]string, 0, 100)
			for got := 0; got < n; {
				res, err := run.rdb.XReadGroup(rctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{st, ">"}, Count: 100, Block: 100 * time.Millisecond}).Result()
				if err != nil && err != redis.Nil {
					readErr <- err
					return
				}
				for _, xs := range res {
					ids = ids[:0]
					for _, m := range xs.Messages {
						seq := -1
						if s, ok := m.Values["id"].(string); ok {
							if v, err := strconv.Atoi(s); err == nil && v >= 0 && v < n {
								seq = v
								lat.Add(time.Since(time.Unix(0, intended[seq].Load())))
							}
						}
						tally.Mark(0, seq)
						ids = append(ids, m.ID)
						got++
					}
					if err := run.rdb.XAck(rctx, st, "g", ids...).Err(); err != nil {
						readErr <- err
						return
					}
				}
			}
			readErr <- nil
		}()
		time.Sleep(200 * time.Millisecond) // the settle time the others get
		if err := openLoopPool(ctx, n, intended, func(i int) error {
			return run.rdb.XAdd(ctx, &redis.XAddArgs{Stream: st, Values: []any{"type", redisEventType, "id", strconv.Itoa(i), "data", data}}).Err()
		}); err != nil {
			return Sample{}, err
		}
		select {
		case err := <-readErr:
			if err != nil {
				return Sample{}, err
			}
		case <-ctx.Done():
			return Sample{}, ctx.Err()
		}
		return latencySample(lat, tally), nil
	}}
}

func runB7(ctx context.Context, cfg Config) ([]Result, error) {
	n := cfg.Size(50_000, 10_000, 200)
	s, err := Interleave(ctx, cfg, oursLatency(cfg, n), wmLatency(cfg, n), rawLatency(cfg, n))
	if err != nil {
		return nil, err
	}
	p99 := Compare("B7", "Redis pub->handler p99 at 5k/s vs watermill-redisstream", "ms", s[0], s[1], AtMostX(0.5))
	p99.Notes = append(p99.Notes, "open loop at 5000 msg/s paced by a timerfd (intended-time stamps from the schedule itself; sends handed to 8 publisher goroutines so a slow synchronous publish does not shift the schedule); watermill: defaults + ConsumerGroup/Consumer, Ack per message")
	abs99 := Only("B7", "Redis pub->handler p99 (ours)", "ms", s[0].Median(), AtMostAbs(2))
	abs999 := Only("B7", "Redis pub->handler p99.9 (ours)", "ms", s[0].MedianExtra("p999_ms"), AtMostAbs(5))
	p999 := Compare("B7", "Redis pub->handler p99.9 vs watermill-redisstream", "ms", s[0].ExtraSeries("p999_ms"), s[1].ExtraSeries("p999_ms"), Target{})
	raw99 := Compare("B7", "Redis pub->handler p99 vs raw XADD + XREADGROUP loop", "ms", s[0], s[2], Target{})
	raw99.Notes = append(raw99.Notes, "raw: the physical-limit proxy for the absolute rows, go-redis with the same senders and a one-goroutine XREADGROUP COUNT 100 BLOCK + XACK loop, no decoding")
	raw999 := Compare("B7", "Redis pub->handler p99.9 vs raw XADD + XREADGROUP loop", "ms", s[0].ExtraSeries("p999_ms"), s[2].ExtraSeries("p999_ms"), Target{})
	return []Result{p99, abs99, abs999, p999, raw99, raw999}, nil
}
