package ai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const testKey = "sk-test-SECRET-key"

// fakeServer serves one canned response per test.
func fakeServer(t *testing.T, handler http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return srv
}

func client(t *testing.T, url string, mut func(*OpenAIConfig)) (*OpenAI, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	cfg := OpenAIConfig{BaseURL: url + "/v1", APIKey: testKey, Model: "test-model",
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if mut != nil {
		mut(&cfg)
	}
	c, err := NewOpenAI(cfg)
	require.NoError(t, err)
	return c, &logs
}

var secretReq = Request{SystemPrompt: "be kind", Messages: []ChatMessage{{Role: ChatUser, Content: "my private salary is 123456"}}}

func sse(w http.ResponseWriter, lines ...string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	for _, l := range lines {
		fmt.Fprintf(w, "%s\n\n", l)
		w.(http.Flusher).Flush()
	}
}

func TestOpenAIStreams(t *testing.T) {
	t.Parallel()
	var got oaRequest
	var auth, path string
	srv := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		auth, path = r.Header.Get("Authorization"), r.URL.Path
		require.NoError(t, json.NewDecoder(r.Body).Decode(&got))
		sse(w,
			": keep-alive comment",
			`data: {"model":"test-model-2026","choices":[{"delta":{"role":"assistant"}}]}`,
			`data: {"choices":[{"delta":{"content":"Hel"}}]}`,
			`data:{"choices":[{"delta":{"content":"lo!"},"finish_reason":"stop"}]}`,
			`data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}`,
			"data: [DONE]")
	})
	c, _ := client(t, srv.URL, nil)
	var deltas []string
	resp, err := c.Stream(context.Background(), secretReq, func(d string) error { deltas = append(deltas, d); return nil })
	require.NoError(t, err)
	require.Equal(t, []string{"Hel", "lo!"}, deltas)
	require.Equal(t, "Hello!", resp.Content)
	require.Equal(t, "stop", resp.FinishReason)
	require.Equal(t, "test-model-2026", resp.Model)
	require.Equal(t, Usage{PromptTokens: 5, CompletionTokens: 2, TotalTokens: 7}, resp.Usage)
	require.Equal(t, "Bearer "+testKey, auth)
	require.Equal(t, "/v1/chat/completions", path)
	require.True(t, got.Stream)
	require.Equal(t, "test-model", got.Model)
	require.Equal(t, []oaMessage{{"system", "be kind"}, {"user", "my private salary is 123456"}}, got.Messages)

	full, err := c.Complete(context.Background(), secretReq)
	require.NoError(t, err)
	require.Equal(t, "Hello!", full.Content)
}

func TestOpenAIErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler http.HandlerFunc
		check   func(t *testing.T, err error)
	}{
		{"rate limited with retry-after", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			http.Error(w, `{"error":{"message":"slow down; you said: my private salary is 123456"}}`, http.StatusTooManyRequests)
		}, func(t *testing.T, err error) {
			var rl *RateLimitError
			require.ErrorAs(t, err, &rl)
			require.Equal(t, 7*time.Second, rl.RetryAfter)
		}},
		{"rate limited without hint", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusTooManyRequests)
		}, func(t *testing.T, err error) {
			var rl *RateLimitError
			require.ErrorAs(t, err, &rl)
			require.Zero(t, rl.RetryAfter)
		}},
		{"unauthorized", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) },
			func(t *testing.T, err error) { require.ErrorIs(t, err, ErrAuthentication) }},
		{"bad request", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadRequest) },
			func(t *testing.T, err error) { require.ErrorIs(t, err, ErrInvalidRequest) }},
		{"server error", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) },
			func(t *testing.T, err error) { require.ErrorIs(t, err, ErrUnavailable) }},
		{"malformed chunk", func(w http.ResponseWriter, r *http.Request) {
			sse(w, `data: {"choices":[{"delta":{"content":"ok"}}]}`, `data: {"choices":[{"delta":`)
		}, func(t *testing.T, err error) { require.ErrorIs(t, err, ErrMalformedStream) }},
		{"stream ends without DONE", func(w http.ResponseWriter, r *http.Request) {
			sse(w, `data: {"choices":[{"delta":{"content":"cut"}}]}`)
		}, func(t *testing.T, err error) { require.ErrorIs(t, err, ErrMalformedStream) }},
		{"error event mid-stream", func(w http.ResponseWriter, r *http.Request) {
			sse(w, `data: {"error":{"type":"server_error"}}`)
		}, func(t *testing.T, err error) { require.ErrorIs(t, err, ErrUnavailable) }},
		{"oversized line", func(w http.ResponseWriter, r *http.Request) {
			sse(w, "data: "+strings.Repeat("x", maxSSELine+10))
		}, func(t *testing.T, err error) { require.ErrorIs(t, err, ErrMalformedStream) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := fakeServer(t, tc.handler)
			c, logs := client(t, srv.URL, nil)
			_, err := c.Stream(context.Background(), secretReq, func(string) error { return nil })
			require.Error(t, err)
			tc.check(t, err)
			for _, s := range []string{err.Error(), logs.String()} {
				require.NotContains(t, s, testKey, "the key never shows")
				require.NotContains(t, s, "123456", "message content never shows")
			}
		})
	}
}

func TestOpenAITimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		sse(w, `data: {"choices":[{"delta":{"content":"slow"}}]}`)
		select { // stall mid-stream until the client gives up (bounded)
		case <-r.Context().Done():
		case <-release:
		case <-time.After(10 * time.Second):
		}
	})
	defer close(release)
	c, _ := client(t, srv.URL, func(cfg *OpenAIConfig) { cfg.Timeout = 150 * time.Millisecond })
	start := time.Now()
	_, err := c.Stream(context.Background(), secretReq, func(string) error { return nil })
	require.ErrorIs(t, err, ErrTimeout)
	require.Less(t, time.Since(start), 5*time.Second)

	// The caller's own cancellation is reported as such, not as a timeout.
	c2, _ := client(t, srv.URL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancel once the stream is under way (the server then stalls): no
	// sleep deciding when.
	_, err = c2.Stream(ctx, secretReq, func(string) error { cancel(); return nil })
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, ErrTimeout)
}

func TestOpenAICallbackErrorStops(t *testing.T) {
	t.Parallel()
	srv := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		sse(w, `data: {"choices":[{"delta":{"content":"a"}}]}`, `data: {"choices":[{"delta":{"content":"b"}}]}`, "data: [DONE]")
	})
	c, _ := client(t, srv.URL, nil)
	stop := errors.New("client went away")
	n := 0
	_, err := c.Stream(context.Background(), secretReq, func(string) error { n++; return stop })
	require.ErrorIs(t, err, stop)
	require.Equal(t, 1, n)
}

func TestNewOpenAIValidates(t *testing.T) {
	t.Parallel()
	for _, cfg := range []OpenAIConfig{{}, {APIKey: "k", BaseURL: "ftp://x"}, {APIKey: "k", BaseURL: "/relative"}, {APIKey: "k", Timeout: -1}} {
		_, err := NewOpenAI(cfg)
		require.ErrorIs(t, err, ErrInvalidRequest)
	}
	c, err := NewOpenAI(OpenAIConfig{APIKey: "k"})
	require.NoError(t, err)
	require.Equal(t, DefaultOpenAIModel, c.cfg.Model)
	require.Equal(t, "https://api.openai.com/v1/chat/completions", c.endpoint)
	require.Equal(t, DefaultOpenAITimeout, c.cfg.Timeout)
	_, err = c.Stream(context.Background(), Request{}, nil)
	require.ErrorIs(t, err, ErrInvalidRequest)
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	require.Equal(t, 30*time.Second, parseRetryAfter("30", now))
	require.Equal(t, 90*time.Second, parseRetryAfter(now.Add(90*time.Second).Format(http.TimeFormat), now))
	require.Zero(t, parseRetryAfter("soon", now))
	require.Zero(t, parseRetryAfter("", now))
	_ = io.Discard
}
