// Command outbox walks through eventkit's transactional outbox on a real
// PostgreSQL: a business write and its event commit together, a relay
// publishes the event to a bus, and an idempotent consumer applies its effect
// exactly once (its marker, its own write and its follow-up event commit in
// one transaction), even when the event is delivered twice.
//
// It uses DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test),
// works in a schema of its own and drops it at the end.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/choicesherpa/eventkit/adapters/postgres"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/idempotency"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// OrderPlaced is the event the command raises.
type OrderPlaced struct {
	OrderID string `json:"order_id"`
	Amount  int    `json:"amount"`
}

func (OrderPlaced) EventType() string     { return "order.placed.v1" }
func (e OrderPlaced) AggregateID() string { return e.OrderID }
func (OrderPlaced) AggregateType() string { return "order" }

// InvoiceIssued is the follow-up event the consumer raises.
type InvoiceIssued struct {
	OrderID string `json:"order_id"`
}

func (InvoiceIssued) EventType() string     { return "invoice.issued.v1" }
func (e InvoiceIssued) AggregateID() string { return e.OrderID }
func (InvoiceIssued) AggregateType() string { return "invoice" }

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test"
	}
	if err := run(ctx, dsn, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// run is the walkthrough, writing what happens to out.
func run(ctx context.Context, dsn string, out io.Writer) error {
	schema := fmt.Sprintf("eventkit_example_%d", time.Now().UnixNano())
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return err
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	defer func() {
		_, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		fmt.Fprintln(out, "dropped schema", schema)
	}()

	// 1. Schema: the library's tables plus the app's own.
	if err := postgres.Migrate(ctx, pool, &postgres.MigrateConfig{Schema: schema}); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE orders (id text PRIMARY KEY, amount int NOT NULL);
CREATE TABLE invoices (order_id text PRIMARY KEY)`); err != nil {
		return err
	}

	ob, err := postgres.NewOutbox(pool, &postgres.OutboxConfig{Schema: schema, NotifyChannel: schema})
	if err != nil {
		return err
	}
	defer ob.Close() // flushes the last NOTIFY; runs before pool.Close
	uow, err := postgres.NewUnitOfWork(pool, ob, nil)
	if err != nil {
		return err
	}
	processed, err := postgres.NewProcessedEventStore(pool, &postgres.ProcessedEventStoreConfig{Schema: schema, Outbox: ob})
	if err != nil {
		return err
	}

	// 2. The bus and an idempotent consumer that writes in the marker's
	//    transaction and raises a follow-up event into the outbox.
	bus := eventbus.NewInMemoryBus(nil)
	defer bus.Close()
	invoicer := idempotency.Wrap(postgres.TxHandler(func(ctx context.Context, tx pgx.Tx, env eventbus.Envelope) error {
		if _, err := tx.Exec(ctx, `INSERT INTO invoices (order_id) VALUES ($1)`, env.AggregateID); err != nil {
			return err
		}
		return outbox.Raise(ctx, InvoiceIssued{OrderID: env.AggregateID})
	}), processed, "invoicer")
	invoicer.OnDuplicate = func(_ context.Context, env eventbus.Envelope) {
		fmt.Fprintln(out, "duplicate skipped:", env.EventType, env.EventID)
	}
	if _, err := bus.Subscribe(ctx, "invoicer", invoicer, OrderPlaced{}.EventType()); err != nil {
		return err
	}
	done := make(chan eventbus.Envelope, 1)
	if _, err := bus.Subscribe(ctx, "printer", eventbus.HandlerFunc(func(_ context.Context, env eventbus.Envelope) error {
		fmt.Fprintf(out, "published: %s %s (causation %s)\n", env.EventType, env.AggregateID, env.Metadata.CausationID)
		if env.EventType == (InvoiceIssued{}).EventType() {
			select {
			case done <- env:
			default: // a redelivery (at least once): the first one is enough
			}
		}
		return nil
	})); err != nil {
		return err
	}

	// 3. The relay: LISTEN/NOTIFY wake-up, 1s polling as the ground truth.
	relay, err := outbox.NewRelay(outbox.RelayConfig{Store: ob, Publisher: bus,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	if err := relay.Start(ctx); err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = relay.Stop(stopCtx)
	}()

	// 4. Commands: one that commits, one that fails (no row, no event).
	place := func(ctx context.Context, id string, amount int) error {
		return uow.Do(ctx, func(ctx context.Context) error {
			tx, _ := postgres.TxFromContext(ctx)
			if _, err := tx.Exec(ctx, `INSERT INTO orders (id, amount) VALUES ($1, $2)`, id, amount); err != nil {
				return err
			}
			if err := outbox.Raise(ctx, OrderPlaced{OrderID: id, Amount: amount}); err != nil {
				return err
			}
			if amount <= 0 {
				return errors.New("amount must be positive")
			}
			return nil
		})
	}
	reqCtx := eventbus.WithMetadata(ctx, eventbus.Metadata{CorrelationID: "req-1", UserID: "alice"})
	if err := place(reqCtx, "o-1", 42); err != nil {
		return err
	}
	fmt.Fprintln(out, "placed o-1")
	if err := place(reqCtx, "o-2", 0); err != nil {
		fmt.Fprintln(out, "o-2 rejected, rolled back:", err)
	}

	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}

	// 5. Redeliver the order event: the consumer skips it.
	placed := bus.EventsOfType(OrderPlaced{}.EventType())
	if err := invoicer.Handle(ctx, placed[0]); err != nil {
		return err
	}

	var orders, invoices, markers int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM invoices), (SELECT count(*) FROM processed_events)`).Scan(&orders, &invoices, &markers); err != nil {
		return err
	}
	lag, err := relay.Lag(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "orders=%d invoices=%d markers=%d outbox lag=%v relay=%+v\n", orders, invoices, markers, lag, relay.Stats())
	return nil
}
