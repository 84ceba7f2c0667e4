package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/choicesherpa/eventkit/adapters/redisstream"
	"github.com/choicesherpa/eventkit/eventbus"
)

// The Redis shapes shared by B4-B7 and B14-redis: ours (redisstream.Bus),
// watermill-redisstream with its defaults, and raw go-redis loops. Every
// contender carries the same 256 B payload; the sequence number travels in
// the event id (ours) or the message UUID / metadata (watermill).

const redisEventType = "bench.redis.published.v1"

func init() {
	Register(Case{
		ID:     "B4",
		Name:   "Redis publish, 16 concurrent publishers, 256 B",
		Target: ">= 3x watermill-redisstream; >= 50% of raw pipelined XADD (batches of 100)",
		Needs:  []string{"redis"},
		Run:    runB4,
	})
}

// redisRun is one run's namespace on the shared Redis: a client and a
// unique key prefix whose keys are deleted by cleanup.
type redisRun struct {
	rdb    *redis.Client
	prefix string
}

func newRedisRun(cfg Config) (*redisRun, error) {
	opts, err := redis.ParseURL(cfg.Env.RedisURL)
	if err != nil {
		return nil, err
	}
	opts.PoolSize = 64
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &redisRun{rdb: redis.NewClient(opts), prefix: "bench:" + hex.EncodeToString(b[:]) + ":"}, nil
}

func (r *redisRun) stream() string { return r.prefix + "events" }

// cleanup deletes the run's keys and closes the client. The bus wraps
// stream names in a cluster hash tag ("{bench:...}"), so match the prefix
// anywhere in the key, not only at its start.
func (r *redisRun) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	iter := r.rdb.Scan(ctx, 0, "*"+r.prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if len(keys) > 0 {
		_ = r.rdb.Del(ctx, keys...).Err()
	}
	_ = r.rdb.Close()
}

func benchLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newRedisBus returns our bus on the run's stream.
func (r *redisRun) bus(tune func(*redisstream.Config)) (*redisstream.Bus, error) {
	c := &redisstream.Config{Stream: r.stream(), Consumer: "bench-" + r.prefix, Logger: benchLogger(), Block: 100 * time.Millisecond}
	if tune != nil {
		tune(c)
	}
	return redisstream.New(r.rdb, c)
}

// redisEnvelope is the envelope ours publishes; redisSeq rewrites its id.
func redisEnvelope() eventbus.Envelope {
	return eventbus.Envelope{
		EventID:       eventbus.NewEventID(),
		EventType:     redisEventType,
		SchemaVersion: 1,
		AggregateID:   "agg-1",
		AggregateType: "bench",
		OccurredAt:    time.Now().UTC().Truncate(time.Microsecond),
		Payload:       payload256,
	}
}

func redisSeq(env *eventbus.Envelope, seq int) {
	binary.BigEndian.PutUint64(env.EventID[:8], uint64(seq))
	env.EventID[8] = 0x80 // keep the variant bits valid
	env.EventID[15] |= 1
}

func redisSeqOf(id eventbus.EventID) int { return int(binary.BigEndian.Uint64(id[:8])) }

// watermill messages carry the sequence in their UUID.
func wmMessage(seq int) *message.Message {
	return message.NewMessage(strconv.Itoa(seq), message.Payload(payload256))
}

func wmSeq(m *message.Message) int {
	n, err := strconv.Atoi(m.UUID)
	if err != nil {
		return -1
	}
	return n
}

func wmPublisher(rdb redis.UniversalClient) (*wmredis.Publisher, error) {
	return wmredis.NewPublisher(wmredis.PublisherConfig{Client: rdb}, watermill.NopLogger{})
}

// closeWM closes a watermill publisher or subscriber without letting it
// close our shared client (it would: Close calls client.Close).
func withOwnClient(cfg Config) (*redis.Client, error) {
	opts, err := redis.ParseURL(cfg.Env.RedisURL)
	if err != nil {
		return nil, err
	}
	opts.PoolSize = 64
	return redis.NewClient(opts), nil
}

