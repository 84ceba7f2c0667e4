package deadletter_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/deadletter"
)

// authorize is the tests' hook: bearer tokens or a session cookie.
func authorize(r *http.Request) (string, error) {
	cred := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if c, err := r.Cookie("session"); err == nil {
		cred = c.Value
	}
	switch cred {
	case "admin-token":
		return "admin", nil
	case "user-token":
		return "user", deadletter.ErrForbidden
	case "":
		return "", deadletter.ErrUnauthenticated
	default:
		return "", fmt.Errorf("%w: unknown token", deadletter.ErrUnauthenticated)
	}
}

type adminBundle struct {
	*bundle
	h http.Handler
}

func setupAdmin(t *testing.T) *adminBundle {
	t.Helper()
	b := setup(t, false)
	h := deadletter.NewAdminHandler(b.queue, deadletter.AdminConfig{
		Authorize:      authorize,
		TrustedOrigins: []string{"https://ops.example.org"},
		MaxBodyBytes:   1024,
		Logger:         slog.New(slog.NewJSONHandler(b.logs, nil)),
	})
	return &adminBundle{bundle: b, h: h}
}

type response struct {
	code   int
	header http.Header
	body   map[string]any
	raw    string
}

func (r response) errCode() string {
	e, _ := r.body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

// do sends a request; token "" sends no credentials. Extra headers as pairs.
func (a *adminBundle) do(t *testing.T, method, path, token, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, req)
	res := response{code: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	require.Contains(t, rec.Header().Get("Content-Type"), "application/json", "every response is JSON: %s %s -> %d %s", method, path, rec.Code, res.raw)
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &res.body), res.raw)
	return res
}

func recPath(id string) string { return "/records/" + url.PathEscape(id) }

// Q4: no auth -> 401, non-admin -> 403, admin -> 200 on every route.
func TestAdminAuthorization(t *testing.T) {
	t.Parallel()
	routes := []struct {
		name, method, path, body string
	}{
		{"list", http.MethodGet, "/records", ""},
		{"list root", http.MethodGet, "/", ""},
		{"get", http.MethodGet, "{rec}", ""},
		{"stats", http.MethodGet, "/stats", ""},
		{"replay", http.MethodPost, "/replay/{id}", ""},
		{"replay filter", http.MethodPost, "/replay", `{"filter":{"handler":"dashboard"},"limit":10}`},
		{"delete", http.MethodDelete, "{rec}", ""},
		{"purge", http.MethodPost, "/purge", `{"filter":{"handler":"dashboard"},"confirm":"purge"}`},
	}
	for _, rt := range routes {
		t.Run(rt.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range []struct {
				token string
				code  int
				err   string
			}{
				{"", http.StatusUnauthorized, "unauthenticated"},
				{"bogus", http.StatusUnauthorized, "unauthenticated"},
				{"user-token", http.StatusForbidden, "forbidden"},
				{"admin-token", http.StatusOK, ""},
			} {
				a := setupAdmin(t)
				rec := a.deadLetter(t, handlerName, "session.created.v1", 1)
				path := strings.ReplaceAll(rt.path, "{rec}", recPath(rec.ID))
				path = strings.ReplaceAll(path, "{id}", url.PathEscape(rec.ID))
				res := a.do(t, rt.method, path, tc.token, rt.body)
				require.Equal(t, tc.code, res.code, "%s %s as %q: %s", rt.method, path, tc.token, res.raw)
				require.Equal(t, tc.err, res.errCode())
				stored, err := a.store.Get(t.Context(), rec.ID)
				if tc.code != http.StatusOK {
					require.NoError(t, err, "a refused request changed nothing")
					require.Equal(t, deadletter.StatusDead, stored.Status)
					require.Zero(t, a.handler.calls.Load())
				}
			}
		})
	}
}

func TestAdminNoAuthorizeHookDeniesAll(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	a := &adminBundle{bundle: b, h: deadletter.NewAdminHandler(b.queue, deadletter.AdminConfig{Logger: slog.New(slog.DiscardHandler)})}
	res := a.do(t, http.MethodGet, "/records", "admin-token", "")
	require.Equal(t, http.StatusForbidden, res.code)
}

