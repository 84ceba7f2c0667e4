// Package ai is the AI facilitator port and its adapters: Offline, the
// deterministic embedded default that needs no network, and OpenAI, an
// OpenAI-compatible streaming HTTP client.
//
// Providers never log message content or credentials. Stream delivers the
// reply as deltas to a callback on the caller's goroutine and returns the
// whole reply; it returns when the reply is complete, ctx is done or the
// callback fails.
package ai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
)

// ChatRole is the role of a chat message sent to a provider.
type ChatRole string

// Chat roles.
const (
	ChatSystem    ChatRole = "system"
	ChatUser      ChatRole = "user"
	ChatAssistant ChatRole = "assistant"
)

// ChatMessage is one message of the history sent to a provider.
type ChatMessage struct {
	Role    ChatRole `json:"role"`
	Content string   `json:"content"`
}

// Request is one completion request.
type Request struct {
	// SystemPrompt is the component's opening prompt (with the context
	// rendered into it for text providers).
	SystemPrompt string
	// Messages is the conversation so far, oldest first, ending with the
	// user's latest message.
	Messages []ChatMessage
	// ComponentType and Phase tell the facilitator what to do next.
	ComponentType domain.ComponentType
	Phase         domain.AgentPhase
	// Context holds the outputs of the cycle's other components, for
	// facilitators that read structured data (Offline resolves names to ids
	// with it).
	Context map[domain.ComponentType]json.RawMessage
	// ConversationID keys deterministic ids.
	ConversationID string
	// MaxTokens bounds the reply; 0 means the provider's default.
	MaxTokens int
}

// Usage counts tokens.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// Response is a complete reply.
type Response struct {
	Content      string
	Model        string
	FinishReason string
	Usage        Usage
}

// Provider completes chats. Implementations are safe for concurrent use.
type Provider interface {
	// Complete returns the whole reply.
	Complete(ctx context.Context, req Request) (Response, error)
	// Stream calls onDelta with each piece of the reply as it arrives and
	// returns the whole reply. An error from onDelta stops the stream and is
	// returned.
	Stream(ctx context.Context, req Request, onDelta func(delta string) error) (Response, error)
}

// Errors providers return (wrapped; match with errors.Is / errors.As).
var (
	ErrUnavailable     = errors.New("ai: provider unavailable")
	ErrAuthentication  = errors.New("ai: authentication failed")
	ErrTimeout         = errors.New("ai: request timed out")
	ErrMalformedStream = errors.New("ai: malformed stream")
	ErrInvalidRequest  = errors.New("ai: invalid request")
)

// RateLimitError reports HTTP 429; RetryAfter is the server's hint (0 if none).
type RateLimitError struct {
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("ai: rate limited (retry after %s)", e.RetryAfter)
}
