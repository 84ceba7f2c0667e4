package ai

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults of OpenAIConfig.
const (
	DefaultOpenAIBaseURL   = "https://api.openai.com/v1"
	DefaultOpenAIModel     = "gpt-4o-mini"
	DefaultOpenAITimeout   = 2 * time.Minute
	DefaultOpenAIMaxTokens = 1024
	// maxSSELine bounds one server-sent-events line.
	maxSSELine = 1 << 20
)

// OpenAIConfig configures an OpenAI-compatible chat-completions client.
type OpenAIConfig struct {
	// BaseURL is the API root; "/chat/completions" is appended. Defaults to
	// DefaultOpenAIBaseURL.
	BaseURL string
	// APIKey is sent as a bearer token. Required; never logged.
	APIKey string
	// Model names the model. Defaults to DefaultOpenAIModel.
	Model string
	// Timeout bounds one whole request, stream included. Defaults to
	// DefaultOpenAITimeout.
	Timeout time.Duration
	// MaxTokens bounds a reply when the request sets none. Defaults to
	// DefaultOpenAIMaxTokens.
	MaxTokens int
	// HTTPClient sends the requests. Defaults to a new client without its
	// own timeout (Timeout applies through the context).
	HTTPClient *http.Client
	// Logger logs request failures by status only (never the key or any
	// message content). Defaults to discarding.
	Logger *slog.Logger
}

// OpenAI is a streaming OpenAI-compatible Provider.
type OpenAI struct {
	cfg      OpenAIConfig
	endpoint string
}

var _ Provider = (*OpenAI)(nil)