// Q4: limit=100000 is capped to 500.
func TestAdminListLimitCapped(t *testing.T) {
	t.Parallel()
	a := setupAdmin(t)
	for i := range 520 {
		a.deadLetter(t, handlerName, "session.created.v1", i)
	}
	res := a.do(t, http.MethodGet, "/records?limit=100000", "admin-token", "")
	require.Equal(t, http.StatusOK, res.code)
	require.Len(t, res.body["records"], 500)
	require.EqualValues(t, 500, res.body["limit"])
	next, _ := res.body["next_cursor"].(string)
	require.NotEmpty(t, next)
	res = a.do(t, http.MethodGet, "/records?limit=100000&cursor="+url.QueryEscape(next), "admin-token", "")
	require.Equal(t, http.StatusOK, res.code)
	require.Len(t, res.body["records"], 20)
	require.Nil(t, res.body["next_cursor"])

	res = a.do(t, http.MethodGet, "/records", "admin-token", "")
	require.Len(t, res.body["records"], deadletter.DefaultPageSize)

	for _, bad := range []string{"limit=-1", "limit=abc", "status=zombie", "after=yesterday", "cursor=%25%25"} {
		res = a.do(t, http.MethodGet, "/records?"+bad, "admin-token", "")
		require.Equal(t, http.StatusBadRequest, res.code, bad)
		require.Equal(t, "bad_request", res.errCode(), bad)
	}
}

func TestAdminListFilters(t *testing.T) {
	t.Parallel()
	a := setupAdmin(t)
	a.deadLetter(t, handlerName, "session.created.v1", 10)
	want := a.deadLetter(t, handlerName, "cycle.completed.v1", 20)
	a.deadLetter(t, "tracker", "cycle.completed.v1", 30)
	a.deadLetter(t, handlerName, "cycle.completed.v1", 40)
	q := url.Values{
		"type":    {"cycle.completed.v1"},
		"handler": {handlerName},
		"status":  {deadletter.StatusDead},
		"after":   {want.LastFailedAt.Format("2006-01-02T15:04:05.000Z07:00")},
		"before":  {want.LastFailedAt.Add(1).Format("2006-01-02T15:04:05.000000000Z07:00")},
	}
	res := a.do(t, http.MethodGet, "/records?"+q.Encode(), "admin-token", "")
	require.Equal(t, http.StatusOK, res.code, res.raw)
	recs := res.body["records"].([]any)
	require.Len(t, recs, 1)
	require.Equal(t, want.ID, recs[0].(map[string]any)["id"])
}

// Q4: a cross-site mutation is rejected; same-origin, trusted origins and
// non-browser token clients are accepted.
func TestAdminCrossSite(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		headers []string
		code    int
	}{
		{"cookie from another site (Origin)", []string{"Cookie", "session=admin-token", "Origin", "https://evil.example"}, http.StatusForbidden},
		{"cookie from another site (Sec-Fetch-Site)", []string{"Cookie", "session=admin-token", "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, http.StatusForbidden},
		{"same-site but other origin", []string{"Cookie", "session=admin-token", "Sec-Fetch-Site", "same-site"}, http.StatusForbidden},
		{"cookie without any origin header", []string{"Cookie", "session=admin-token"}, http.StatusForbidden},
		{"token from another site", []string{"Authorization", "Bearer admin-token", "Origin", "https://evil.example"}, http.StatusForbidden},
		{"cookie same-origin (Sec-Fetch-Site)", []string{"Cookie", "session=admin-token", "Sec-Fetch-Site", "same-origin"}, http.StatusOK},
		{"cookie same-origin (Origin = Host)", []string{"Cookie", "session=admin-token", "Origin", "http://example.com"}, http.StatusOK},
		{"cookie from a trusted origin", []string{"Cookie", "session=admin-token", "Origin", "https://ops.example.org", "Sec-Fetch-Site", "cross-site"}, http.StatusOK},
		{"token client without browser headers", []string{"Authorization", "Bearer admin-token"}, http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := setupAdmin(t)
			rec := a.deadLetter(t, handlerName, "session.created.v1", 1)
			res := a.do(t, http.MethodPost, "/replay/"+url.PathEscape(rec.ID), "", "", tc.headers...)
			require.Equal(t, tc.code, res.code, res.raw)
			if tc.code == http.StatusForbidden {
				require.Equal(t, "cross_site_request", res.errCode())
				require.Zero(t, a.handler.calls.Load(), "nothing was replayed")
			} else {
				require.EqualValues(t, 1, a.handler.calls.Load())
			}
			// Reads stay possible cross-site (they change nothing; CORS keeps
			// their responses from other origins).
			res = a.do(t, http.MethodGet, recPath(rec.ID), "", "", tc.headers...)
			require.Equal(t, http.StatusOK, res.code, res.raw)
		})
	}
}

