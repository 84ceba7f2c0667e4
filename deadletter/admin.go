package deadletter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"time"
)

// DefaultMaxBodyBytes caps admin request bodies.
const DefaultMaxBodyBytes = 64 << 10

// AdminConfig configures NewAdminHandler.
type AdminConfig struct {
	// Authorize decides who may use the API. It returns the actor name the
	// audit log records, or an error: one wrapping ErrUnauthenticated gives
	// 401, one wrapping ErrForbidden gives 403, anything else 500. It sees
	// the request, so it may grant reads and mutations differently.
	// Defaults to nil, which denies every request with 403 (fail closed).
	Authorize func(r *http.Request) (actor string, err error)
	// TrustedOrigins are extra origins ("https://admin.example.com") allowed
	// to send mutations cross-origin. Defaults to none: only same-origin
	// browser requests and non-browser clients.
	TrustedOrigins []string
	// MaxBodyBytes caps request bodies. Defaults to DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Logger receives access-denied warnings (method, path, reason).
	// Defaults to slog.Default().
	Logger *slog.Logger
}

// admin is the http.Handler built by NewAdminHandler.
type admin struct {
	q       *Queue
	cfg     AdminConfig
	log     *slog.Logger
	mux     *http.ServeMux
	csrf    *http.CrossOriginProtection
	csrfErr error
}

// NewAdminHandler returns the admin HTTP API over q. Routes are relative to
// where it is mounted (use http.StripPrefix, e.g. at /admin/dlq):
//
//	GET    /  or /records      list (query: type, handler, status, after, before, cursor, limit)
//	GET    /records/{id...}    one record
//	DELETE /records/{id...}    delete one record
//	POST   /replay/{id...}     replay one record (no body)
//	POST   /replay             replay by filter, bounded: {"filter":{...},"limit":n};
//	                           200 unless records matched and none was replayed
//	                           (then the first failure's status, 409 for a record
//	                           gone meanwhile, with the result)
//	POST   /purge              purge by filter: {"filter":{...},"confirm":"purge"}
//	GET    /stats              {"depth":n,"replayed":n}
//
// Record ids contain "/" (handler/event-id); they may be sent raw or
// percent-encoded. Every response, errors included, is JSON; errors are
// {"error":{"code":"...","message":"..."}}. See the package documentation
// for the authorization and cross-site request policy.
func NewAdminHandler(q *Queue, cfg AdminConfig) http.Handler {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &admin{q: q, cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), csrf: http.NewCrossOriginProtection()}
	for _, o := range cfg.TrustedOrigins {
		if err := a.csrf.AddTrustedOrigin(o); err != nil && a.csrfErr == nil {
			a.csrfErr = fmt.Errorf("deadletter: trusted origin %q: %w", o, err)
		}
	}
	m := a.mux
	m.HandleFunc("GET /{$}", a.list)
	m.HandleFunc("GET /records", a.list)
	m.HandleFunc("GET /records/{id...}", a.get)
	m.HandleFunc("DELETE /records/{id...}", a.delete)
	m.HandleFunc("POST /replay/{id...}", a.replayOne)
	m.HandleFunc("POST /replay", a.replayFilter)
	m.HandleFunc("POST /purge", a.purge)
	m.HandleFunc("GET /stats", a.stats)
	// Known paths with the wrong method: JSON 405 with Allow.
	m.Handle("/{$}", notAllowed("GET, HEAD"))
	m.Handle("/records", notAllowed("GET, HEAD"))
	m.Handle("/records/{id...}", notAllowed("GET, HEAD, DELETE"))
	m.Handle("/replay/{id...}", notAllowed("POST"))
	m.Handle("/replay", notAllowed("POST"))
	m.Handle("/purge", notAllowed("POST"))
	m.Handle("/stats", notAllowed("GET, HEAD"))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such route")
	})
	return a
}

func notAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method "+r.Method+" not allowed; use "+allow)
	})
}

func isSafeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// ServeHTTP applies, in order: the cross-site check for mutations, the
// authorization hook, then the route.
func (a *admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if a.csrfErr != nil {
		writeError(w, http.StatusInternalServerError, "misconfigured", "admin handler misconfigured")
		return
	}
	if !isSafeMethod(r.Method) {
		if reason := a.crossSite(r); reason != "" {
			a.log.LogAttrs(r.Context(), slog.LevelWarn, "deadletter admin: cross-site request rejected",
				slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("reason", reason))
			writeError(w, http.StatusForbidden, "cross_site_request", "cross-site request rejected: "+reason)
			return
		}
	}
	if a.cfg.Authorize == nil {
		writeError(w, http.StatusForbidden, "forbidden", "no authorization configured")
		return
	}
	actor, err := a.cfg.Authorize(r)
	switch {
	case err == nil:
	case errors.Is(err, ErrUnauthenticated):
		writeError(w, http.StatusUnauthorized, "unauthenticated", "authentication required")
		return
	case errors.Is(err, ErrForbidden):
		a.log.LogAttrs(r.Context(), slog.LevelWarn, "deadletter admin: forbidden",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("actor", actor))
		writeError(w, http.StatusForbidden, "forbidden", "not allowed to administer the dead-letter queue")
		return
	default:
		a.log.LogAttrs(r.Context(), slog.LevelError, "deadletter admin: authorization failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("error", err.Error()))
		writeError(w, http.StatusInternalServerError, "internal", "authorization failed")
		return
	}
	a.mux.ServeHTTP(w, r.WithContext(WithActor(r.Context(), actor)))
}

// crossSite returns why a mutation looks cross-site, or "". Browsers mark
// requests with Sec-Fetch-Site and Origin (checked by
// http.CrossOriginProtection against Host and TrustedOrigins). A request
// with neither header comes from a non-browser client, which is fine
// unless it carries a cookie: cookie-authenticated mutations must prove
// their origin.
func (a *admin) crossSite(r *http.Request) string {
	if err := a.csrf.Check(r); err != nil {
		return err.Error()
	}
	if r.Header.Get("Sec-Fetch-Site") == "" && r.Header.Get("Origin") == "" && len(r.Cookies()) > 0 {
		return "cookie-authenticated mutation without Origin or Sec-Fetch-Site"
	}
	return ""
}

// filterJSON is a Filter on the wire.
type filterJSON struct {
	EventType string    `json:"type,omitempty"`
	Handler   string    `json:"handler,omitempty"`
	Status    string    `json:"status,omitempty"`
	After     time.Time `json:"after,omitzero"`
	Before    time.Time `json:"before,omitzero"`
}

func (f filterJSON) filter() Filter {
	return Filter{EventType: f.EventType, Handler: f.Handler, Status: f.Status, FailedAfter: f.After, FailedBefore: f.Before}
}

type listResponse struct {
	Records    []Record `json:"records"`
	NextCursor string   `json:"next_cursor,omitempty"`
	Limit      int      `json:"limit"`
}

func parseTime(q url.Values, key string) (time.Time, error) {
	s := q.Get(key)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q must be an RFC 3339 time", key, s)
	}
	return t, nil
}

func (a *admin) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	after, err := parseTime(q, "after")
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	before, err := parseTime(q, "before")
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	f := Filter{EventType: q.Get("type"), Handler: q.Get("handler"), Status: q.Get("status"), FailedAfter: after, FailedBefore: before}
	limit = a.q.ClampLimit(limit)
	recs, next, err := a.q.List(r.Context(), f, Page{Cursor: q.Get("cursor"), Limit: limit})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if recs == nil {
		recs = []Record{}
	}
	writeJSON(w, http.StatusOK, listResponse{Records: recs, NextCursor: next, Limit: limit})
}

func (a *admin) get(w http.ResponseWriter, r *http.Request) {
	rec, err := a.q.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (a *admin) delete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.q.Delete(r.Context(), id); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"deleted": id})
}

