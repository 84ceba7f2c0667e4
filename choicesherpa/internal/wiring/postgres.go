package wiring

import (
	"context"
	"errors"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/app"
)

func buildPostgres(ctx context.Context, cfg Config, a *App, stores *app.Stores) error {
	return errors.New("wiring: PostgreSQL mode not available yet")
}

func startRelay(ctx context.Context, cfg Config, a *App) error { return nil }