// Q4: mutations are POST/DELETE only.
func TestAdminMethodNotAllowed(t *testing.T) {
	t.Parallel()
	a := setupAdmin(t)
	rec := a.deadLetter(t, handlerName, "session.created.v1", 1)
	id := url.PathEscape(rec.ID)
	cases := []struct{ method, path, allow string }{
		{http.MethodGet, "/replay/" + id, "POST"},
		{http.MethodGet, "/replay", "POST"},
		{http.MethodGet, "/purge", "POST"},
		{http.MethodPut, "/purge", "POST"},
		{http.MethodPost, "/records/" + id, "GET, HEAD, DELETE"},
		{http.MethodPut, "/records/" + id, "GET, HEAD, DELETE"},
		{http.MethodPost, "/records", "GET, HEAD"},
		{http.MethodDelete, "/", "GET, HEAD"},
		{http.MethodPost, "/stats", "GET, HEAD"},
	}
	for _, tc := range cases {
		res := a.do(t, tc.method, tc.path, "admin-token", "")
		require.Equal(t, http.StatusMethodNotAllowed, res.code, "%s %s: %s", tc.method, tc.path, res.raw)
		require.Equal(t, "method_not_allowed", res.errCode())
		require.Equal(t, tc.allow, res.header.Get("Allow"))
	}
	require.Zero(t, a.handler.calls.Load())
	stored, err := a.store.Get(t.Context(), rec.ID)
	require.NoError(t, err)
	require.Equal(t, deadletter.StatusDead, stored.Status)
	require.Zero(t, stored.ReplayCount)
}

func TestAdminBadRequests(t *testing.T) {
	t.Parallel()
	a := setupAdmin(t)
	a.deadLetter(t, handlerName, "session.created.v1", 1)
	cases := []struct {
		name, method, path, body, ctype string
		code                            int
		errCode                         string
	}{
		{"unknown field", http.MethodPost, "/purge", `{"filter":{},"confirm":"purge-all","force":true}`, "", 400, "bad_request"},
		{"unknown filter field", http.MethodPost, "/replay", `{"filter":{"kind":"x"}}`, "", 400, "bad_request"},
		{"trailing data", http.MethodPost, "/purge", `{"confirm":"purge-all"} {}`, "", 400, "bad_request"},
		{"not json", http.MethodPost, "/purge", `confirm=purge-all`, "", 400, "bad_request"},
		{"form content type", http.MethodPost, "/purge", `{"confirm":"purge-all"}`, "application/x-www-form-urlencoded", 415, "unsupported_media_type"},
		{"too large", http.MethodPost, "/replay", `{"filter":{"handler":"` + strings.Repeat("x", 2000) + `"}}`, "", 413, "payload_too_large"},
		{"no confirmation", http.MethodPost, "/purge", `{"filter":{"handler":"dashboard"}}`, "", 400, "confirmation_required"},
		{"purge all with the filter token", http.MethodPost, "/purge", `{"confirm":"purge"}`, "", 400, "confirmation_required"},
		{"bad status", http.MethodPost, "/replay", `{"filter":{"status":"zombie"}}`, "", 400, "bad_request"},
		{"negative limit", http.MethodPost, "/replay", `{"limit":-1}`, "", 400, "bad_request"},
		{"body on replay one", http.MethodPost, "/replay/dashboard%2Fx", `{}`, "", 400, "bad_request"},
		{"missing record", http.MethodGet, "/records/nope%2F1", "", "", 404, "not_found"},
		{"replay missing", http.MethodPost, "/replay/nope%2F1", "", "", 404, "not_found"},
		{"delete missing", http.MethodDelete, "/records/nope%2F1", "", "", 404, "not_found"},
		{"unknown route", http.MethodGet, "/nowhere", "", "", 404, "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.ctype != "" {
				hdr = []string{"Content-Type", tc.ctype}
			}
			res := a.do(t, tc.method, tc.path, "admin-token", tc.body, hdr...)
			require.Equal(t, tc.code, res.code, res.raw)
			require.Equal(t, tc.errCode, res.errCode(), res.raw)
		})
	}
	n, err := a.queue.Count(t.Context(), deadletter.Filter{})
	require.NoError(t, err)
	require.Equal(t, 1, n, "no bad request purged anything")
}