// concurrentPublish runs n publishes from workers goroutines, each calling
// pub(i) for its share of 0..n-1, and marks the tally (when not nil) for
// each success.
func concurrentPublish(ctx context.Context, n, workers int, tally *Tally, pub func(ctx context.Context, i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := pub(ctx, i); err != nil {
					errs <- err
					return
				}
				if tally != nil {
					tally.Mark(0, i)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// checkLen marks an unexpected delivery when the stream does not hold n
// entries (publishes that returned success must all be there).
func checkLen(rdb redis.UniversalClient, stream string, n int, tally *Tally) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := rdb.XLen(ctx, stream).Result()
	if err != nil {
		return err
	}
	if int(l) != n {
		tally.Mark(0, -1)
		return nil
	}
	return nil
}

// publishSetup: workers goroutines publish n messages, one per call.
func oursPublishSetup(cfg Config, workers int) SetupFunc {
	return func(ctx context.Context, n int) (*Trial, error) {
		run, err := newRedisRun(cfg)
		if err != nil {
			return nil, err
		}
		b, err := run.bus(nil)
		if err != nil {
			run.cleanup()
			return nil, err
		}
		tally := NewTally(n, 1)
		envs := make([]eventbus.Envelope, workers)
		for i := range envs {
			envs[i] = redisEnvelope()
		}
		var slot atomic.Int64
		return &Trial{
			Tally: tally,
			Run: func(ctx context.Context) error {
				var wg sync.WaitGroup
				var next atomic.Int64
				errs := make(chan error, workers)
				for range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						env := envs[slot.Add(1)-1]
						for {
							i := int(next.Add(1)) - 1
							if i >= n || ctx.Err() != nil {
								return
							}
							redisSeq(&env, i)
							if err := b.Publish(ctx, env); err != nil {
								errs <- err
								return
							}
							tally.Mark(0, i)
						}
					}()
				}
				wg.Wait()
				close(errs)
				if err := <-errs; err != nil {
					return err
				}
				return checkLen(run.rdb, run.stream(), n, tally)
			},
			Close: func() { _ = b.Close(); run.cleanup() },
		}, nil
	}
}

func wmPublishSetup(cfg Config, workers int) SetupFunc {
	return func(ctx context.Context, n int) (*Trial, error) {
		run, err := newRedisRun(cfg)
		if err != nil {
			return nil, err
		}
		own, err := withOwnClient(cfg) // watermill's Close closes its client
		if err != nil {
			run.cleanup()
			return nil, err
		}
		p, err := wmPublisher(own)
		if err != nil {
			_ = own.Close()
			run.cleanup()
			return nil, err
		}
		tally := NewTally(n, 1)
		return &Trial{
			Tally: tally,
			Run: func(ctx context.Context) error {
				if err := concurrentPublish(ctx, n, workers, tally, func(_ context.Context, i int) error {
					return p.Publish(run.stream(), wmMessage(i))
				}); err != nil {
					return err
				}
				return checkLen(run.rdb, run.stream(), n, tally)
			},
			Close: func() { _ = p.Close(); run.cleanup() },
		}, nil
	}
}

// rawPublishSetup: one goroutine, XADD in pipelines of batch (1 = no
// pipeline), the physical-limit proxy.
func rawPublishSetup(cfg Config, batch int) SetupFunc { return rawConcurrentSetup(cfg, 1, batch) }

// rawConcurrentSetup: workers goroutines, each sending XADDs in pipelines
// of batch and waiting for the replies before its next pipeline: at most
// workers*batch entries in flight, the shape of that many synchronous
// publishers with no client overhead.
func rawConcurrentSetup(cfg Config, workers, batch int) SetupFunc {
	return func(ctx context.Context, n int) (*Trial, error) {
		run, err := newRedisRun(cfg)
		if err != nil {
			return nil, err
		}
		tally := NewTally(n, 1)
		env := redisEnvelope()
		data, err := json.Marshal(env) // the same bytes ours writes, encoded once
		if err != nil {
			run.cleanup()
			return nil, err
		}
		st := run.stream()
		xadd := func(i int) *redis.XAddArgs {
			return &redis.XAddArgs{Stream: st, Values: []any{"type", redisEventType, "id", strconv.Itoa(i), "data", data}}
		}
		pipeline := func(ctx context.Context, i int) error {
			end := min(i+batch, n)
			if batch == 1 {
				if err := run.rdb.XAdd(ctx, xadd(i)).Err(); err != nil {
					return err
				}
			} else {
				pipe := run.rdb.Pipeline()
				for j := i; j < end; j++ {
					pipe.XAdd(ctx, xadd(j))
				}
				if _, err := pipe.Exec(ctx); err != nil {
					return err
				}
			}
			for j := i; j < end; j++ {
				tally.Mark(0, j)
			}
			return nil
		}
		return &Trial{
			Tally: tally,
			Run: func(ctx context.Context) error {
				if err := concurrentPublish(ctx, (n+batch-1)/batch, workers, nil, func(ctx context.Context, b int) error {
					return pipeline(ctx, b*batch)
				}); err != nil {
					return err
				}
				return checkLen(run.rdb, st, n, tally)
			},
			Close: run.cleanup,
		}, nil
	}
}

