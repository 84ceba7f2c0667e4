package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"

	"github.com/choicesherpa/eventkit/adapters/redisstream"
	"github.com/choicesherpa/eventkit/eventbus"
)

func init() {
	Register(Case{
		ID:     "B6",
		Name:   "Redis consume: pre-loaded stream, consumer group, ack",
		Target: ">= 10x watermill-redisstream; >= 50% of raw XREADGROUP COUNT 100 + batched XACK",
		Needs:  []string{"redis"},
		Run:    runB6,
	})
}

// preloadOurs appends n entries in our format (through our publisher, in
// batches of 1000; untimed).
func preloadOurs(ctx context.Context, run *redisRun, n int) error {
	b, err := run.bus(nil)
	if err != nil {
		return err
	}
	defer b.Close()
	envs := make([]eventbus.Envelope, 0, 1000)
	for i := 0; i < n; i++ {
		env := redisEnvelope()
		redisSeq(&env, i)
		envs = append(envs, env)
		if len(envs) == cap(envs) || i == n-1 {
			if err := b.Publish(ctx, envs...); err != nil {
				return err
			}
			envs = envs[:0]
		}
	}
	return nil
}

func waitPendingZero(ctx context.Context, rdb redis.UniversalClient, stream, group string) error {
	for {
		p, err := rdb.XPending(ctx, stream, group).Result()
		if err != nil {
			return err
		}
		if p.Count == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: %d still pending: %w", p.Count, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

func oursConsumeSetup(cfg Config) SetupFunc {
	return func(ctx context.Context, n int) (*Trial, error) {
		run, err := newRedisRun(cfg)
		if err != nil {
			return nil, err
		}
		if err := preloadOurs(ctx, run, n); err != nil {
			run.cleanup()
			return nil, err
		}
		b, err := run.bus(nil)
		if err != nil {
			run.cleanup()
			return nil, err
		}
		tally := NewTally(n, 1)
		var got atomic.Int64
		return &Trial{
			Tally: tally,
			Run: func(ctx context.Context) error {
				_, err := b.Subscribe(ctx, "g", eventbus.HandlerFunc(func(_ context.Context, env eventbus.Envelope) error {
					tally.Mark(0, redisSeqOf(env.EventID))
					got.Add(1)
					return nil
				}))
				if err != nil {
					return err
				}
				if err := waitCount(ctx, &got, n); err != nil {
					return err
				}
				return waitPendingZero(ctx, run.rdb, run.stream(), "g")
			},
			Close: func() { _ = b.Close(); run.cleanup() },
		}, nil
	}
}

func wmConsumeSetup(cfg Config) SetupFunc {
	return func(ctx context.Context, n int) (*Trial, error) {
		run, err := newRedisRun(cfg)
		if err != nil {
			return nil, err
		}
		pubClient, err := withOwnClient(cfg)
		if err != nil {
			run.cleanup()
			return nil, err
		}
		p, err := wmPublisher(pubClient)
		if err != nil {
			run.cleanup()
			return nil, err
		}
		preload := NewTally(n, 1)
		if err := concurrentPublish(ctx, n, 16, preload, func(_ context.Context, i int) error {
			return p.Publish(run.stream(), wmMessage(i))
		}); err != nil {
			_ = p.Close()
			run.cleanup()
			return nil, err
		}
		_ = p.Close()
		subClient, err := withOwnClient(cfg)
		if err != nil {
			run.cleanup()
			return nil, err
		}
		sub, err := wmredis.NewSubscriber(wmredis.SubscriberConfig{
			Client: subClient, Unmarshaller: &wmredis.DefaultMarshallerUnmarshaller{}, Consumer: "c", ConsumerGroup: "g",
		}, watermill.NopLogger{})
		if err != nil {
			_ = subClient.Close()
			run.cleanup()
			return nil, err
		}
		tally := NewTally(n, 1)
		sctx, cancel := context.WithCancel(context.Background())
		return &Trial{
			Tally: tally,
			Run: func(ctx context.Context) error {
				ch, err := sub.Subscribe(sctx, run.stream())
				if err != nil {
					return err
				}
				for got := 0; got < n; {
					select {
					case m, ok := <-ch:
						if !ok {
							return errNotAll
						}
						tally.Mark(0, wmSeq(m))
						m.Ack()
						got++
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return waitPendingZero(ctx, run.rdb, run.stream(), "g")
			},
			Close: func() { cancel(); _ = sub.Close(); run.cleanup() },
		}, nil
	}
}

func rawConsumeSetup(cfg Config) SetupFunc {
	return func(ctx context.Context, n int) (*Trial, error) {
		run, err := newRedisRun(cfg)
		if err != nil {
			return nil, err
		}
		if err := preloadOurs(ctx, run, n); err != nil {
			run.cleanup()
			return nil, err
		}
		tally := NewTally(n, 1)
		return &Trial{
			Tally: tally,
			Run: func(ctx context.Context) error {
				st := run.stream()
				if err := run.rdb.XGroupCreate(ctx, st, "g", "0").Err(); err != nil {
					return err
				}
				ids := make([]string, 0, 100)
				for got := 0; got < n; {
					res, err := run.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{st, ">"}, Count: 100, Block: 100 * time.Millisecond}).Result()
					if err != nil && err != redis.Nil {
						return err
					}
					for _, xs := range res {
						ids = ids[:0]
						for _, m := range xs.Messages {
							// the raw loop reads the sequence without decoding the envelope
							var env struct {
								ID eventbus.EventID `json:"event_id"`
							}
							if s, ok := m.Values[redisstream.FieldID].(string); ok {
								if id, err := eventbus.ParseEventID(s); err == nil {
									env.ID = id
								}
							}
							tally.Mark(0, redisSeqOf(env.ID))
							ids = append(ids, m.ID)
							got++
						}
						if len(ids) > 0 {
							if err := run.rdb.XAck(ctx, st, "g", ids...).Err(); err != nil {
								return err
							}
						}
					}
				}
				return nil
			},
			Close: run.cleanup,
		}, nil
	}
}

func runB6(ctx context.Context, cfg Config) ([]Result, error) {
	n := cfg.Size(100_000, 20_000, 500)
	nPeer := cfg.Size(20_000, 4_000, 200)
	s, err := Interleave(ctx, cfg,
		Measure("ours", n, MsgPerSec, oursConsumeSetup(cfg)),
		Measure("watermill-redisstream", nPeer, MsgPerSec, wmConsumeSetup(cfg)),
		Measure("raw XREADGROUP x100 + XACK", n, MsgPerSec, rawConsumeSetup(cfg)),
	)
	if err != nil {
		return nil, err
	}
	r1 := Compare("B6", "Redis consume+ack vs watermill-redisstream", "msg/s", s[0], s[1], AtLeastX(10))
	r1.Notes = append(r1.Notes, "watermill-redisstream: defaults + ConsumerGroup/Consumer (its own BenchmarkSubscriber's knobs), msg.Ack() per message; "+
		"ours: defaults (COUNT 100, 16 workers, batched XACK); timed until every message was handled and XPENDING is 0")
	r2 := Compare("B6", "Redis consume+ack vs raw XREADGROUP COUNT 100 + XACK", "msg/s", s[0], s[2], AtLeastX(0.5))
	r2.Notes = append(r2.Notes, "raw: one goroutine, no envelope decoding (reads the id field only), one XACK per batch")
	return []Result{r1, r2}, nil
}

var _ = json.Marshal
var _ = strconv.Itoa