func TestAdminNoEnvelopeConflict(t *testing.T) {
	t.Parallel()
	a := setupAdmin(t)
	raw := deadletter.Record{ID: "dashboard/1-0", Handler: handlerName, Raw: map[string]string{"data": "{"}, Reason: deadletter.ReasonPermanent}
	require.NoError(t, a.store.Put(t.Context(), raw))
	res := a.do(t, http.MethodPost, "/replay/"+url.PathEscape(raw.ID), "admin-token", "")
	require.Equal(t, http.StatusConflict, res.code, res.raw)
	require.Equal(t, "no_envelope", res.errCode())
}

// A replay by filter that sends nothing back says so in its status, not
// only in its body; one that sends some back is a success with a count of
// the failures.
func TestAdminReplayFilterAllFailed(t *testing.T) {
	t.Parallel()
	a := setupAdmin(t)
	for i := range 2 {
		raw := deadletter.Record{ID: fmt.Sprintf("dashboard/1-%d", i), Handler: handlerName, Raw: map[string]string{"data": "{"}, Reason: deadletter.ReasonPermanent}
		require.NoError(t, a.store.Put(t.Context(), raw))
	}
	res := a.do(t, http.MethodPost, "/replay", "admin-token", `{"filter":{"handler":"dashboard"}}`)
	require.Equal(t, http.StatusConflict, res.code, res.raw)
	require.Equal(t, "no_envelope", res.errCode())
	require.EqualValues(t, 2, res.body["failed"])
	require.EqualValues(t, 0, res.body["replayed"])
	require.Len(t, res.body["errors"], 2)

	a.deadLetter(t, handlerName, "session.created.v1", 10)
	res = a.do(t, http.MethodPost, "/replay", "admin-token", `{"filter":{"handler":"dashboard"}}`)
	require.Equal(t, http.StatusOK, res.code, res.raw)
	require.EqualValues(t, 1, res.body["replayed"])
	require.EqualValues(t, 2, res.body["failed"])
	require.Nil(t, res.body["error"])

	res = a.do(t, http.MethodPost, "/replay", "admin-token", `{"filter":{"type":"nothing.matches.v1"}}`)
	require.Equal(t, http.StatusOK, res.code, "no match is not a failure")
	require.EqualValues(t, 0, res.body["matched"])
}

// goneStore loses every record between the selection and its replay, as a
// concurrent purge would.
type goneStore struct{ deadletter.Store }

func (goneStore) MarkReplayed(context.Context, string, time.Time) error {
	return deadletter.ErrNotFound
}

// brokenStore fails every replay's write with a server-side error.
type brokenStore struct{ deadletter.Store }

func (brokenStore) MarkReplayed(context.Context, string, time.Time) error {
	return errors.New("store unavailable")
}

// A replay that fails on the server's side is logged, as a failed request
// is, and answered 500.
func TestAdminReplayFilterLogsServerErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	q, err := deadletter.NewQueue(brokenStore{b.store}, b.replayer, nil)
	require.NoError(t, err)
	a := &adminBundle{bundle: b, h: deadletter.NewAdminHandler(q, deadletter.AdminConfig{Authorize: authorize, Logger: slog.New(slog.NewJSONHandler(b.logs, nil))})}
	rec := a.deadLetter(t, handlerName, "session.created.v1", 10)
	res := a.do(t, http.MethodPost, "/replay", "admin-token", `{"filter":{}}`)
	require.Equal(t, http.StatusInternalServerError, res.code, res.raw)
	require.Equal(t, "internal", res.errCode())
	require.NotContains(t, res.raw, "store unavailable", "the cause stays in the log")
	logs := b.logs.String()
	require.Contains(t, logs, "deadletter admin: replay failed")
	require.Contains(t, logs, rec.ID)
	require.Contains(t, logs, "store unavailable")
}

