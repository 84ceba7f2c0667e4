package app

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/ai"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/events"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/google/uuid"
)

// SendMessage is the command body.
type SendMessage struct {
	CycleID       uuid.UUID
	ComponentType domain.ComponentType
	Content       string
	// OnDelta, if set, receives the assistant's reply as it streams.
	OnDelta func(delta string) error
}

// SendResult is what SendMessage did.
type SendResult struct {
	ConversationID   uuid.UUID
	UserMessage      domain.Message
	AssistantMessage domain.Message
	// Phase is the facilitator's phase after the user's message.
	Phase domain.AgentPhase
	// Extracted is the structured output the reply yielded, if any; it was
	// applied to the component when OutputApplied.
	Extracted     json.RawMessage
	OutputApplied bool
}

// ensureConversation returns the component's conversation, creating it
// (and raising conversation.started) when it does not exist yet.
func (s *Service) ensureConversation(ctx context.Context, c *domain.Cycle, comp *domain.Component) (*domain.Conversation, error) {
	conv, err := s.repos.Conversations.GetByComponent(ctx, comp.ID)
	if err == nil {
		return conv, nil
	}
	if !errors.Is(err, domain.ErrNotFound) {
		return nil, err
	}
	now := s.now()
	conv, err = domain.NewConversation(c.SessionID, c.ID, comp.ID, comp.Type, ai.OpeningPrompt(comp.Type), now)
	if err != nil {
		return nil, err
	}
	if err := s.repos.Conversations.Create(ctx, conv); err != nil {
		if errors.Is(err, domain.ErrConflict) {
			// The ConversationInitHandler created it meanwhile: use that one.
			return s.repos.Conversations.GetByComponent(ctx, comp.ID)
		}
		return nil, err
	}
	return conv, outbox.Raise(ctx, events.ConversationStarted{ConversationKey: events.ConvKey(conv), StartedAt: now})
}

// SendMessage persists the user's message (raising message.sent), streams
// the facilitator's reply outside any transaction, then persists the reply
// (message.sent) and, when the reply carries structured output for the
// component, raises conversation.data_extracted and applies it as the
// component's output (component.output_updated).
func (s *Service) SendMessage(ctx context.Context, cmd SendMessage) (*SendResult, error) {
	ctx, user, err := commandContext(ctx)
	if err != nil {
		return nil, err
	}
	if err := domain.ValidateMessageContent(cmd.Content); err != nil {
		return nil, err
	}
	res := &SendResult{}
	var req ai.Request
	err = s.uow.Do(ctx, func(ctx context.Context) error {
		c, _, err := s.ownedCycle(ctx, user, cmd.CycleID, true)
		if err != nil {
			return err
		}
		if c.Status != domain.CycleActive {
			return domain.Conflictf("cycle_not_active", "cycle %s is %s", c.ID, c.Status)
		}
		comp, err := c.Component(cmd.ComponentType)
		if err != nil {
			return err
		}
		if !comp.Status.Started() {
			return domain.Conflictf("component_not_started", "component %s is not started", comp.Type)
		}
		conv, err := s.ensureConversation(ctx, c, comp)
		if err != nil {
			return err
		}
		m, err := conv.AddMessage(domain.RoleUser, cmd.Content, s.now())
		if err != nil {
			return err
		}
		conv.Phase = domain.NextPhase(conv.Phase, comp.Type, conv.UserMessageCount(), cmd.Content)
		if err := s.repos.Conversations.Update(ctx, conv); err != nil {
			return err
		}
		res.ConversationID, res.UserMessage, res.Phase = conv.ID, m, conv.Phase
		req = buildRequest(c, conv)
		return outbox.Raise(ctx, events.NewMessageSent(conv, m))
	})
	if err != nil {
		return nil, err
	}

	onDelta := cmd.OnDelta
	if onDelta == nil {
		onDelta = func(string) error { return nil }
	}
	reply, err := s.ai.Stream(ctx, req, onDelta)
	if err != nil {
		return nil, wrapf(err, "app: facilitator reply")
	}

	err = s.uow.Do(ctx, func(ctx context.Context) error {
		// Lock order as everywhere: cycle, then conversation.
		c, err := s.repos.Cycles.Get(ctx, cmd.CycleID)
		if err != nil {
			return err
		}
		conv, err := s.repos.Conversations.Get(ctx, res.ConversationID)
		if err != nil {
			return err
		}
		now := s.now()
		m, err := conv.AddMessage(domain.RoleAssistant, truncateReply(reply.Content), now)
		if err != nil {
			return err
		}
		if conv.Phase == domain.PhaseConfirm && domain.IsApproval(cmd.Content) && conv.State == domain.ConvInProgress {
			_ = conv.Confirm(now)
		}
		if err := s.repos.Conversations.Update(ctx, conv); err != nil {
			return err
		}
		res.AssistantMessage = m
		evs := []eventbus.DomainEvent{events.NewMessageSent(conv, m)}
		if conv.Phase == domain.PhaseExtract {
			if out, ok := ai.ExtractJSON(reply.Content); ok && domain.ValidateOutput(conv.ComponentType, out) == nil {
				res.Extracted = out
				summary, n := ai.Summarize(conv.ComponentType, out)
				evs = append(evs, events.ConversationDataExtracted{ConversationKey: events.ConvKey(conv), ExtractionSummary: summary, ItemCount: n, ExtractedAt: now})
				if comp, _ := c.Component(conv.ComponentType); c.Status == domain.CycleActive && comp.Status.AcceptsOutput() {
					if _, err := c.UpdateOutput(conv.ComponentType, out, now); err == nil {
						if err := s.repos.Cycles.Update(ctx, c); err != nil {
							return err
						}
						res.OutputApplied = true
						evs = append(evs, events.ComponentOutputUpdated{ComponentKey: events.Key(c, comp), ChangeSummary: summary, UpdatedAt: now})
					}
				}
			}
		}
		return outbox.Raise(ctx, evs...)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func truncateReply(s string) string {
	s = ai.Sanitize(s)
	if len([]rune(s)) > domain.MaxMessageLength {
		s = string([]rune(s)[:domain.MaxMessageLength])
	}
	if s == "" {
		s = "…"
	}
	return s
}

func buildRequest(c *domain.Cycle, conv *domain.Conversation) ai.Request {
	req := ai.Request{
		SystemPrompt: conv.SystemPrompt, ComponentType: conv.ComponentType, Phase: conv.Phase,
		ConversationID: conv.ID.String(), Context: map[domain.ComponentType]json.RawMessage{},
	}
	for _, comp := range c.Components {
		if comp.Type != conv.ComponentType && len(comp.Output) > 0 {
			req.Context[comp.Type] = comp.Output
		}
	}
	req.SystemPrompt = ai.RenderContext(req.SystemPrompt, req.Context)
	for _, m := range conv.Messages {
		role := ai.ChatUser
		if m.Role == domain.RoleAssistant {
			role = ai.ChatAssistant
		}
		req.Messages = append(req.Messages, ai.ChatMessage{Role: role, Content: m.Content})
	}
	return req
}