// autoPipelineSetup: 16 goroutines, each a synchronous XADD through
// go-redis's own coalescer for concurrent callers (AutoPipeliner, blocking
// defaults), the same shape as 16 synchronous publishers: what go-redis
// itself does with the hand-off ours has to make.
func autoPipelineSetup(cfg Config, publishers int) SetupFunc {
	return func(ctx context.Context, n int) (*Trial, error) {
		run, err := newRedisRun(cfg)
		if err != nil {
			return nil, err
		}
		ap, err := run.rdb.AutoPipeline()
		if err != nil {
			run.cleanup()
			return nil, err
		}
		tally := NewTally(n, 1)
		data, err := json.Marshal(redisEnvelope())
		if err != nil {
			run.cleanup()
			return nil, err
		}
		st := run.stream()
		return &Trial{
			Tally: tally,
			Run: func(ctx context.Context) error {
				if err := concurrentPublish(ctx, n, publishers, tally, func(ctx context.Context, i int) error {
					return ap.XAdd(ctx, &redis.XAddArgs{Stream: st, Values: []any{"type", redisEventType, "id", strconv.Itoa(i), "data", data}}).Err()
				}); err != nil {
					return err
				}
				return checkLen(run.rdb, st, n, tally)
			},
			Close: func() { _ = ap.Close(); run.cleanup() },
		}, nil
	}
}

func runB4(ctx context.Context, cfg Config) ([]Result, error) {
	n := cfg.Size(100_000, 20_000, 500)
	nPeer := cfg.Size(30_000, 5_000, 200)
	s, err := Interleave(ctx, cfg,
		Measure("ours", n, MsgPerSec, oursPublishSetup(cfg, 16)),
		Measure("watermill-redisstream", nPeer, MsgPerSec, wmPublishSetup(cfg, 16)),
		Measure("raw pipelined x100", n, MsgPerSec, rawPublishSetup(cfg, 100)),
		Measure("raw 2 pipelines x8", n, MsgPerSec, rawConcurrentSetup(cfg, 2, 8)),
		Measure("go-redis AutoPipeliner 16 pub", n, MsgPerSec, autoPipelineSetup(cfg, 16)),
	)
	if err != nil {
		return nil, err
	}
	r1 := Compare("B4", "Redis publish 16 pub vs watermill-redisstream", "msg/s", s[0], s[1], AtLeastX(3))
	r1.Notes = append(r1.Notes, "watermill-redisstream: defaults (PublisherConfig{Client}), 16 goroutines, one Publish per message")
	r2 := Compare("B4", "Redis publish 16 pub vs raw pipelined XADD x100", "msg/s", s[0], s[2], AtLeastX(0.5))
	r2.Notes = append(r2.Notes, "raw: one goroutine, go-redis Pipeline() of 100 XADDs per round trip, same fields and payload")
	// The ceiling for 16 synchronous publishers: at most 16 entries in
	// flight. Of the raw shapes (1x16, 2x8, 4x4, 16x1 goroutines x
	// pipeline) 2x8 was the fastest here, 4x4 level with it.
	r3 := Compare("B4", "Redis publish 16 pub vs raw 2 pipelines x8", "msg/s", s[0], s[3], Target{})
	r3.Notes = append(r3.Notes, "raw 2 pipelines x8: two goroutines, each a go-redis Pipeline() of 8 XADDs at a time: 16 in flight like 16 synchronous publishers, with no hand-off")
	r4 := Compare("B4", "raw 2 pipelines x8 vs watermill-redisstream", "msg/s", s[3], s[1], Target{})
	r5 := Compare("B4", "Redis publish 16 pub vs go-redis AutoPipeliner 16 pub", "msg/s", s[0], s[4], Target{})
	r5.Notes = append(r5.Notes, "go-redis AutoPipeliner: 16 goroutines, one synchronous XAdd each through client.AutoPipeline() (blocking defaults): go-redis's own coalescing of concurrent callers, with the same hand-offs as 16 synchronous publishers")
	return []Result{r1, r2, r3, r4, r5}, nil
}

var errNotAll = errors.New("bench: not every message arrived")

// waitTally waits until tally holds n deliveries for subscriber 0 or ctx ends.
func waitCount(ctx context.Context, got *atomic.Int64, n int) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for got.Load() < int64(n) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %d of %d: %w", errNotAll, got.Load(), n, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}
