// Package app is the Choice Sherpa application layer: commands that load an
// aggregate, apply a domain rule and raise its events through the unit of
// work; the event handlers (SessionCycleTracker, ConversationInitHandler,
// AnalysisTriggerHandler, DashboardUpdateHandler); and the dashboard
// projection.
//
// Guarantees: a command's state change and its events commit together (the
// UnitOfWork decides how: a database transaction with the outbox, or staged
// in-memory writes published on success). Commands take the acting user and
// the correlation id from the context (eventbus.WithMetadata); a missing
// correlation id is generated. Every command checks that the acting user
// owns the session (domain.ErrForbidden otherwise). Event handlers are
// idempotent through idempotency.Wrap, keyed by their name and the event id,
// and the events they raise carry causation_id = the consumed event and its
// correlation id (through the context, see eventbus.ContextWithEvent).
// Logs name event types and ids only, never payloads or message content.
package app

import (
	"context"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/google/uuid"
)

// SessionRepository stores sessions. Get returns a domain.ErrNotFound error
// for an unknown id. Writes made under a unit of work become visible when it
// commits.
type SessionRepository interface {
	Create(ctx context.Context, s *domain.Session) error
	Update(ctx context.Context, s *domain.Session) error
	Get(ctx context.Context, id uuid.UUID) (*domain.Session, error)
	// ListByUser returns the user's sessions, oldest first.
	ListByUser(ctx context.Context, userID string) ([]*domain.Session, error)
}

// CycleRepository stores cycles with their components.
type CycleRepository interface {
	Create(ctx context.Context, c *domain.Cycle) error
	Update(ctx context.Context, c *domain.Cycle) error
	Get(ctx context.Context, id uuid.UUID) (*domain.Cycle, error)
	// ListBySession returns the session's cycles, oldest first.
	ListBySession(ctx context.Context, sessionID uuid.UUID) ([]*domain.Cycle, error)
}

// ConversationRepository stores conversations with their messages. Create
// returns a domain.ErrConflict error when the component already has one.
type ConversationRepository interface {
	Create(ctx context.Context, c *domain.Conversation) error
	// Update saves state, phase and any messages not stored yet (messages
	// are append-only).
	Update(ctx context.Context, c *domain.Conversation) error
	Get(ctx context.Context, id uuid.UUID) (*domain.Conversation, error)
	// GetByComponent returns the component's conversation or ErrNotFound.
	GetByComponent(ctx context.Context, componentID uuid.UUID) (*domain.Conversation, error)
	// ListBySession returns the session's conversations.
	ListBySession(ctx context.Context, sessionID uuid.UUID) ([]*domain.Conversation, error)
}

// Repositories groups the three stores.
type Repositories struct {
	Sessions      SessionRepository
	Cycles        CycleRepository
	Conversations ConversationRepository
}
