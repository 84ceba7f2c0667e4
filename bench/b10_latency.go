package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/choicesherpa/eventkit/adapters/postgres"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/jackc/pgx/v5"
)

func init() {
	Register(Case{
		ID:     "B10",
		Name:   "Outbox commit -> published on Redis latency at 500 events/s",
		Target: "p99 <= 20 ms with the NOTIFY wake-up; <= 0.1x the watermill-sql -> forwarder chain (default 1 s poll)",
		Needs:  []string{"postgres", "redis"},
		Run:    runB10,
	})
}

const (
	b10Rate    = 500
	b10Senders = 16
)

// commitTimes records, per sequence number, when the writing transaction's
// COMMIT returned and when the relay's publish to Redis returned; the
// latency is their difference (0 when the relay was faster than the
// writer's COMMIT acknowledgement).
type commitTimes struct {
	committed, published []atomic.Int64
}

func newCommitTimes(n int) *commitTimes {
	return &commitTimes{committed: make([]atomic.Int64, n), published: make([]atomic.Int64, n)}
}

func (c *commitTimes) commit(seq int) { c.committed[seq].Store(time.Now().UnixNano()) }

func (c *commitTimes) publish(seq int) {
	if seq >= 0 && seq < len(c.published) {
		c.published[seq].CompareAndSwap(0, time.Now().UnixNano())
	}
}

func (c *commitTimes) recorder() *LatencyRecorder {
	lat := NewLatencyRecorder(len(c.committed))
	for i := range c.committed {
		cm, pb := c.committed[i].Load(), c.published[i].Load()
		if cm == 0 || pb == 0 {
			continue // lost: the tally reports it
		}
		lat.Add(time.Duration(max(pb-cm, 0)))
	}
	return lat
}