func (a *admin) replayOne(w http.ResponseWriter, r *http.Request) {
	// No body is expected; refuse one rather than ignore it.
	if !a.emptyBody(w, r) {
		return
	}
	rec, err := a.q.Replay(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

type replayRequest struct {
	Filter filterJSON `json:"filter"`
	Limit  int        `json:"limit"`
}

type replayErrorJSON struct {
	ID    string    `json:"id"`
	Error errorBody `json:"error"`
}

type replayResponse struct {
	ReplayResult
	Limit  int               `json:"limit"`
	Errors []replayErrorJSON `json:"errors,omitempty"`
	// Error is set when records matched and none could be replayed.
	Error *errorBody `json:"error,omitempty"`
}

func (a *admin) replayFilter(w http.ResponseWriter, r *http.Request) {
	var req replayRequest
	if !a.decode(w, r, &req) {
		return
	}
	if req.Limit < 0 {
		writeError(w, http.StatusBadRequest, "bad_request", "limit must not be negative")
		return
	}
	limit := req.Limit
	if limit == 0 || limit > a.q.MaxReplayBatch() {
		limit = a.q.MaxReplayBatch()
	}
	res, err := a.q.ReplayFilter(r.Context(), req.Filter.filter(), limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := replayResponse{ReplayResult: res, Limit: limit}
	status := http.StatusOK
	for i, e := range res.Errors {
		st, code, msg := classify(e.Err)
		out.Errors = append(out.Errors, replayErrorJSON{ID: e.ID, Error: errorBody{Code: code, Message: msg}})
		if i == 0 && res.Replayed == 0 {
			// Nothing was sent back: the first failure's status, so a
			// client that checks only the status does not read success.
			// A record gone meanwhile is a conflict, not a missing route.
			status = st
			if st == http.StatusNotFound {
				status = http.StatusConflict
			}
			out.Error = &errorBody{Code: code, Message: "no matching record could be replayed: " + msg}
		}
		if st >= 500 {
			a.log.LogAttrs(r.Context(), slog.LevelError, "deadletter admin: replay failed",
				slog.String("id", e.ID), slog.String("error", e.Err.Error()))
		}
	}
	writeJSON(w, status, out)
}

type purgeRequest struct {
	Filter  filterJSON `json:"filter"`
	Confirm string     `json:"confirm"`
}

func (a *admin) purge(w http.ResponseWriter, r *http.Request) {
	var req purgeRequest
	if !a.decode(w, r, &req) {
		return
	}
	n, err := a.q.Purge(r.Context(), req.Filter.filter(), req.Confirm)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"purged": n})
}

func (a *admin) stats(w http.ResponseWriter, r *http.Request) {
	depth, err := a.q.Depth(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	replayed, err := a.q.Count(r.Context(), Filter{Status: StatusReplayed})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"depth": depth, "replayed": replayed})
}

// emptyBody rejects a request that carries a body.
func (a *admin) emptyBody(w http.ResponseWriter, r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	n, _ := io.Copy(io.Discard, io.LimitReader(r.Body, 1))
	if n > 0 {
		writeError(w, http.StatusBadRequest, "bad_request", "this route takes no request body")
		return false
	}
	return true
}

// decode reads a JSON body of at most MaxBodyBytes into v, rejecting other
// content types, unknown fields and trailing data.
func (a *admin) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
		return false
	}
	body := http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "payload_too_large", fmt.Sprintf("body exceeds %d bytes", a.cfg.MaxBodyBytes))
			return false
		}
		writeError(w, http.StatusBadRequest, "bad_request", "invalid JSON body: "+err.Error())
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "bad_request", "invalid JSON body: trailing data")
		return false
	}
	return true
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// classify maps a queue error to a status, a code and a client-safe message.
func classify(err error) (int, string, string) {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, "not_found", "record not found"
	case errors.Is(err, ErrNoEnvelope):
		return http.StatusConflict, "no_envelope", ErrNoEnvelope.Error()
	case errors.Is(err, ErrConfirmationRequired):
		return http.StatusBadRequest, "confirmation_required", err.Error()
	case errors.Is(err, ErrInvalidFilter), errors.Is(err, ErrInvalidCursor):
		return http.StatusBadRequest, "bad_request", err.Error()
	case errors.Is(err, ErrNoReplayer):
		return http.StatusNotImplemented, "no_replayer", ErrNoReplayer.Error()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "unavailable", "request cancelled or timed out"
	case errors.Is(err, ErrReplayFailed):
		return http.StatusBadGateway, "replay_failed", "the event could not be sent back for replay"
	default:
		return http.StatusInternalServerError, "internal", "internal error"
	}
}

func (a *admin) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := classify(err)
	if status >= 500 {
		a.log.LogAttrs(r.Context(), slog.LevelError, "deadletter admin: request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	}
	writeError(w, status, code, msg)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]errorBody{"error": {Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":{"code":"internal","message":"encode response"}}` + "\n")
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