// NewOpenAI validates cfg and returns the client.
func NewOpenAI(cfg OpenAIConfig) (*OpenAI, error) {
	if strings.TrimSpace(cfg.APIKey) == "" {
		return nil, fmt.Errorf("%w: an API key is required", ErrInvalidRequest)
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultOpenAIBaseURL
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: base URL must be an absolute http(s) URL", ErrInvalidRequest)
	}
	if cfg.Model == "" {
		cfg.Model = DefaultOpenAIModel
	}
	if cfg.Timeout < 0 || cfg.MaxTokens < 0 {
		return nil, fmt.Errorf("%w: negative timeout or max tokens", ErrInvalidRequest)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultOpenAITimeout
	}
	if cfg.MaxTokens == 0 {
		cfg.MaxTokens = DefaultOpenAIMaxTokens
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &OpenAI{cfg: cfg, endpoint: strings.TrimRight(cfg.BaseURL, "/") + "/chat/completions"}, nil
}

// Complete implements Provider (it streams and collects).
func (o *OpenAI) Complete(ctx context.Context, req Request) (Response, error) {
	return o.Stream(ctx, req, func(string) error { return nil })
}

type oaMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type oaRequest struct {
	Model         string      `json:"model"`
	Messages      []oaMessage `json:"messages"`
	Stream        bool        `json:"stream"`
	MaxTokens     int         `json:"max_tokens"`
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

type oaChunk struct {
	Model   string `json:"model"`
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *Usage `json:"usage"`
	Error *struct {
		Type string `json:"type"`
	} `json:"error"`
}

// Stream implements Provider: it posts a streaming chat completion and
// reads the server-sent events ("data: {json}" lines, ending with
// "data: [DONE]"). Errors: *RateLimitError on 429 (with Retry-After),
// ErrAuthentication on 401/403, ErrInvalidRequest on other 4xx,
// ErrUnavailable on 5xx or an error event, ErrTimeout when Timeout expires,
// ErrMalformedStream on undecodable data or a stream that ends without
// [DONE]. A cancelled ctx returns ctx's error.
func (o *OpenAI) Stream(ctx context.Context, req Request, onDelta func(string) error) (Response, error) {
	body := oaRequest{Model: o.cfg.Model, Stream: true, MaxTokens: o.cfg.MaxTokens}
	body.StreamOptions.IncludeUsage = true
	if req.MaxTokens > 0 {
		body.MaxTokens = req.MaxTokens
	}
	if req.SystemPrompt != "" {
		body.Messages = append(body.Messages, oaMessage{Role: string(ChatSystem), Content: req.SystemPrompt})
	}
	for _, m := range req.Messages {
		body.Messages = append(body.Messages, oaMessage{Role: string(m.Role), Content: m.Content})
	}
	if len(body.Messages) == 0 {
		return Response{}, fmt.Errorf("%w: no messages", ErrInvalidRequest)
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return Response{}, fmt.Errorf("%w: encode: %v", ErrInvalidRequest, err)
	}
	tctx, cancel := context.WithTimeoutCause(ctx, o.cfg.Timeout, ErrTimeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(tctx, http.MethodPost, o.endpoint, bytes.NewReader(payload))
	if err != nil {
		return Response{}, fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	hreq.Header.Set("Authorization", "Bearer "+o.cfg.APIKey)
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "text/event-stream")

	resp, err := o.cfg.HTTPClient.Do(hreq)
	if err != nil {
		return Response{}, o.transportErr(ctx, tctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		err := statusErr(resp)
		o.cfg.Logger.WarnContext(ctx, "ai: chat completion failed", "status", resp.StatusCode, "model", o.cfg.Model)
		return Response{}, err
	}

	out := Response{Model: o.cfg.Model}
	var content strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxSSELine)
	done := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, ":") || !strings.HasPrefix(line, "data:") {
			continue // blank separators, comments, event:/id:/retry: fields
		}
		data := strings.TrimSpace(strings.TrimPrefix(line, "data:"))
		if data == "[DONE]" {
			done = true
			break
		}
		var ch oaChunk
		if err := json.Unmarshal([]byte(data), &ch); err != nil {
			return Response{}, fmt.Errorf("%w: undecodable chunk", ErrMalformedStream)
		}
		if ch.Error != nil {
			return Response{}, fmt.Errorf("%w: error event in stream (%s)", ErrUnavailable, ch.Error.Type)
		}
		if ch.Model != "" {
			out.Model = ch.Model
		}
		if ch.Usage != nil {
			out.Usage = *ch.Usage
		}
		for _, c := range ch.Choices {
			if c.FinishReason != nil && *c.FinishReason != "" {
				out.FinishReason = *c.FinishReason
			}
			if c.Delta.Content == "" {
				continue
			}
			content.WriteString(c.Delta.Content)
			if err := onDelta(c.Delta.Content); err != nil {
				return Response{}, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return Response{}, fmt.Errorf("%w: line longer than %d bytes", ErrMalformedStream, maxSSELine)
		}
		return Response{}, o.transportErr(ctx, tctx, err)
	}
	if !done {
		if e := o.ctxErr(ctx, tctx); e != nil {
			return Response{}, e
		}
		return Response{}, fmt.Errorf("%w: stream ended without [DONE]", ErrMalformedStream)
	}
	out.Content = content.String()
	if out.FinishReason == "" {
		out.FinishReason = "stop"
	}
	return out, nil
}

func (o *OpenAI) ctxErr(parent, tctx context.Context) error {
	if err := parent.Err(); err != nil {
		return err
	}
	if tctx.Err() != nil && errors.Is(context.Cause(tctx), ErrTimeout) {
		return fmt.Errorf("%w after %s", ErrTimeout, o.cfg.Timeout)
	}
	return nil
}

func (o *OpenAI) transportErr(parent, tctx context.Context, err error) error {
	if e := o.ctxErr(parent, tctx); e != nil {
		return e
	}
	// url.Error carries the URL, never the key or the body.
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

func statusErr(resp *http.Response) error {
	switch code := resp.StatusCode; {
	case code == http.StatusTooManyRequests:
		return &RateLimitError{RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fmt.Errorf("%w (HTTP %d)", ErrAuthentication, code)
	case code >= 400 && code < 500:
		return fmt.Errorf("%w (HTTP %d)", ErrInvalidRequest, code)
	default:
		return fmt.Errorf("%w (HTTP %d)", ErrUnavailable, code)
	}
}

// parseRetryAfter reads delta-seconds or an HTTP date; 0 when absent or bad.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now).Round(time.Second)
	}
	return 0
}