func TestAdminReplayFilterRecordsGone(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	q, err := deadletter.NewQueue(goneStore{b.store}, b.replayer, nil)
	require.NoError(t, err)
	a := &adminBundle{bundle: b, h: deadletter.NewAdminHandler(q, deadletter.AdminConfig{Authorize: authorize, Logger: slog.New(slog.NewJSONHandler(b.logs, nil))})}
	a.deadLetter(t, handlerName, "session.created.v1", 10)
	res := a.do(t, http.MethodPost, "/replay", "admin-token", `{"filter":{}}`)
	require.Equal(t, http.StatusConflict, res.code, "a record gone meanwhile is a conflict, not a missing route: %s", res.raw)
	require.Equal(t, "not_found", res.errCode())
	require.EqualValues(t, 1, res.body["failed"])
}

// Q3 through the admin API, mounted the way the app mounts it.
func TestAdminReplayThroughMountedAPI(t *testing.T) {
	t.Parallel()
	a := setupAdmin(t)
	mux := http.NewServeMux()
	mux.Handle("/admin/dlq/", http.StripPrefix("/admin/dlq", a.h))
	a.h = mux

	one := a.deadLetter(t, handlerName, "session.created.v1", 1)
	// Replay one twice: the raw "/" in the id works as well as %2F.
	res := a.do(t, http.MethodPost, "/admin/dlq/replay/"+one.ID, "admin-token", "")
	require.Equal(t, http.StatusOK, res.code, res.raw)
	res = a.do(t, http.MethodPost, "/admin/dlq/replay/"+url.PathEscape(one.ID), "admin-token", "")
	require.Equal(t, http.StatusOK, res.code, res.raw)
	require.Equal(t, one.EventID, res.body["event_id"])
	require.Equal(t, deadletter.StatusReplayed, res.body["status"])
	require.EqualValues(t, 2, res.body["replay_count"])
	require.Equal(t, 1, a.handler.effects(one.Envelope.EventID), "effect applied once after a double replay")

	// Replay by filter.
	var batch []deadletter.Record
	for i := range 3 {
		batch = append(batch, a.deadLetter(t, handlerName, "cycle.completed.v1", 10+i))
	}
	res = a.do(t, http.MethodPost, "/admin/dlq/replay", "admin-token", `{"filter":{"type":"cycle.completed.v1"},"limit":2}`)
	require.Equal(t, http.StatusOK, res.code, res.raw)
	require.EqualValues(t, 2, res.body["replayed"])
	require.EqualValues(t, 2, res.body["limit"])
	require.Equal(t, true, res.body["more"])
	res = a.do(t, http.MethodPost, "/admin/dlq/replay", "admin-token", `{"filter":{"type":"cycle.completed.v1"}}`)
	require.Equal(t, http.StatusOK, res.code, res.raw)
	require.EqualValues(t, 1, res.body["replayed"])
	require.Equal(t, false, res.body["more"])
	for _, r := range batch {
		require.Equal(t, 1, a.handler.effects(r.Envelope.EventID))
	}

	// A still-failing entry comes back dead with its replay count, no loop.
	a.handler.failing.Store(true)
	bad := a.deadLetter(t, handlerName, "session.created.v1", 50)
	calls := a.handler.calls.Load()
	res = a.do(t, http.MethodPost, "/admin/dlq/replay/"+url.PathEscape(bad.ID), "admin-token", "")
	require.Equal(t, http.StatusOK, res.code, res.raw)
	require.Equal(t, deadletter.StatusDead, res.body["status"])
	require.EqualValues(t, 1, res.body["replay_count"])
	require.Equal(t, calls+1, a.handler.calls.Load())

	res = a.do(t, http.MethodGet, "/admin/dlq/records/"+url.PathEscape(bad.ID), "admin-token", "")
	require.Equal(t, http.StatusOK, res.code)
	require.EqualValues(t, 1, res.body["replay_count"])
	res = a.do(t, http.MethodGet, "/admin/dlq/stats", "admin-token", "")
	require.Equal(t, http.StatusOK, res.code)
	require.EqualValues(t, 1, res.body["depth"])
	require.EqualValues(t, 4, res.body["replayed"])

	// Delete and purge.
	res = a.do(t, http.MethodDelete, "/admin/dlq/records/"+url.PathEscape(bad.ID), "admin-token", "")
	require.Equal(t, http.StatusOK, res.code, res.raw)
	res = a.do(t, http.MethodPost, "/admin/dlq/purge", "admin-token", `{"confirm":"purge-all"}`)
	require.Equal(t, http.StatusOK, res.code, res.raw)
	require.EqualValues(t, 4, res.body["purged"])

	// Audit: the admin's actor on every mutation line, never the payload.
	logs := a.logs.String()
	require.NotContains(t, logs, "s3cr3t-payload")
	var mutations int
	for _, l := range a.logs.lines(t) {
		switch l["msg"] {
		case "deadletter: replayed", "deadletter: deleted", "deadletter: purged", "deadletter: replay by filter":
			mutations++
			require.Equal(t, "admin", l["actor"], "%v", l)
		}
	}
	require.Equal(t, 2+2+3+1+1+1, mutations, logs) // 2 single replays, 2 filter runs + 3 replays, 1 failing replay, delete, purge
}

