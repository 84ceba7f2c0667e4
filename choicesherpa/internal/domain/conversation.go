package domain

import (
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// MaxMessageLength is the longest message, in characters.
const MaxMessageLength = 10_000

// ConversationState is the lifecycle of a conversation.
type ConversationState string

// Conversation states.
const (
	ConvInitializing ConversationState = "initializing"
	ConvReady        ConversationState = "ready"
	ConvInProgress   ConversationState = "in_progress"
	ConvConfirmed    ConversationState = "confirmed"
	ConvComplete     ConversationState = "complete"
)

var convTransitions = map[ConversationState][]ConversationState{
	ConvInitializing: {ConvReady},
	ConvReady:        {ConvInProgress},
	ConvInProgress:   {ConvConfirmed, ConvComplete},
	ConvConfirmed:    {ConvInProgress, ConvComplete},
}

// CanTransitionTo reports whether s -> to is allowed.
func (s ConversationState) CanTransitionTo(to ConversationState) bool {
	return slices.Contains(convTransitions[s], to)
}

// Role is who wrote a message. The system prompt is stored separately.
type Role string

// Message roles.
const (
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
)

// Message is one chat message.
type Message struct {
	ID        uuid.UUID `json:"id"`
	Role      Role      `json:"role"`
	Content   string    `json:"content"`
	CreatedAt time.Time `json:"created_at"`
}

// Conversation is the AI chat of one component (at most one per component).
type Conversation struct {
	ID            uuid.UUID         `json:"id"`
	ComponentID   uuid.UUID         `json:"component_id"`
	CycleID       uuid.UUID         `json:"cycle_id"`
	SessionID     uuid.UUID         `json:"session_id"`
	ComponentType ComponentType     `json:"component_type"`
	State         ConversationState `json:"state"`
	Phase         AgentPhase        `json:"phase"`
	SystemPrompt  string            `json:"system_prompt"`
	Messages      []Message         `json:"messages"`
	CreatedAt     time.Time         `json:"created_at"`
	UpdatedAt     time.Time         `json:"updated_at"`
}

// NewConversation creates the conversation of a component with its system
// (opening) prompt; it is ready for the first message.
func NewConversation(sessionID, cycleID, componentID uuid.UUID, t ComponentType, systemPrompt string, now time.Time) (*Conversation, error) {
	if !t.Valid() {
		return nil, Validationf("invalid_component_type", "unknown component type %q", t)
	}
	c := &Conversation{
		ID: NewID(), ComponentID: componentID, CycleID: cycleID, SessionID: sessionID, ComponentType: t,
		State: ConvInitializing, Phase: PhaseIntro, SystemPrompt: systemPrompt, Messages: []Message{},
		CreatedAt: now, UpdatedAt: now,
	}
	if err := c.transition(ConvReady, now); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Conversation) transition(to ConversationState, now time.Time) error {
	if !c.State.CanTransitionTo(to) {
		return Conflictf("invalid_transition", "conversation cannot go from %s to %s", c.State, to)
	}
	c.State = to
	c.UpdatedAt = now
	return nil
}

// ValidateMessageContent checks a message body: non-empty after trimming,
// at most MaxMessageLength characters.
func ValidateMessageContent(content string) error {
	if strings.TrimSpace(content) == "" {
		return Validationf("invalid_message", "message must not be empty")
	}
	if utf8.RuneCountInString(content) > MaxMessageLength {
		return Validationf("invalid_message", "message must be at most %d characters", MaxMessageLength)
	}
	return nil
}

// AddMessage appends a message. A complete conversation rejects it; the
// first message moves ready -> in_progress; a user message in a confirmed
// conversation reopens it (confirmed -> in_progress).
func (c *Conversation) AddMessage(role Role, content string, now time.Time) (Message, error) {
	if role != RoleUser && role != RoleAssistant {
		return Message{}, Validationf("invalid_role", "role must be user or assistant")
	}
	if err := ValidateMessageContent(content); err != nil {
		return Message{}, err
	}
	switch c.State {
	case ConvComplete:
		return Message{}, Conflictf("conversation_complete", "conversation is complete")
	case ConvInitializing:
		return Message{}, Conflictf("conversation_not_ready", "conversation is not ready")
	case ConvReady:
		if err := c.transition(ConvInProgress, now); err != nil {
			return Message{}, err
		}
	case ConvConfirmed:
		if role == RoleUser {
			if err := c.transition(ConvInProgress, now); err != nil {
				return Message{}, err
			}
		}
	}
	m := Message{ID: NewID(), Role: role, Content: content, CreatedAt: now}
	c.Messages = append(c.Messages, m)
	c.UpdatedAt = now
	return m, nil
}

// Confirm moves in_progress -> confirmed (the user approved the extraction).
func (c *Conversation) Confirm(now time.Time) error { return c.transition(ConvConfirmed, now) }

// Complete moves in_progress or confirmed -> complete.
func (c *Conversation) Complete(now time.Time) error { return c.transition(ConvComplete, now) }

// UserMessageCount counts the user's messages.
func (c *Conversation) UserMessageCount() int {
	n := 0
	for _, m := range c.Messages {
		if m.Role == RoleUser {
			n++
		}
	}
	return n
}

// Clone returns a deep copy.
func (c *Conversation) Clone() *Conversation {
	cp := *c
	cp.Messages = slices.Clone(c.Messages)
	if cp.Messages == nil {
		cp.Messages = []Message{}
	}
	return &cp
}

// Preview returns at most n characters of s (whole runes), for event
// payloads that must never carry full message content.
func Preview(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n])
}
