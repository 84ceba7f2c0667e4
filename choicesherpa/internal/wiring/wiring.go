// Package wiring builds the Choice Sherpa application in one call: either
// the embedded mode (in-memory repositories, in-memory bus, offline AI) or
// the PostgreSQL mode (Postgres repositories whose rows commit with the
// outbox rows in one transaction, an outbox relay publishing to any
// eventbus.Bus, Postgres idempotency markers). The server only adds
// transport on top of App. App.Close stops everything Build started and
// never closes what the caller passed in (pool, bus).
package wiring

import (
	"context"
	"errors"
	"log/slog"
	"time"

	ekpg "github.com/choicesherpa/eventkit/adapters/postgres"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/adapters/memory"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/ai"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/app"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/idempotency"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config configures Build. The zero value is the embedded mode.
type Config struct {
	// Pool switches to the PostgreSQL mode: app and outbox tables in the
	// pool's search_path (migrated by Build), outbox relay, Postgres
	// idempotency markers. Defaults to nil (embedded mode). Not closed by
	// App.Close.
	Pool *pgxpool.Pool
	// Bus carries events to the handlers. Defaults to a new
	// eventbus.InMemoryBus (closed by App.Close); a bus passed in is not
	// closed.
	Bus eventbus.Bus
	// AI is the facilitator. Defaults to ai.Offline.
	AI ai.Provider
	// Logger logs event types and ids. Defaults to discarding.
	Logger *slog.Logger
	// Now is the clock. Defaults to app.DefaultNow.
	Now func() time.Time
	// RelayPollInterval is how often the outbox relay polls in the
	// PostgreSQL mode (LISTEN/NOTIFY wakes it sooner). Defaults to
	// DefaultRelayPollInterval.
	RelayPollInterval time.Duration
	// RelayRetryBackoff spaces the relay's retries of a row whose handlers
	// failed. Defaults to outbox.DefaultRetryBackoff.
	RelayRetryBackoff eventbus.Backoff
	// NotifyChannel is the outbox wake-up channel. Defaults to
	// postgres.DefaultNotifyChannel; give instances that share a database
	// but not a schema their own.
	NotifyChannel string
}

// DefaultRelayPollInterval is the relay's default poll interval.
const DefaultRelayPollInterval = 50 * time.Millisecond

// App is the built application.
type App struct {
	Service   *app.Service
	Dashboard *app.DashboardCache
	Repos     app.Repositories
	Bus       eventbus.Bus
	// UnitOfWork is the unit of work the commands use.
	UnitOfWork outbox.UnitOfWork

	// Relay is the outbox relay (PostgreSQL mode; nil otherwise).
	Relay *outbox.Relay

	outbox  *ekpg.Outbox
	stops   []func() error
	subs    []eventbus.Subscription
	closers []func() error
}

// Build wires the application (see the package doc).
func Build(ctx context.Context, cfg Config) (*App, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RelayPollInterval <= 0 {
		cfg.RelayPollInterval = DefaultRelayPollInterval
	}
	a := &App{Bus: cfg.Bus}
	if a.Bus == nil {
		bus := eventbus.NewInMemoryBus(nil)
		a.Bus = bus
		a.closers = append(a.closers, bus.Close)
	}
	var stores app.Stores
	stores.Dashboard = boundedMarkers()
	if cfg.Pool == nil {
		store := memory.NewStore()
		uow, err := memory.NewUnitOfWork(store, a.Bus, cfg.Logger)
		if err != nil {
			return nil, err
		}
		a.Repos, a.UnitOfWork = store.Repositories(), uow
		stores.Durable = boundedMarkers()
	} else {
		if err := buildPostgres(ctx, cfg, a, &stores); err != nil {
			_ = a.Close()
			return nil, err
		}
	}
	svc, err := app.NewService(app.Config{Repos: a.Repos, UnitOfWork: a.UnitOfWork, AI: cfg.AI, Now: cfg.Now, Logger: cfg.Logger})
	if err != nil {
		_ = a.Close()
		return nil, err
	}
	a.Service = svc
	a.Dashboard = app.NewDashboardCache(a.Repos, cfg.Logger)
	subs, err := app.Subscribe(ctx, a.Bus, svc, a.Dashboard, stores)
	if err != nil {
		_ = a.Close()
		return nil, err
	}
	a.subs = subs
	if err := startRelay(ctx, cfg, a); err != nil {
		_ = a.Close()
		return nil, err
	}
	return a, nil
}

// Close stops the relay and the subscriptions and closes what Build created.
func (a *App) Close() error {
	var errs []error
	for _, stop := range a.stops {
		errs = append(errs, stop())
	}
	a.stops = nil
	for _, s := range a.subs {
		errs = append(errs, s.Close())
	}
	a.subs = nil
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	a.closers = nil
	return errors.Join(errs...)
}

// markerRetention is how long the in-memory idempotency stores remember a
// processed event: a week covers the Redis bus's retries (minutes with its
// defaults), a consumer down for days and dead-letter replays, while a
// long-running process stays bounded.
const markerRetention = 7 * 24 * time.Hour

func boundedMarkers() *idempotency.MemoryStore {
	s := idempotency.NewMemoryStore(nil)
	s.SetRetention(markerRetention)
	return s
}
