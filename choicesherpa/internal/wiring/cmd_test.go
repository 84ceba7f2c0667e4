package wiring

import (
	"context"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/app"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/google/uuid"
)

// SendMessageCmd builds a SendMessage command.
func SendMessageCmd(cycleID uuid.UUID, t domain.ComponentType, content string) app.SendMessage {
	return app.SendMessage{CycleID: cycleID, ComponentType: t, Content: content}
}

func raise(ctx context.Context, evs ...eventbus.DomainEvent) error { return outbox.Raise(ctx, evs...) }
