package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/ai"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/events"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/google/uuid"
)

// ErrUnauthenticated is returned (as a domain.ErrForbidden error) when a
// command's context carries no user id.
var ErrUnauthenticated = domain.Forbiddenf("unauthenticated", "no acting user in the command context")

// Config configures a Service.
type Config struct {
	// Repos are the aggregate stores. Required.
	Repos Repositories
	// UnitOfWork commits state and events together. Required.
	UnitOfWork outbox.UnitOfWork
	// AI is the facilitator. Defaults to ai.Offline.
	AI ai.Provider
	// Now is the clock. Defaults to time.Now in UTC, truncated to
	// microseconds (what PostgreSQL stores).
	Now func() time.Time
	// Logger logs event types and ids. Defaults to discarding.
	Logger *slog.Logger
}

// Service runs the commands and queries.
type Service struct {
	repos Repositories
	uow   outbox.UnitOfWork
	ai    ai.Provider
	now   func() time.Time
	log   *slog.Logger
}

// DefaultNow is the default clock.
func DefaultNow() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// NewService validates cfg and returns a Service.
func NewService(cfg Config) (*Service, error) {
	if cfg.Repos.Sessions == nil || cfg.Repos.Cycles == nil || cfg.Repos.Conversations == nil {
		return nil, errors.New("app: all three repositories are required")
	}
	if cfg.UnitOfWork == nil {
		return nil, errors.New("app: a unit of work is required")
	}
	s := &Service{repos: cfg.Repos, uow: cfg.UnitOfWork, ai: cfg.AI, now: cfg.Now, log: cfg.Logger}
	if s.ai == nil {
		s.ai = ai.Offline{}
	}
	if s.now == nil {
		s.now = DefaultNow
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return s, nil
}

// Repos returns the repositories (for handlers and the dashboard).
func (s *Service) Repos() Repositories { return s.repos }

// commandContext returns ctx with a correlation id (generated when missing)
// and the acting user.
func commandContext(ctx context.Context) (context.Context, string, error) {
	md := eventbus.MetadataFromContext(ctx)
	if md.UserID == "" {
		return ctx, "", ErrUnauthenticated
	}
	if md.CorrelationID == "" {
		md.CorrelationID = uuid.NewString()
		ctx = eventbus.WithMetadata(ctx, md)
	}
	return ctx, md.UserID, nil
}

// ownedSession loads a session and checks the user owns it.
func (s *Service) ownedSession(ctx context.Context, user string, id uuid.UUID) (*domain.Session, error) {
	sess, err := s.repos.Sessions.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := sess.Authorize(user); err != nil {
		return nil, err
	}
	return sess, nil
}

// ownedCycle loads a cycle and its session and checks ownership. With
// mutable=true it also rejects changes under an archived session.
func (s *Service) ownedCycle(ctx context.Context, user string, id uuid.UUID, mutable bool) (*domain.Cycle, *domain.Session, error) {
	c, err := s.repos.Cycles.Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	sess, err := s.ownedSession(ctx, user, c.SessionID)
	if err != nil {
		return nil, nil, err
	}
	if mutable && sess.Status == domain.SessionArchived {
		return nil, nil, domain.Conflictf("session_archived", "session %s is archived", sess.ID)
	}
	return c, sess, nil
}

// CreateSession is the command body.
type CreateSession struct {
	Title       string
	Description *string
}

// CreateSession creates a session owned by the acting user and raises
// session.created.
func (s *Service) CreateSession(ctx context.Context, cmd CreateSession) (*domain.Session, error) {
	ctx, user, err := commandContext(ctx)
	if err != nil {
		return nil, err
	}
	sess, err := domain.NewSession(user, cmd.Title, cmd.Description, s.now())
	if err != nil {
		return nil, err
	}
	err = s.uow.Do(ctx, func(ctx context.Context) error {
		if err := s.repos.Sessions.Create(ctx, sess); err != nil {
			return err
		}
		return outbox.Raise(ctx, events.SessionCreated{SessionID: sess.ID, UserID: user, Title: sess.Title, Description: sess.Description, CreatedAt: sess.CreatedAt})
	})
	if err != nil {
		return nil, err
	}
	return sess, nil
}

// RenameSession renames a session and returns the old title.
func (s *Service) RenameSession(ctx context.Context, sessionID uuid.UUID, title string) (old string, err error) {
	ctx, user, err := commandContext(ctx)
	if err != nil {
		return "", err
	}
	err = s.uow.Do(ctx, func(ctx context.Context) error {
		sess, err := s.ownedSession(ctx, user, sessionID)
		if err != nil {
			return err
		}
		now := s.now()
		if old, err = sess.Rename(title, now); err != nil {
			return err
		}
		if err := s.repos.Sessions.Update(ctx, sess); err != nil {
			return err
		}
		return outbox.Raise(ctx, events.SessionRenamed{SessionID: sess.ID, UserID: user, OldTitle: old, NewTitle: sess.Title, RenamedAt: now})
	})
	return old, err
}

// ArchiveSession archives a session.
func (s *Service) ArchiveSession(ctx context.Context, sessionID uuid.UUID) error {
	ctx, user, err := commandContext(ctx)
	if err != nil {
		return err
	}
	return s.uow.Do(ctx, func(ctx context.Context) error {
		sess, err := s.ownedSession(ctx, user, sessionID)
		if err != nil {
			return err
		}
		now := s.now()
		if err := sess.Archive(now); err != nil {
			return err
		}
		if err := s.repos.Sessions.Update(ctx, sess); err != nil {
			return err
		}
		return outbox.Raise(ctx, events.SessionArchived{SessionID: sess.ID, UserID: user, ArchivedAt: now})
	})
}

// CreateCycle creates a cycle in an active session the user owns and raises
// cycle.created (the SessionCycleTracker then adds it to the session).
func (s *Service) CreateCycle(ctx context.Context, sessionID uuid.UUID) (*domain.Cycle, error) {
	ctx, user, err := commandContext(ctx)
	if err != nil {
		return nil, err
	}
	var c *domain.Cycle
	err = s.uow.Do(ctx, func(ctx context.Context) error {
		sess, err := s.ownedSession(ctx, user, sessionID)
		if err != nil {
			return err
		}
		if sess.Status != domain.SessionActive {
			return domain.Conflictf("session_archived", "session %s is archived", sess.ID)
		}
		c = domain.NewCycle(sess.ID, s.now())
		if err := s.repos.Cycles.Create(ctx, c); err != nil {
			return err
		}
		return outbox.Raise(ctx, events.CycleCreated{CycleID: c.ID, SessionID: c.SessionID, Components: events.Refs(c), CreatedAt: c.CreatedAt})
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// BranchCycle is the command body.
type BranchCycle struct {
	CycleID     uuid.UUID
	BranchPoint domain.ComponentType
	Label       *string
}

// BranchCycle creates a child cycle at the branch point and raises
// cycle.branched.
func (s *Service) BranchCycle(ctx context.Context, cmd BranchCycle) (*domain.Cycle, error) {
	ctx, user, err := commandContext(ctx)
	if err != nil {
		return nil, err
	}
	var child *domain.Cycle
	err = s.uow.Do(ctx, func(ctx context.Context) error {
		parent, _, err := s.ownedCycle(ctx, user, cmd.CycleID, true)
		if err != nil {
			return err
		}
		if child, err = parent.Branch(cmd.BranchPoint, cmd.Label, s.now()); err != nil {
			return err
		}
		if err := s.repos.Cycles.Create(ctx, child); err != nil {
			return err
		}
		inherited := make([]domain.ComponentType, 0, cmd.BranchPoint.Index()+1)
		for _, t := range domain.ComponentOrder[:cmd.BranchPoint.Index()+1] {
			inherited = append(inherited, t)
		}
		return outbox.Raise(ctx, events.CycleBranched{
			CycleID: child.ID, SessionID: child.SessionID, ParentCycleID: parent.ID, BranchPoint: cmd.BranchPoint,
			BranchLabel: child.BranchLabel, InheritedComponents: inherited, Components: events.Refs(child), CreatedAt: child.CreatedAt,
		})
	})
	if err != nil {
		return nil, err
	}
	return child, nil
}

// changeComponent runs one component command: load the owned cycle, apply
// op, save, raise what op returns.
func (s *Service) changeComponent(ctx context.Context, cycleID uuid.UUID, op func(c *domain.Cycle, now time.Time) ([]eventbus.DomainEvent, error)) (*domain.Cycle, error) {
	ctx, user, err := commandContext(ctx)
	if err != nil {
		return nil, err
	}
	var c *domain.Cycle
	err = s.uow.Do(ctx, func(ctx context.Context) error {
		if c, _, err = s.ownedCycle(ctx, user, cycleID, true); err != nil {
			return err
		}
		evs, err := op(c, s.now())
		if err != nil {
			return err
		}
		if err := s.repos.Cycles.Update(ctx, c); err != nil {
			return err
		}
		return outbox.Raise(ctx, evs...)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// StartComponent starts a component and raises component.started.
func (s *Service) StartComponent(ctx context.Context, cycleID uuid.UUID, t domain.ComponentType) (*domain.Cycle, error) {
	return s.changeComponent(ctx, cycleID, func(c *domain.Cycle, now time.Time) ([]eventbus.DomainEvent, error) {
		comp, err := c.StartComponent(t, now)
		if err != nil {
			return nil, err
		}
		return []eventbus.DomainEvent{events.ComponentStarted{ComponentKey: events.Key(c, comp), StartedAt: now}}, nil
	})
}

// UpdateComponentOutput replaces a component's output and raises
// component.output_updated.
func (s *Service) UpdateComponentOutput(ctx context.Context, cycleID uuid.UUID, t domain.ComponentType, output json.RawMessage) (*domain.Cycle, error) {
	return s.changeComponent(ctx, cycleID, func(c *domain.Cycle, now time.Time) ([]eventbus.DomainEvent, error) {
		comp, err := c.UpdateOutput(t, output, now)
		if err != nil {
			return nil, err
		}
		summary, _ := ai.Summarize(t, comp.Output)
		return []eventbus.DomainEvent{events.ComponentOutputUpdated{ComponentKey: events.Key(c, comp), ChangeSummary: summary, UpdatedAt: now}}, nil
	})
}

// CompleteComponent completes a component (its completion rules must pass)
// and raises component.completed with the cycle's progress.
func (s *Service) CompleteComponent(ctx context.Context, cycleID uuid.UUID, t domain.ComponentType) (*domain.Cycle, error) {
	return s.changeComponent(ctx, cycleID, func(c *domain.Cycle, now time.Time) ([]eventbus.DomainEvent, error) {
		comp, err := c.CompleteComponent(t, now)
		if err != nil {
			return nil, err
		}
		return []eventbus.DomainEvent{events.ComponentCompleted{ComponentKey: events.Key(c, comp), Progress: c.Progress(), CompletedAt: now}}, nil
	})
}

// MarkComponentForRevision reopens a component and raises
// component.marked_for_revision.
func (s *Service) MarkComponentForRevision(ctx context.Context, cycleID uuid.UUID, t domain.ComponentType, reason string) (*domain.Cycle, error) {
	return s.changeComponent(ctx, cycleID, func(c *domain.Cycle, now time.Time) ([]eventbus.DomainEvent, error) {
		comp, err := c.MarkForRevision(t, reason, now)
		if err != nil {
			return nil, err
		}
		return []eventbus.DomainEvent{events.ComponentMarkedForRevision{ComponentKey: events.Key(c, comp), Reason: reason, MarkedAt: now}}, nil
	})
}

// DQOverall returns the cycle's DQ overall score (the minimum element
// score) when decision_quality has an output.
func DQOverall(c *domain.Cycle) *int {
	comp, _ := c.Component(domain.DecisionQuality)
	var o domain.DecisionQualityOutput
	if len(comp.Output) == 0 || json.Unmarshal(comp.Output, &o) != nil {
		return nil
	}
	r := dqOf(o)
	return &r.Overall
}

// CompleteCycle completes the cycle (decision_quality must be complete) and
// raises cycle.completed with the DQ overall score.
func (s *Service) CompleteCycle(ctx context.Context, cycleID uuid.UUID) (*domain.Cycle, error) {
	return s.changeComponent(ctx, cycleID, func(c *domain.Cycle, now time.Time) ([]eventbus.DomainEvent, error) {
		if err := c.Complete(now); err != nil {
			return nil, err
		}
		return []eventbus.DomainEvent{events.CycleCompleted{CycleID: c.ID, SessionID: c.SessionID, DQOverallScore: DQOverall(c), CompletedAt: now}}, nil
	})
}

// ArchiveCycle archives an active or completed cycle.
func (s *Service) ArchiveCycle(ctx context.Context, cycleID uuid.UUID) (*domain.Cycle, error) {
	ctx, user, err := commandContext(ctx)
	if err != nil {
		return nil, err
	}
	var c *domain.Cycle
	err = s.uow.Do(ctx, func(ctx context.Context) error {
		if c, _, err = s.ownedCycle(ctx, user, cycleID, true); err != nil {
			return err
		}
		now := s.now()
		if err := c.Archive(now); err != nil {
			return err
		}
		if err := s.repos.Cycles.Update(ctx, c); err != nil {
			return err
		}
		return outbox.Raise(ctx, events.CycleArchived{CycleID: c.ID, SessionID: c.SessionID, ArchivedAt: now})
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// --- queries ---

// GetSession returns a session the acting user owns.
func (s *Service) GetSession(ctx context.Context, id uuid.UUID) (*domain.Session, error) {
	_, user, err := commandContext(ctx)
	if err != nil {
		return nil, err
	}
	return s.ownedSession(ctx, user, id)
}

// ListSessions returns the acting user's sessions; archived ones only when
// includeArchived.
func (s *Service) ListSessions(ctx context.Context, includeArchived bool) ([]*domain.Session, error) {
	_, user, err := commandContext(ctx)
	if err != nil {
		return nil, err
	}
	all, err := s.repos.Sessions.ListByUser(ctx, user)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, x := range all {
		if includeArchived || x.Status == domain.SessionActive {
			out = append(out, x)
		}
	}
	return out, nil
}

// GetCycle returns a cycle of a session the acting user owns.
func (s *Service) GetCycle(ctx context.Context, id uuid.UUID) (*domain.Cycle, error) {
	_, user, err := commandContext(ctx)
	if err != nil {
		return nil, err
	}
	c, _, err := s.ownedCycle(ctx, user, id, false)
	return c, err
}

// ListCycles returns a session's cycles.
func (s *Service) ListCycles(ctx context.Context, sessionID uuid.UUID) ([]*domain.Cycle, error) {
	_, user, err := commandContext(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := s.ownedSession(ctx, user, sessionID); err != nil {
		return nil, err
	}
	return s.repos.Cycles.ListBySession(ctx, sessionID)
}

// GetConversation returns the conversation of a component.
func (s *Service) GetConversation(ctx context.Context, cycleID uuid.UUID, t domain.ComponentType) (*domain.Conversation, error) {
	_, user, err := commandContext(ctx)
	if err != nil {
		return nil, err
	}
	c, _, err := s.ownedCycle(ctx, user, cycleID, false)
	if err != nil {
		return nil, err
	}
	comp, err := c.Component(t)
	if err != nil {
		return nil, err
	}
	return s.repos.Conversations.GetByComponent(ctx, comp.ID)
}

func wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}
