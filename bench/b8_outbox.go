package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/choicesherpa/eventkit/adapters/postgres"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func init() {
	Register(Case{
		ID:     "B8",
		Name:   "Outbox write overhead in the business transaction",
		Target: ">= 0.85x the same transaction without the outbox row; >= 1.0x watermill-sql/v4 publisher in the same transaction",
		Needs:  []string{"postgres"},
		Run:    runB8,
	})
}

// pgBench is a schema of its own with the outbox migrated, a business
// table and watermill-sql's table, dropped by close.
type pgBench struct {
	pool   *pgxpool.Pool
	schema string
	ob     *postgres.Outbox
}

func newPGBench(ctx context.Context, cfg Config, conns int32) (*pgBench, error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	schema := "bench_" + hex.EncodeToString(b[:])
	url := cfg.Env.PostgresURL
	if url == "" {
		url = DefaultPostgresURL
	}
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	pc.ConnConfig.RuntimeParams["search_path"] = schema
	pc.MaxConns = conns + 2
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, err
	}
	pb := &pgBench{pool: pool, schema: schema}
	if err := postgres.Migrate(ctx, pool, &postgres.MigrateConfig{Schema: schema}); err != nil {
		pb.close()
		return nil, err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE business (id bigint PRIMARY KEY, body text NOT NULL); CREATE TABLE effects (event_id uuid NOT NULL, n int NOT NULL)`); err != nil {
		pb.close()
		return nil, err
	}
	pb.ob, err = postgres.NewOutbox(pool, &postgres.OutboxConfig{Schema: schema, NotifyChannel: schema})
	if err != nil {
		pb.close()
		return nil, err
	}
	return pb, nil
}

func (pb *pgBench) close() {
	_, _ = pb.pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{pb.schema}.Sanitize()+" CASCADE")
	pb.pool.Close()
}

func (pb *pgBench) truncate(ctx context.Context, tables ...string) error {
	for _, t := range tables {
		if _, err := pb.pool.Exec(ctx, "TRUNCATE "+t); err != nil {
			return err
		}
	}
	return nil
}

type benchEvent struct {
	ID   string `json:"id"`
	Seq  int    `json:"seq"`
	Body string `json:"body"`
}

func (benchEvent) EventType() string     { return "bench.happened.v1" }
func (e benchEvent) AggregateID() string { return e.ID }
func (benchEvent) AggregateType() string { return "bench" }

// body256 is a payload of about 256 bytes.
var body256 = func() string {
	b := make([]byte, 100)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

// txLoop runs n transactions on conns goroutines; each runs fn(tx, i) and
// commits, then calls after (if not nil), and is marked in the tally once
// committed.
func txLoop(ctx context.Context, pool *pgxpool.Pool, n, conns int, tally *Tally, fn func(ctx context.Context, tx pgx.Tx, i int) error, after func()) error {
	return parallel(ctx, n, conns, func(ctx context.Context, i int) error {
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return fn(ctx, tx, i) }); err != nil {
			return err
		}
		if after != nil {
			after()
		}
		tally.Mark(0, i)
		return nil
	})
}

func runB8(ctx context.Context, cfg Config) ([]Result, error) {
	var out []Result
	for _, conns := range []int{16, 1} {
		n := cfg.Size(4000, 1000, 40)
		if conns == 1 {
			n = cfg.Size(600, 200, 20)
		}
		pb, err := newPGBench(ctx, cfg, int32(conns))
		if err != nil {
			return nil, err
		}
		// watermill-sql's table, created once outside the measured runs.
		wmTopic := "bench_events"
		initPub, err := wmsql.NewPublisher(wmsql.BeginnerFromPgx(pb.pool), wmsql.PublisherConfig{
			SchemaAdapter: wmsql.DefaultPostgreSQLSchema{}, AutoInitializeSchema: true}, watermill.NopLogger{})
		if err != nil {
			pb.close()
			return nil, err
		}
		if err := initPub.Publish(wmTopic, message.NewMessage(watermill.NewUUID(), []byte(`{}`))); err != nil {
			pb.close()
			return nil, fmt.Errorf("watermill-sql schema: %w", err)
		}
		wmTable := pgx.Identifier{"watermill_" + wmTopic}.Sanitize()

		business := func(ctx context.Context, tx pgx.Tx, i int) error {
			_, err := tx.Exec(ctx, `INSERT INTO business (id, body) VALUES ($1, $2)`, i, body256)
			return err
		}
		setup := func(tables []string, fn func(ctx context.Context, tx pgx.Tx, i int) error, after func()) SetupFunc {
			return func(ctx context.Context, n int) (*Trial, error) {
				if err := pb.truncate(ctx, tables...); err != nil {
					return nil, err
				}
				tally := NewTally(n, 1)
				return &Trial{Tally: tally, Run: func(ctx context.Context) error {
					return txLoop(ctx, pb.pool, n, conns, tally, fn, after)
				}}, nil
			}
		}
		write := func(ob *postgres.Outbox) func(ctx context.Context, tx pgx.Tx, i int) error {
			return func(ctx context.Context, tx pgx.Tx, i int) error {
				if err := business(ctx, tx, i); err != nil {
					return err
				}
				env, err := eventbus.NewEnvelope(ctx, benchEvent{ID: strconv.Itoa(i), Seq: i, Body: body256})
				if err != nil {
					return err
				}
				return ob.Write(ctx, tx, env)
			}
		}
		uow, err := postgres.NewUnitOfWork(pb.pool, pb.ob, nil)
		if err != nil {
			pb.close()
			return nil, err
		}
		// ours: the unit of work, as applications write (business INSERT,
		// outbox.Raise; the outbox INSERT rides with COMMIT, Notify after).
		ours := func(ctx context.Context, n int) (*Trial, error) {
			if err := pb.truncate(ctx, "business", "outbox"); err != nil {
				return nil, err
			}
			tally := NewTally(n, 1)
			return &Trial{Tally: tally, Run: func(ctx context.Context) error {
				return parallel(ctx, n, conns, func(ctx context.Context, i int) error {
					err := uow.Do(ctx, func(ctx context.Context) error {
						tx, _ := postgres.TxFromContext(ctx)
						if err := business(ctx, tx, i); err != nil {
							return err
						}
						return outbox.Raise(ctx, benchEvent{ID: strconv.Itoa(i), Seq: i, Body: body256})
					})
					if err == nil {
						tally.Mark(0, i)
					}
					return err
				})
			}}, nil
		}
		// ours, explicit: outbox.Write in the caller's transaction (its own
		// round trip), Notify after COMMIT.
		oursWrite := setup([]string{"business", "outbox"}, write(pb.ob), pb.ob.Notify)
		baseline := setup([]string{"business"}, business, nil)
		peer := setup([]string{"business", wmTable}, func(ctx context.Context, tx pgx.Tx, i int) error {
			if err := business(ctx, tx, i); err != nil {
				return err
			}
			pub, err := wmsql.NewPublisher(wmsql.TxFromPgx(tx), wmsql.PublisherConfig{SchemaAdapter: wmsql.DefaultPostgreSQLSchema{}}, watermill.NopLogger{})
			if err != nil {
				return err
			}
			env, err := eventbus.NewEnvelope(ctx, benchEvent{ID: strconv.Itoa(i), Seq: i, Body: body256})
			if err != nil {
				return err
			}
			return pub.Publish(wmTopic, message.NewMessage(env.EventID.String(), message.Payload(env.Payload)))
		}, nil)
		contenders := []Contender{
			Measure("ours", n, MsgPerSec, ours),
			Measure("baseline", n, MsgPerSec, baseline),
			Measure("watermill-sql", n, MsgPerSec, peer),
			Measure("ours-explicit-write", n, MsgPerSec, oursWrite),
		}
		// Physical proxy: the same two statements from pgbench's C client.
		proxyBase, proxyOutbox := b8Proxies(cfg, pb, conns)
		if proxyBase != nil {
			contenders = append(contenders, *proxyBase, *proxyOutbox)
		}
		s, err := Interleave(ctx, cfg, contenders...)
		pb.ob.Close()
		pb.close()
		if err != nil {
			return nil, err
		}
		r1 := Compare("B8", fmt.Sprintf("outbox write, %d conns, vs same tx without outbox", conns), "tx/s", s[0], s[1], AtLeastX(0.85))
		r1.Notes = append(r1.Notes, "ours: UnitOfWork.Do with the business INSERT and outbox.Raise of one event (256 B payload); the outbox INSERT goes in one pipeline with COMMIT, Outbox.Notify after COMMIT (coalesced NOTIFY on its own connection); baseline: pgx.BeginFunc with the business INSERT")
		r2 := Compare("B8", fmt.Sprintf("outbox write, %d conns, vs watermill-sql/v4 in the same tx", conns), "tx/s", s[0], s[2], AtLeastX(1.0))
		r2.Notes = append(r2.Notes, "watermill-sql: NewPublisher(TxFromPgx(tx), DefaultPostgreSQLSchema) + Publish per tx, as its docs show")
		r3 := Compare("B8", fmt.Sprintf("outbox.Write in the caller's tx (own round trip), %d conns, vs same tx without outbox", conns), "tx/s", s[3], s[1], Target{})
		out = append(out, r1, r2, r3)
		if proxyBase != nil {
			r4 := Compare("B8", fmt.Sprintf("pgbench proxy, %d conns: business + outbox INSERT vs business only", conns), "tx/s", s[5], s[4], Target{})
			r4.Notes = append(r4.Notes, "pgbench proxy: the same business INSERT and a single-row outbox INSERT (same columns, 256 B JSON payload) sent with COMMIT as one compound query, as the unit of work does, pgbench -n -c N -j min(N,2) -T t; its ratio is the ceiling of ours vs baseline on this machine")
			out = append(out, r4)
		}
	}
	return out, nil
}

// b8Proxies returns pgbench contenders for the business-only transaction
// and the business + outbox row transaction (nil when pgbench is missing).
func b8Proxies(cfg Config, pb *pgBench, conns int) (base, withOutbox *Contender) {
	d := time.Duration(cfg.Size(3, 1, 1)) * time.Second
	biz := pgx.Identifier{pb.schema, "pgb_business"}.Sanitize()
	ob := pgx.Identifier{pb.schema, "outbox"}.Sanitize()
	bizSQL := "INSERT INTO " + biz + " (body) VALUES ('" + body256 + "');\n"
	payload := `{"id":"1","seq":1,"body":"` + body256 + `"}`
	obSQL := "INSERT INTO " + ob + " (event_id, event_type, schema_version, aggregate_type, aggregate_id, payload, metadata, occurred_at) VALUES (gen_random_uuid(), 'bench.happened.v1', 1, 'bench', '1', '" + payload + "', '{}', now());\n"
	before := func(ctx context.Context) error {
		_, err := pb.pool.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+biz+" (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL); TRUNCATE "+biz+", "+ob)
		return err
	}
	base = pgbenchContender(cfg, "pgbench-business", "BEGIN;\n"+bizSQL+"COMMIT;\n", conns, d, before)
	// The outbox INSERT and COMMIT as one compound query: the unit of
	// work's round trips.
	withOutbox = pgbenchContender(cfg, "pgbench-business+outbox", "BEGIN;\n"+bizSQL+strings.TrimSuffix(obSQL, ";\n")+" \\; COMMIT;\n", conns, d, before)
	if base == nil || withOutbox == nil {
		return nil, nil
	}
	return base, withOutbox
}
