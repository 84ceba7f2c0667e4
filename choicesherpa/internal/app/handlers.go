package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/ai"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/events"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/idempotency"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/google/uuid"
)

// Handler names: the stable subscription names and idempotency keys.
const (
	SessionCycleTrackerName = "choicesherpa.session-cycle-tracker"
	ConversationInitName    = "choicesherpa.conversation-init"
	AnalysisTriggerName     = "choicesherpa.analysis-trigger"
	DashboardUpdateName     = "choicesherpa.dashboard"
)

// decode turns env into its registered event type.
func decode(env eventbus.Envelope) (eventbus.DomainEvent, error) {
	ev, err := events.Registry.Decode(env)
	if err != nil {
		return nil, eventbus.Permanent(err)
	}
	return ev, nil
}

// SessionCycleTracker adds created and branched cycles to their session's
// cycle list and raises session.cycle_added (is_root_cycle for the first).
// Adding a cycle twice is a no-op that raises nothing.
func (s *Service) SessionCycleTracker() eventbus.Handler {
	return eventbus.HandlerFunc(func(ctx context.Context, env eventbus.Envelope) error {
		ev, err := decode(env)
		if err != nil {
			return err
		}
		var sessionID, cycleID uuid.UUID
		switch e := ev.(type) {
		case events.CycleCreated:
			sessionID, cycleID = e.SessionID, e.CycleID
		case events.CycleBranched:
			sessionID, cycleID = e.SessionID, e.CycleID
		default:
			return nil
		}
		return s.uow.Do(ctx, func(ctx context.Context) error {
			sess, err := s.repos.Sessions.Get(ctx, sessionID)
			if err != nil {
				return err
			}
			now := s.now()
			added, root, err := sess.AddCycle(cycleID, now)
			if err != nil {
				return eventbus.Permanent(err)
			}
			if !added {
				return nil
			}
			if err := s.repos.Sessions.Update(ctx, sess); err != nil {
				return err
			}
			return outbox.Raise(ctx, events.SessionCycleAdded{SessionID: sessionID, CycleID: cycleID, IsRootCycle: root, AddedAt: now})
		})
	})
}

// ConversationInitHandler creates a started component's conversation with
// its opening prompt and raises conversation.started (nothing when the
// conversation exists already, e.g. created by SendMessage).
func (s *Service) ConversationInitHandler() eventbus.Handler {
	return eventbus.Typed(events.Registry, func(ctx context.Context, ev events.ComponentStarted, _ eventbus.Envelope) error {
		return s.uow.Do(ctx, func(ctx context.Context) error {
			if _, err := s.repos.Conversations.GetByComponent(ctx, ev.ComponentID); err == nil {
				return nil
			} else if !errors.Is(err, domain.ErrNotFound) {
				return err
			}
			now := s.now()
			conv, err := domain.NewConversation(ev.SessionID, ev.CycleID, ev.ComponentID, ev.ComponentType, ai.OpeningPrompt(ev.ComponentType), now)
			if err != nil {
				return eventbus.Permanent(err)
			}
			if err := s.repos.Conversations.Create(ctx, conv); err != nil {
				if errors.Is(err, domain.ErrConflict) {
					return nil // created concurrently by SendMessage
				}
				return err
			}
			return outbox.Raise(ctx, events.ConversationStarted{ConversationKey: events.ConvKey(conv), StartedAt: now})
		})
	})
}

// AnalysisTriggerHandler runs the analysis when consequences (Pugh),
// tradeoffs (tradeoff tensions) or decision_quality (DQ) complete, and for
// a branched cycle on the complete components it inherited, raising the
// analysis events.
func (s *Service) AnalysisTriggerHandler() eventbus.Handler {
	return eventbus.HandlerFunc(func(ctx context.Context, env eventbus.Envelope) error {
		ev, err := decode(env)
		if err != nil {
			return err
		}
		var cycleID uuid.UUID
		var types []domain.ComponentType
		switch e := ev.(type) {
		case events.ComponentCompleted:
			cycleID, types = e.CycleID, []domain.ComponentType{e.ComponentType}
		case events.CycleBranched:
			cycleID = e.CycleID
			for _, r := range e.Components {
				if r.Status == domain.Complete {
					types = append(types, r.ComponentType)
				}
			}
		default:
			return nil
		}
		return s.uow.Do(ctx, func(ctx context.Context) error {
			c, err := s.repos.Cycles.Get(ctx, cycleID)
			if err != nil {
				return err
			}
			now := s.now()
			var out []eventbus.DomainEvent
			for _, t := range types {
				switch t {
				case domain.Consequences:
					if e, ok := PughEvent(c, now); ok {
						out = append(out, e)
					}
				case domain.Tradeoffs:
					if e, ok := TradeoffsEvent(c, now); ok {
						out = append(out, e)
					}
				case domain.DecisionQuality:
					if e, ok := DQEvent(c, now); ok {
						out = append(out, e)
					}
				}
			}
			if len(out) == 0 {
				return nil
			}
			return outbox.Raise(ctx, out...)
		})
	})
}

// Stores chooses the processed-event store of each handler.
type Stores struct {
	// Durable keys the handlers that change stored state (tracker,
	// conversation init, analysis trigger). With PostgreSQL this is the
	// postgres.ProcessedEventStore, so the marker, the handler's writes and
	// the events it raises commit together.
	Durable idempotency.ProcessedEventStore
	// Dashboard keys the dashboard handler, whose state lives in process
	// memory: an idempotency.MemoryStore of this process.
	Dashboard idempotency.ProcessedEventStore
}

// HandlerTypes lists the event types each handler subscribes to.
var HandlerTypes = map[string][]string{
	SessionCycleTrackerName: {events.TypeCycleCreated, events.TypeCycleBranched},
	ConversationInitName:    {events.TypeComponentStarted},
	AnalysisTriggerName:     {events.TypeComponentCompleted, events.TypeCycleBranched},
	DashboardUpdateName:     events.AllTypes,
}

// Subscribe registers the four event handlers on sub, each wrapped with
// idempotency.Wrap under its name, and returns the subscriptions. The
// dashboard handler is registered last, so on a synchronous bus it sees an
// event after the handlers that react to it.
func Subscribe(ctx context.Context, sub eventbus.Subscriber, svc *Service, dash *DashboardCache, stores Stores) ([]eventbus.Subscription, error) {
	if stores.Durable == nil || stores.Dashboard == nil {
		return nil, errors.New("app: both processed-event stores are required")
	}
	hs := []struct {
		name  string
		h     eventbus.Handler
		store idempotency.ProcessedEventStore
	}{
		{SessionCycleTrackerName, svc.SessionCycleTracker(), stores.Durable},
		{ConversationInitName, svc.ConversationInitHandler(), stores.Durable},
		{AnalysisTriggerName, svc.AnalysisTriggerHandler(), stores.Durable},
		{DashboardUpdateName, dash.Handler(), stores.Dashboard},
	}
	var subs []eventbus.Subscription
	for _, h := range hs {
		sb, err := sub.Subscribe(ctx, h.name, idempotency.Wrap(h.h, h.store, h.name), HandlerTypes[h.name]...)
		if err != nil {
			for _, x := range subs {
				_ = x.Close()
			}
			return nil, fmt.Errorf("app: subscribe %s: %w", h.name, err)
		}
		subs = append(subs, sb)
	}
	return subs, nil
}
