package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/choicesherpa/eventkit/outbox"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

type txKey struct{}

// WithTx returns ctx carrying tx, so that a UnitOfWork, a
// ProcessedEventStore and repositories called under ctx join it instead of
// beginning their own. Events raised under ctx are then written to the
// outbox by whoever put the collector there (see UnitOfWork.Do).
func WithTx(ctx context.Context, tx pgx.Tx) context.Context {
	return context.WithValue(ctx, txKey{}, tx)
}

// collectorTxKey marks which transaction the collector in ctx belongs to.
type collectorTxKey struct{}

// withTxCollector returns ctx carrying tx and a fresh collector bound to it.
func withTxCollector(ctx context.Context, tx pgx.Tx) (context.Context, *outbox.Collector) {
	ctx, c := outbox.WithNewCollector(WithTx(ctx, tx))
	return context.WithValue(ctx, collectorTxKey{}, tx), c
}

// TxFromContext returns the transaction of the unit of work (or idempotent
// handler) running under ctx. Repositories use it to write in that
// transaction.
func TxFromContext(ctx context.Context) (pgx.Tx, bool) {
	tx, ok := ctx.Value(txKey{}).(pgx.Tx)
	return tx, ok && tx != nil
}

// UnitOfWorkConfig configures a UnitOfWork.
type UnitOfWorkConfig struct {
	// TxOptions are used to begin transactions. Defaults to the zero value
	// (the server's default isolation, read committed).
	TxOptions pgx.TxOptions
}

// UnitOfWork is outbox.UnitOfWork on PostgreSQL: Do runs fn in a
// transaction (TxFromContext gives it to repositories), collects the events
// fn raises with outbox.Raise and writes them to the outbox before COMMIT.
// When fn fails or panics the transaction is rolled back and no event is
// stored. After COMMIT it calls Outbox.Notify to wake the relays (no
// pg_notify in the business transaction, see OutboxConfig.NotifyInTx). A Do
// under a context that already carries a transaction joins it: its events
// are written by the outer unit (or, if the transaction was put there with
// WithTx by the caller, right after fn returns, with a pg_notify in that
// transaction since the caller commits).
type UnitOfWork struct {
	pool   *pgxpool.Pool
	outbox *Outbox
	opts   pgx.TxOptions
}

var _ outbox.UnitOfWork = (*UnitOfWork)(nil)

// NewUnitOfWork returns a unit of work writing events to ob; cfg may be nil.
func NewUnitOfWork(pool *pgxpool.Pool, ob *Outbox, cfg *UnitOfWorkConfig) (*UnitOfWork, error) {
	if pool == nil || ob == nil {
		return nil, fmt.Errorf("%w: unit of work needs a pool and an outbox", outbox.ErrConfig)
	}
	u := &UnitOfWork{pool: pool, outbox: ob}
	if cfg != nil {
		u.opts = cfg.TxOptions
	}
	return u, nil
}

// Do implements outbox.UnitOfWork.
func (u *UnitOfWork) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	return runInTx(ctx, u.pool, u.opts, nil, u.outbox, func(ctx context.Context, _ pgx.Tx) error { return fn(ctx) })
}

// beginFunc begins the transaction of runInTx on conn.
type beginFunc func(ctx context.Context, conn *pgxpool.Conn) (pgx.Tx, error)

// runInTx runs fn in the transaction ctx carries, or in a new one begun by
// begin (nil: BEGIN with opts), and writes the events raised under it to ob
// before the transaction commits. A transaction it began costs no round
// trip for the outbox: the INSERT goes in one pipeline with COMMIT.
func runInTx(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, begin beginFunc, ob *Outbox, fn func(ctx context.Context, tx pgx.Tx) error) (err error) {
	if tx, ok := TxFromContext(ctx); ok {
		// Join the collector in ctx only if it belongs to this transaction:
		// fn may have put a transaction of its own in ctx with WithTx, and
		// events written to the other one would commit or roll back apart
		// from their changes.
		var c *outbox.Collector
		joined := false
		if owner, _ := ctx.Value(collectorTxKey{}).(pgx.Tx); owner == tx {
			c, joined = outbox.CollectorFrom(ctx)
		}
		outer := !joined
		if outer {
			ctx, c = withTxCollector(ctx, tx)
		}
		if err := fn(ctx, tx); err != nil {
			return err
		}
		if outer {
			// The caller commits, not us: only a pg_notify inside the
			// transaction is sure to follow its COMMIT.
			_, err := writeCollected(ctx, ob, tx, c, true)
			return err
		}
		return nil
	}
	// The connection is ours (not pgxpool's Tx) so that a pipelined COMMIT
	// can end the transaction: Release returns it to the pool only when it
	// is idle again, and destroys it otherwise.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	defer conn.Release()
	var tx pgx.Tx
	if begin != nil {
		tx, err = begin(ctx, conn)
	} else if tx, err = conn.BeginTx(ctx, opts); err != nil {
		err = fmt.Errorf("postgres: begin: %w", err)
	}
	if err != nil {
		return err
	}
	ended := false
	defer func() {
		if !ended {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	ctx, c := withTxCollector(ctx, tx)
	if err := fn(ctx, tx); err != nil {
		return err
	}
	envs := c.Envelopes()
	if len(envs) == 0 {
		ended = true // Commit ends it, whatever it returns
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("postgres: commit: %w", err)
		}
		return nil
	}
	if ob == nil {
		return errNoOutbox
	}
	if ended, err = ob.writeAndCommit(ctx, tx, envs); err != nil {
		return err
	}
	if !ob.cfg.NotifyInTx {
		ob.Notify()
	}
	return nil
}

var errNoOutbox = errors.New("postgres: events were raised but no outbox is configured")

// writeCollected writes what c collected to ob in tx, with a pg_notify in
// tx when notifyInTx or ob's NotifyInTx is set, and reports whether it
// wrote anything (the caller then calls ob.Notify after COMMIT).
func writeCollected(ctx context.Context, ob *Outbox, tx pgx.Tx, c *outbox.Collector, notifyInTx bool) (bool, error) {
	envs := c.Envelopes()
	if len(envs) == 0 {
		return false, nil
	}
	if ob == nil {
		return false, errNoOutbox
	}
	return true, ob.write(ctx, tx, notifyInTx || ob.cfg.NotifyInTx, envs)
}