// openLoopTx runs send(i) for i in 0..n-1 at b10Rate per second, each on
// one of b10Senders goroutines so that a slow COMMIT does not delay the
// schedule.
func openLoopTx(ctx context.Context, n int, send func(ctx context.Context, i int) error) error {
	jobs := make(chan int, n)
	errs := make(chan error, b10Senders)
	var wg sync.WaitGroup
	for range b10Senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := send(ctx, i); err != nil {
					errs <- err
					for range jobs {
					}
					return
				}
			}
		}()
	}
	err := OpenLoop(ctx, b10Rate, n, func(ctx context.Context, i int, _ time.Time) error {
		jobs <- i
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

func runB10(ctx context.Context, cfg Config) ([]Result, error) {
	n := cfg.Size(5000, 1000, 100) // 10 s, 2 s at 500/s
	pb, err := newPGBench(ctx, cfg, b10Senders+4)
	if err != nil {
		return nil, err
	}
	defer pb.close()
	defer pb.ob.Close()
	// The writers' Outbox is another instance than the relay's, as in
	// another process: the relay is woken by NOTIFY, not in process.
	wob, err := postgres.NewOutbox(pb.pool, &postgres.OutboxConfig{Schema: pb.schema, NotifyChannel: pb.schema})
	if err != nil {
		return nil, err
	}
	defer wob.Close()
	uow, err := postgres.NewUnitOfWork(pb.pool, wob, nil)
	if err != nil {
		return nil, err
	}

	ours := func(disableWake bool) Contender {
		return Contender{Name: "ours", Run: func(ctx context.Context) (Sample, error) {
			if err := pb.truncate(ctx, "outbox", "business"); err != nil {
				return Sample{}, err
			}
			run, err := newRedisRun(cfg)
			if err != nil {
				return Sample{}, err
			}
			defer run.cleanup()
			bus, err := run.bus(nil)
			if err != nil {
				return Sample{}, err
			}
			defer bus.Close()
			times := newCommitTimes(n)
			tally := NewTally(n, 1)
			pub := &tallyPublisher{next: bus, tallyMarks: tallyMarks{tally: tally, n: int64(n), done: make(chan struct{}), onMark: times.publish}}
			relay, err := outbox.NewRelay(outbox.RelayConfig{Store: pb.ob, Publisher: pub, DisableWake: disableWake, Logger: benchLogger()})
			if err != nil {
				return Sample{}, err
			}
			if err := relay.Start(ctx); err != nil {
				return Sample{}, err
			}
			defer func() { _ = relay.Stop(context.Background()) }()
			time.Sleep(200 * time.Millisecond) // LISTEN established, first poll done
			err = openLoopTx(ctx, n, func(ctx context.Context, i int) error {
				err := uow.Do(ctx, func(ctx context.Context) error {
					tx, _ := postgres.TxFromContext(ctx)
					if _, err := tx.Exec(ctx, `INSERT INTO business (id, body) VALUES ($1, $2)`, i, body256); err != nil {
						return err
					}
					env, err := eventbus.NewEnvelope(ctx, benchEvent{ID: strconv.Itoa(i % 100), Seq: i, Body: body256})
					if err != nil {
						return err
					}
					env.EventID = seqEventID(i)
					return outbox.RaiseEnvelopes(ctx, env)
				})
				if err == nil {
					times.commit(i)
				}
				return err
			})
			if err != nil {
				return Sample{}, err
			}
			if err := wait(ctx, pub.done); err != nil {
				return Sample{}, fmt.Errorf("waiting for the relay: %w (published %d of %d)", err, pub.count.Load(), n)
			}
			return latencySample(times.recorder(), tally), nil
		}}
	}
	var round atomic.Int64
	peer := Contender{Name: "watermill-sql+forwarder", Run: func(ctx context.Context) (Sample, error) {
		run, err := newRedisRun(cfg)
		if err != nil {
			return Sample{}, err
		}
		defer run.cleanup()
		if err := pb.truncate(ctx, "business"); err != nil {
			return Sample{}, err
		}
		topic := fmt.Sprintf("b10_fwd_%d", round.Add(1))
		times := newCommitTimes(n)
		tally := NewTally(n, 1)
		chain, err := newWMChain(ctx, cfg, pb, topic, run.stream(), n, tally, 0) // PollInterval: default (1 s)
		if err != nil {
			return Sample{}, err
		}
		defer chain.close()
		chain.pub.onMark = times.publish
		if err := chain.start(ctx); err != nil {
			return Sample{}, err
		}
		time.Sleep(200 * time.Millisecond)
		dest := run.stream()
		err = openLoopTx(ctx, n, func(ctx context.Context, i int) error {
			err := pgx.BeginFunc(ctx, pb.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `INSERT INTO business (id, body) VALUES ($1, $2)`, i, body256); err != nil {
					return err
				}
				sqlPub, err := wmsql.NewPublisher(wmsql.TxFromPgx(tx), wmsql.PublisherConfig{SchemaAdapter: wmsql.DefaultPostgreSQLSchema{}}, watermill.NopLogger{})
				if err != nil {
					return err
				}
				fwdPub := forwarder.NewPublisher(sqlPub, forwarder.PublisherConfig{ForwarderTopic: topic})
				env, err := eventbus.NewEnvelope(ctx, benchEvent{ID: strconv.Itoa(i % 100), Seq: i, Body: body256})
				if err != nil {
					return err
				}
				return fwdPub.Publish(dest, message.NewMessage(strconv.Itoa(i), message.Payload(env.Payload)))
			})
			if err == nil {
				times.commit(i)
			}
			return err
		})
		if err != nil {
			return Sample{}, err
		}
		if err := wait(ctx, chain.done); err != nil {
			return Sample{}, fmt.Errorf("waiting for the forwarder: %w (published %d of %d)", err, chain.pub.count.Load(), n)
		}
		return latencySample(times.recorder(), tally), nil
	}}
	pollOnly := ours(true)
	pollOnly.Name = "ours-poll-only"
	s, err := Interleave(ctx, cfg, ours(false), peer, pollOnly)
	if err != nil {
		return nil, err
	}
	p99 := Compare("B10", "commit->published p99 at 500/s vs watermill-sql->forwarder (1 s poll)", "ms", s[0], s[1], AtMostX(0.1))
	p99.Notes = append(p99.Notes,
		fmt.Sprintf("open loop %d tx/s on %d sender goroutines, %d events; each tx: business INSERT + one event; latency = relay's Publish to Redis returned - writer's COMMIT returned", b10Rate, b10Senders, n),
		"ours: UnitOfWork (Notify after COMMIT, 1 ms coalescing) on one Outbox instance, relay (defaults: batch 100, 1 s poll, LISTEN) on another -> redisstream.Bus",
		"peer: forwarder.NewPublisher(watermill-sql publisher in the tx) -> watermill-sql Subscriber (defaults, PollInterval 1 s) -> forwarder -> watermill-redisstream")
	abs := Only("B10", "commit->published p99 (ours, NOTIFY wake-up)", "ms", s[0].Median(), AtMostAbs(20))
	p50 := Compare("B10", "commit->published p50 vs watermill-sql->forwarder", "ms", s[0].ExtraSeries("p50_ms"), s[1].ExtraSeries("p50_ms"), Target{})
	p999 := Compare("B10", "commit->published p99.9 vs watermill-sql->forwarder", "ms", s[0].ExtraSeries("p999_ms"), s[1].ExtraSeries("p999_ms"), Target{})
	poll := Compare("B10", "commit->published p99, NOTIFY wake-up vs ours poll-only (1 s)", "ms", s[0], s[2], Target{})
	return []Result{p99, abs, p50, p999, poll}, nil
}

// seqEventID is the event id carrying seq (see seqOfEventID).
func seqEventID(seq int) eventbus.EventID {
	var id eventbus.EventID
	id[6] = 0x40
	id[8] = 0x80
	for i := 0; i < 6; i++ {
		id[15-i] = byte(seq >> (8 * i))
	}
	return id
}