// Q4 redaction through the API.
func TestAdminRedactsPayload(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	a := &adminBundle{bundle: b, h: deadletter.NewAdminHandler(b.queue, deadletter.AdminConfig{Authorize: authorize, Logger: slog.New(slog.DiscardHandler)})}
	rec := a.deadLetter(t, handlerName, "session.created.v1", 1)
	for _, path := range []string{"/records", recPath(rec.ID)} {
		res := a.do(t, http.MethodGet, path, "admin-token", "")
		require.Equal(t, http.StatusOK, res.code)
		require.NotContains(t, res.raw, "s3cr3t-payload")
		require.Contains(t, res.raw, `"payload":"[redacted]"`)
	}
	res := a.do(t, http.MethodPost, "/replay/"+url.PathEscape(rec.ID), "admin-token", "")
	require.Equal(t, http.StatusOK, res.code)
	require.NotContains(t, res.raw, "s3cr3t-payload")
}

// A bad TrustedOrigins entry fails closed instead of being ignored.
func TestAdminBadTrustedOriginFailsClosed(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	a := &adminBundle{bundle: b, h: deadletter.NewAdminHandler(b.queue, deadletter.AdminConfig{
		Authorize: authorize, TrustedOrigins: []string{"not an origin"}, Logger: slog.New(slog.DiscardHandler),
	})}
	res := a.do(t, http.MethodGet, "/records", "admin-token", "")
	require.Equal(t, http.StatusInternalServerError, res.code)
	require.Equal(t, "misconfigured", res.errCode())
}

// Q4 log hygiene: whatever the outcome (denied, cross-site, success), the
// admin handler and the queue's audit log never write credentials (header,
// cookie or query token) or event payloads.
func TestAdminLogsNoCredentialsOrPayload(t *testing.T) {
	t.Parallel()
	a := setupAdmin(t)
	r1 := a.deadLetter(t, handlerName, "session.created.v1", 1)
	r2 := a.deadLetter(t, handlerName, "session.created.v1", 2)
	q := "?access_token=qtok-secret"
	for _, tc := range []struct {
		method, path, token, body string
		headers                   []string
	}{
		{http.MethodGet, "/records" + q, "", "", nil},
		{http.MethodGet, "/records" + q, "user-token", "", nil},
		{http.MethodPost, "/replay/" + url.PathEscape(r1.ID) + q, "user-token", "", nil},
		{http.MethodPost, "/replay/" + url.PathEscape(r1.ID) + q, "", "", []string{"Cookie", "session=admin-token", "Origin", "https://evil.example"}},
		{http.MethodPost, "/replay/" + url.PathEscape(r1.ID) + q, "admin-token", "", nil},
		{http.MethodDelete, recPath(r2.ID) + q, "admin-token", "", nil},
		{http.MethodPost, "/purge" + q, "admin-token", `{"filter":{"handler":"nobody"},"confirm":"purge"}`, nil},
		{http.MethodPost, "/replay" + q, "admin-token", `{"filter":{"handler":"nobody"}}`, nil},
	} {
		a.do(t, tc.method, tc.path, tc.token, tc.body, tc.headers...)
	}
	logs := a.logs.String()
	require.NotEmpty(t, logs, "denials and mutations are logged")
	require.Contains(t, logs, "deadletter: replayed")
	require.Contains(t, logs, "cross-site request rejected")
	for _, secret := range []string{"admin-token", "user-token", "qtok-secret", "s3cr3t-payload"} {
		require.NotContains(t, logs, secret)
	}
}
