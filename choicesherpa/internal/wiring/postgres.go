package wiring

import (
	"context"
	"fmt"
	"time"

	ekpg "github.com/choicesherpa/eventkit/adapters/postgres"
	pgrepo "github.com/choicesherpa/eventkit/choicesherpa/internal/adapters/postgres"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/app"
	"github.com/choicesherpa/eventkit/outbox"
)

// DefaultStopTimeout bounds how long Close waits for the relay's batch in hand.
const DefaultStopTimeout = 10 * time.Second

func buildPostgres(ctx context.Context, cfg Config, a *App, stores *app.Stores) error {
	if err := pgrepo.Migrate(ctx, cfg.Pool); err != nil {
		return fmt.Errorf("wiring: migrate: %w", err)
	}
	ob, err := ekpg.NewOutbox(cfg.Pool, &ekpg.OutboxConfig{NotifyChannel: cfg.NotifyChannel, Logger: cfg.Logger})
	if err != nil {
		return err
	}
	// Flush the coalesced wake-up NOTIFY while the caller's pool is still open.
	a.closers = append(a.closers, func() error { ob.Close(); return nil })
	uow, err := ekpg.NewUnitOfWork(cfg.Pool, ob, nil)
	if err != nil {
		return err
	}
	store, err := pgrepo.NewStore(cfg.Pool)
	if err != nil {
		return err
	}
	processed, err := ekpg.NewProcessedEventStore(cfg.Pool, &ekpg.ProcessedEventStoreConfig{Outbox: ob})
	if err != nil {
		return err
	}
	a.Repos, a.UnitOfWork, a.outbox = store.Repositories(), uow, ob
	stores.Durable = processed
	return nil
}

// startRelay starts the outbox relay (PostgreSQL mode only). Close stops it
// before anything else, so no row is published to closed subscriptions.
func startRelay(ctx context.Context, cfg Config, a *App) error {
	if a.outbox == nil {
		return nil
	}
	relay, err := outbox.NewRelay(outbox.RelayConfig{Store: a.outbox, Publisher: a.Bus, PollInterval: cfg.RelayPollInterval,
		RetryBackoff: cfg.RelayRetryBackoff, Logger: cfg.Logger})
	if err != nil {
		return err
	}
	if err := relay.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	a.Relay = relay
	a.stops = append(a.stops, func() error {
		sctx, cancel := context.WithTimeout(context.Background(), DefaultStopTimeout)
		defer cancel()
		return relay.Stop(sctx)
	})
	return nil
}

// PendingEvents returns how many outbox rows wait for the relay (0 in the
// embedded mode).
func (a *App) PendingEvents(ctx context.Context) (int64, error) {
	if a.outbox == nil {
		return 0, nil
	}
	return a.outbox.PendingCount(ctx)
}
