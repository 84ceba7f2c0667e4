package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/choicesherpa/eventkit/adapters/postgres"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/idempotency"
	"github.com/jackc/pgx/v5"
)

func init() {
	Register(Case{
		ID:     "B11",
		Name:   "Idempotent handler overhead (processed_events marker in the handler tx)",
		Target: ">= 0.8x the same handler transaction without the marker; 0 duplicate effects over 10k redeliveries",
		Needs:  []string{"postgres"},
		Run:    runB11,
	})
}

func runB11(ctx context.Context, cfg Config) ([]Result, error) {
	const conns = 16
	n := cfg.Size(4000, 1000, 40)
	redeliveries := cfg.Size(10000, 2000, 40)
	pb, err := newPGBench(ctx, cfg, conns)
	if err != nil {
		return nil, err
	}
	defer pb.close()
	store, err := postgres.NewProcessedEventStore(pb.pool, &postgres.ProcessedEventStoreConfig{Schema: pb.schema})
	if err != nil {
		return nil, err
	}
	envs := make([]eventbus.Envelope, max(n, redeliveries))
	for i := range envs {
		envs[i], err = eventbus.NewEnvelope(ctx, benchEvent{ID: fmt.Sprint(i), Seq: i, Body: body256})
		if err != nil {
			return nil, err
		}
	}
	effect := func(ctx context.Context, tx pgx.Tx, env eventbus.Envelope) error {
		_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, n) VALUES ($1, 1)`, env.EventID.UUID())
		return err
	}
	wrapped := idempotency.Wrap(postgres.TxHandler(effect), store, "b11")
	run := func(idem bool) SetupFunc {
		return func(ctx context.Context, n int) (*Trial, error) {
			if err := pb.truncate(ctx, "effects", "processed_events"); err != nil {
				return nil, err
			}
			tally := NewTally(n, 1)
			return &Trial{Tally: tally, Run: func(ctx context.Context) error {
				return parallel(ctx, n, conns, func(ctx context.Context, i int) error {
					var err error
					if idem {
						err = wrapped.Handle(ctx, envs[i])
					} else {
						err = pgx.BeginFunc(ctx, pb.pool, func(tx pgx.Tx) error { return effect(ctx, tx, envs[i]) })
					}
					if err == nil {
						tally.Mark(0, i)
					}
					return err
				})
			}}, nil
		}
	}
	contenders := []Contender{
		Measure("ours", n, MsgPerSec, run(true)),
		Measure("baseline", n, MsgPerSec, run(false)),
	}
	// Physical proxy: the same statements from pgbench's C client.
	d := time.Duration(cfg.Size(3, 1, 1)) * time.Second
	effectsTbl := pgx.Identifier{pb.schema, "effects"}.Sanitize()
	markers := pgx.Identifier{pb.schema, "processed_events"}.Sanitize()
	effectSQL := "INSERT INTO " + effectsTbl + " (event_id, n) VALUES (gen_random_uuid(), 1);\n"
	// BEGIN and the marker INSERT as one compound query, as the store sends them.
	markerSQL := "INSERT INTO " + markers + " (handler_name, event_id, processed_at) VALUES ('b11', gen_random_uuid(), now());\n"
	truncate := func(ctx context.Context) error { return pb.truncate(ctx, "effects", "processed_events") }
	proxyBase := pgbenchContender(cfg, "pgbench-effect", "BEGIN;\n"+effectSQL+"COMMIT;\n", conns, d, truncate)
	proxyIdem := pgbenchContender(cfg, "pgbench-marker+effect", "BEGIN \\; "+markerSQL+effectSQL+"COMMIT;\n", conns, d, truncate)
	if proxyBase != nil && proxyIdem != nil {
		contenders = append(contenders, *proxyBase, *proxyIdem)
	}
	s, err := Interleave(ctx, cfg, contenders...)
	if err != nil {
		return nil, err
	}
	r1 := Compare("B11", "idempotent handler tx vs the same tx without marker", "msg/s", s[0], s[1], AtLeastX(0.8))
	r1.Notes = append(r1.Notes, fmt.Sprintf("%d concurrent handlers; ours: BEGIN + INSERT marker (one simple query), effect INSERT, COMMIT (no savepoint: there is no outer transaction); baseline: BEGIN, effect INSERT, COMMIT", conns))
	var rows []Result
	rows = append(rows, r1)
	if len(s) == 4 {
		r3 := Compare("B11", "pgbench proxy: marker + effect INSERT vs effect INSERT only", "tx/s", s[3], s[2], Target{})
		r3.Notes = append(r3.Notes, fmt.Sprintf("pgbench proxy: the same statements and round trips per transaction (BEGIN and the marker as one compound query) from pgbench -n -c %d -j 2 -T t; its ratio is the ceiling of ours vs baseline on this machine", conns))
		rows = append(rows, r3)
	}

	// Redeliveries: every event delivered twice, concurrently; effects must
	// equal distinct events.
	if err := pb.truncate(ctx, "effects", "processed_events"); err != nil {
		return nil, err
	}
	distinct := redeliveries / 2
	if err := parallel(ctx, redeliveries, conns, func(ctx context.Context, i int) error {
		return wrapped.Handle(ctx, envs[i%distinct])
	}); err != nil {
		return nil, err
	}
	var effects, dups int
	if err := pb.pool.QueryRow(ctx, `SELECT count(*), count(*) - count(DISTINCT event_id) FROM effects`).Scan(&effects, &dups); err != nil {
		return nil, err
	}
	r2 := Only("B11", fmt.Sprintf("duplicate effects over %d redeliveries", redeliveries), "dups", float64(dups), AtMostAbs(0))
	if effects != distinct || dups != 0 {
		r2.Failures = append(r2.Failures, fmt.Sprintf("effects %d for %d distinct events (%d duplicates)", effects, distinct, dups))
	}
	return append(rows, r2), nil
}

// parallel runs fn(i) for i in [0,n) on conns goroutines and returns the
// first error.
func parallel(ctx context.Context, n, conns int, fn func(ctx context.Context, i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}
