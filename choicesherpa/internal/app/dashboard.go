package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/events"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/google/uuid"
)

// DefaultRecentMessages is how many recent messages a dashboard keeps.
const DefaultRecentMessages = 20

// Update types pushed to live clients (DOMAIN.md, "updateType").
const (
	UpdateSessionMetadata     = "session_metadata"
	UpdateCycleCreated        = "cycle_created"
	UpdateCycleProgress       = "cycle_progress"
	UpdateComponentStarted    = "component_started"
	UpdateComponentCompleted  = "component_completed"
	UpdateComponentOutput     = "component_output"
	UpdateConversationMessage = "conversation_message"
	UpdateAnalysisScores      = "analysis_scores"
	UpdateCycleCompleted      = "cycle_completed"
)

var updateTypes = map[string]string{
	events.TypeSessionCreated:             UpdateSessionMetadata,
	events.TypeSessionRenamed:             UpdateSessionMetadata,
	events.TypeSessionArchived:            UpdateSessionMetadata,
	events.TypeSessionCycleAdded:          UpdateCycleCreated,
	events.TypeCycleCreated:               UpdateCycleCreated,
	events.TypeCycleBranched:              UpdateCycleCreated,
	events.TypeComponentStarted:           UpdateComponentStarted,
	events.TypeComponentOutputUpdated:     UpdateComponentOutput,
	events.TypeComponentCompleted:         UpdateComponentCompleted,
	events.TypeComponentMarkedForRevision: UpdateCycleProgress,
	events.TypeCycleCompleted:             UpdateCycleCompleted,
	events.TypeCycleArchived:              UpdateCycleProgress,
	events.TypeConversationStarted:        UpdateConversationMessage,
	events.TypeMessageSent:                UpdateConversationMessage,
	events.TypeConversationDataExtracted:  UpdateComponentOutput,
	events.TypePughScoresComputed:         UpdateAnalysisScores,
	events.TypeTradeoffsAnalyzed:          UpdateAnalysisScores,
	events.TypeDQScoresComputed:           UpdateAnalysisScores,
}

// UpdateTypeOf returns the live updateType of an event type ("" if none).
func UpdateTypeOf(eventType string) string { return updateTypes[eventType] }

// Dashboard is the projection behind GET /api/sessions/{id}/dashboard.
type Dashboard struct {
	SessionID      uuid.UUID            `json:"session_id"`
	UserID         string               `json:"user_id"`
	Title          string               `json:"title"`
	Description    *string              `json:"description,omitempty"`
	Status         domain.SessionStatus `json:"status"`
	Cycles         []CycleView          `json:"cycles"`
	RecentMessages []MessageView        `json:"recent_messages"`
	// LastEventID is the last event applied; Sequence counts the updates
	// of this session (monotonic per process) for the live push.
	LastEventID string `json:"last_event_id,omitempty"`
	Sequence    uint64 `json:"sequence"`
}

// CycleView is one cycle on the dashboard.
type CycleView struct {
	CycleID       uuid.UUID             `json:"cycle_id"`
	ParentCycleID *uuid.UUID            `json:"parent_cycle_id,omitempty"`
	BranchPoint   *domain.ComponentType `json:"branch_point,omitempty"`
	BranchLabel   *string               `json:"branch_label,omitempty"`
	Status        domain.CycleStatus    `json:"status"`
	CurrentStep   domain.ComponentType  `json:"current_step"`
	Components    []ComponentView       `json:"components"`
	Progress      domain.Progress       `json:"progress"`
	Pugh          *PughView             `json:"pugh,omitempty"`
	Tradeoffs     *TradeoffsView        `json:"tradeoffs,omitempty"`
	DQ            *DQView               `json:"dq,omitempty"`
	DQScore       *int                  `json:"dq_score,omitempty"`
}

// ComponentView is one component's status.
type ComponentView struct {
	ComponentID   uuid.UUID              `json:"component_id"`
	ComponentType domain.ComponentType   `json:"component_type"`
	Status        domain.ComponentStatus `json:"status"`
}

// PughView is the Pugh analysis on the dashboard.
type PughView struct {
	Scores            map[string]int        `json:"scores"`
	BestAlternativeID *string               `json:"best_alternative_id,omitempty"`
	Dominated         []events.DominatedRef `json:"dominated"`
	Irrelevant        []string              `json:"irrelevant"`
}

// TradeoffsView summarises the tradeoff analysis.
type TradeoffsView struct {
	DominatedCount  int  `json:"dominated_count"`
	IrrelevantCount int  `json:"irrelevant_count"`
	TensionCount    int  `json:"tension_count"`
	HasClearWinner  bool `json:"has_clear_winner"`
}

// DQView is the Decision Quality score on the dashboard.
type DQView struct {
	Overall        int    `json:"overall"`
	WeakestElement string `json:"weakest_element"`
	Acceptable     bool   `json:"acceptable"`
}

// MessageView is a recent message: a preview only.
type MessageView struct {
	MessageID      uuid.UUID            `json:"message_id"`
	CycleID        uuid.UUID            `json:"cycle_id"`
	ComponentType  domain.ComponentType `json:"component_type"`
	Role           domain.Role          `json:"role"`
	ContentPreview string               `json:"content_preview"`
	SentAt         time.Time            `json:"sent_at"`
}

// Update is one change pushed to a session's live clients.
type Update struct {
	SessionID     uuid.UUID
	UpdateType    string
	Data          json.RawMessage // the event payload (snake_case)
	EventID       string
	EventType     string
	Sequence      uint64
	CorrelationID string
	Timestamp     time.Time
}

// DashboardCache holds the dashboards of the sessions this process has seen,
// updated incrementally by DashboardUpdateHandler and rebuildable from the
// repositories. Listeners are told of every applied event. Safe for
// concurrent use.
type DashboardCache struct {
	repos Repositories
	log   *slog.Logger

	// notifyMu is held from taking a sequence number until the listeners
	// have been told, so concurrent Apply calls notify in sequence order.
	// Lock order: notifyMu, then mu.
	notifyMu sync.Mutex

	mu        sync.Mutex
	sessions  map[uuid.UUID]*Dashboard
	listeners map[int]func(Update)
	nextL     int
}

// NewDashboardCache returns an empty cache reading stored state from repos.
func NewDashboardCache(repos Repositories, logger *slog.Logger) *DashboardCache {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &DashboardCache{repos: repos, log: logger, sessions: map[uuid.UUID]*Dashboard{}, listeners: map[int]func(Update){}}
}

// OnUpdate registers fn to be called (on the applying goroutine, after the
// cache is updated) for every applied event; the returned func removes it.
// Calls are serialised and in sequence order across all sessions, so fn
// must not block (a live bridge should hand the update to a buffered
// per-room queue) and must not call Apply; it may call Get.
func (d *DashboardCache) OnUpdate(fn func(Update)) (cancel func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	id := d.nextL
	d.nextL++
	d.listeners[id] = fn
	return func() {
		d.mu.Lock()
		delete(d.listeners, id)
		d.mu.Unlock()
	}
}

// Get returns a copy of the cached dashboard of a session.
func (d *DashboardCache) Get(id uuid.UUID) (Dashboard, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	db, ok := d.sessions[id]
	if !ok {
		return Dashboard{}, false
	}
	return cloneDashboard(db), true
}

// Load returns the cached dashboard, rebuilding it from stored state when
// this process has none (after a restart).
func (d *DashboardCache) Load(ctx context.Context, id uuid.UUID) (Dashboard, error) {
	if db, ok := d.Get(id); ok {
		return db, nil
	}
	return d.Rebuild(ctx, id)
}

// Forget drops a session from the cache.
func (d *DashboardCache) Forget(id uuid.UUID) {
	d.mu.Lock()
	delete(d.sessions, id)
	d.mu.Unlock()
}

// Build computes a session's dashboard from the repositories without
// touching the cache. LastEventID and Sequence are left empty.
func (d *DashboardCache) Build(ctx context.Context, id uuid.UUID) (Dashboard, error) {
	sess, err := d.repos.Sessions.Get(ctx, id)
	if err != nil {
		return Dashboard{}, err
	}
	db := Dashboard{SessionID: sess.ID, UserID: sess.UserID, Title: sess.Title, Description: sess.Description,
		Status: sess.Status, Cycles: []CycleView{}, RecentMessages: []MessageView{}}
	cycles, err := d.repos.Cycles.ListBySession(ctx, id)
	if err != nil {
		return Dashboard{}, err
	}
	for _, c := range cycles {
		v := CycleView{CycleID: c.ID, ParentCycleID: c.ParentCycleID, BranchPoint: c.BranchPoint, BranchLabel: c.BranchLabel,
			Status: c.Status, CurrentStep: c.CurrentStep}
		for _, comp := range c.Components {
			v.Components = append(v.Components, ComponentView{ComponentID: comp.ID, ComponentType: comp.Type, Status: comp.Status})
		}
		if comp, _ := c.Component(domain.Consequences); comp.Status == domain.Complete {
			if e, ok := PughEvent(c, time.Time{}); ok {
				v.Pugh = pughView(e)
			}
		}
		if comp, _ := c.Component(domain.Tradeoffs); comp.Status == domain.Complete {
			if e, ok := TradeoffsEvent(c, time.Time{}); ok {
				v.Tradeoffs = tradeoffsView(e)
			}
		}
		if comp, _ := c.Component(domain.DecisionQuality); comp.Status == domain.Complete {
			if e, ok := DQEvent(c, time.Time{}); ok {
				v.DQ = &DQView{Overall: e.OverallScore, WeakestElement: e.WeakestElement, Acceptable: e.Acceptable}
			}
		}
		if c.Status == domain.CycleCompleted {
			v.DQScore = DQOverall(c)
		}
		v.Progress = progressOf(&v)
		db.Cycles = append(db.Cycles, v)
	}
	convs, err := d.repos.Conversations.ListBySession(ctx, id)
	if err != nil {
		return Dashboard{}, err
	}
	for _, conv := range convs {
		for _, m := range conv.Messages {
			db.RecentMessages = append(db.RecentMessages, MessageView{MessageID: m.ID, CycleID: conv.CycleID, ComponentType: conv.ComponentType,
				Role: m.Role, ContentPreview: domain.Preview(m.Content, events.PreviewLength), SentAt: m.CreatedAt})
		}
	}
	db.RecentMessages = trimMessages(db.RecentMessages)
	return db, nil
}

// rebuildAttempts bounds how often Rebuild re-reads stored state because
// events were applied to the session while it was reading.
const rebuildAttempts = 4

// Rebuild replaces the cached dashboard of a session with one built from
// stored state, keeping its sequence and last event id. Stored state is read
// without holding the cache, so an event applied meanwhile may be newer than
// what was read: Rebuild then reads again instead of overwriting it, and if
// the session keeps changing it leaves the incrementally updated entry in
// place.
func (d *DashboardCache) Rebuild(ctx context.Context, id uuid.UUID) (Dashboard, error) {
	for attempt := 1; ; attempt++ {
		d.mu.Lock()
		before, had := d.sessions[id]
		var seqBefore uint64
		if had {
			seqBefore = before.Sequence
		}
		d.mu.Unlock()

		db, err := d.Build(ctx, id)
		if err != nil {
			return Dashboard{}, err
		}
		d.mu.Lock()
		cur, has := d.sessions[id]
		changed := has != had || has && cur.Sequence != seqBefore
		if changed && attempt < rebuildAttempts {
			d.mu.Unlock()
			continue
		}
		if changed && has {
			out := cloneDashboard(cur)
			d.mu.Unlock()
			return out, nil
		}
		if has {
			db.Sequence, db.LastEventID = cur.Sequence, cur.LastEventID
		}
		d.sessions[id] = &db
		out := cloneDashboard(&db)
		d.mu.Unlock()
		return out, nil
	}
}

func trimMessages(ms []MessageView) []MessageView {
	sort.Slice(ms, func(i, j int) bool {
		return ms[i].SentAt.Before(ms[j].SentAt) || ms[i].SentAt.Equal(ms[j].SentAt) && ms[i].MessageID.String() < ms[j].MessageID.String()
	})
	ms = slices.CompactFunc(ms, func(a, b MessageView) bool { return a.MessageID == b.MessageID })
	if len(ms) > DefaultRecentMessages {
		ms = append([]MessageView(nil), ms[len(ms)-DefaultRecentMessages:]...)
	}
	return ms
}

func progressOf(v *CycleView) domain.Progress {
	n := 0
	for _, c := range v.Components {
		if c.ComponentType.Required() && c.Status == domain.Complete {
			n++
		}
	}
	return domain.Progress{CompletedCount: n, TotalCount: domain.RequiredComponents, PercentComplete: n * 100 / domain.RequiredComponents, CurrentStep: v.CurrentStep}
}

func pughView(e events.PughScoresComputed) *PughView {
	return &PughView{Scores: e.AlternativeScores, BestAlternativeID: e.BestAlternativeID, Dominated: e.DominatedAlternatives, Irrelevant: e.IrrelevantObjectives}
}

func tradeoffsView(e events.TradeoffsAnalyzed) *TradeoffsView {
	return &TradeoffsView{DominatedCount: e.DominatedCount, IrrelevantCount: e.IrrelevantCount, TensionCount: len(e.Tensions), HasClearWinner: e.HasClearWinner}
}

func cloneDashboard(d *Dashboard) Dashboard {
	b, _ := json.Marshal(d)
	var out Dashboard
	_ = json.Unmarshal(b, &out)
	return out
}

// sessionOf returns the session an event belongs to.
func sessionOf(ev eventbus.DomainEvent) (uuid.UUID, bool) {
	b, err := json.Marshal(ev)
	if err != nil {
		return uuid.Nil, false
	}
	var k struct {
		SessionID uuid.UUID `json:"session_id"`
	}
	if json.Unmarshal(b, &k) != nil || k.SessionID == uuid.Nil {
		return uuid.Nil, false
	}
	return k.SessionID, true
}

// cycleOf returns the cycle an event refers to, if any.
func cycleOf(ev eventbus.DomainEvent) (uuid.UUID, bool) {
	b, _ := json.Marshal(ev)
	var k struct {
		CycleID uuid.UUID `json:"cycle_id"`
	}
	if json.Unmarshal(b, &k) != nil || k.CycleID == uuid.Nil {
		return uuid.Nil, false
	}
	return k.CycleID, true
}

// Handler is the DashboardUpdateHandler: it applies every event to the
// cache and notifies listeners. Wrap it with idempotency.Wrap (memory store
// of this process); Apply is idempotent anyway except for the sequence.
func (d *DashboardCache) Handler() eventbus.Handler {
	return eventbus.HandlerFunc(d.Apply)
}

// Apply updates the session's dashboard from env. A session (or cycle) the
// cache does not know is first rebuilt from stored state; the event is then
// applied on top (every change is idempotent).
func (d *DashboardCache) Apply(ctx context.Context, env eventbus.Envelope) error {
	ev, err := decode(env)
	if err != nil {
		return err
	}
	sid, ok := sessionOf(ev)
	if !ok {
		return nil
	}
	if _, created := ev.(events.SessionCreated); !created && !d.knows(sid, ev) {
		if _, err := d.Rebuild(ctx, sid); err != nil {
			if errors.Is(err, domain.ErrNotFound) {
				d.log.DebugContext(ctx, "dashboard: session not found", "event_type", env.EventType, "event_id", env.EventID.String())
				return nil
			}
			return err
		}
	}
	d.notifyMu.Lock()
	defer d.notifyMu.Unlock()
	d.mu.Lock()
	db := d.sessions[sid]
	if db == nil {
		db = &Dashboard{SessionID: sid, Cycles: []CycleView{}, RecentMessages: []MessageView{}}
		d.sessions[sid] = db
	}
	apply(db, ev)
	db.Sequence++
	db.LastEventID = env.EventID.String()
	up := Update{SessionID: sid, UpdateType: UpdateTypeOf(env.EventType), Data: env.Payload, EventID: env.EventID.String(),
		EventType: env.EventType, Sequence: db.Sequence, CorrelationID: env.Metadata.CorrelationID, Timestamp: env.OccurredAt}
	ls := make([]func(Update), 0, len(d.listeners))
	for _, l := range d.listeners {
		ls = append(ls, l)
	}
	d.mu.Unlock()
	for _, l := range ls {
		l(up)
	}
	return nil
}

func (d *DashboardCache) knows(sid uuid.UUID, ev eventbus.DomainEvent) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	db, ok := d.sessions[sid]
	if !ok {
		return false
	}
	switch ev.(type) {
	case events.CycleCreated, events.CycleBranched, events.SessionCycleAdded:
		return true
	}
	if cid, ok := cycleOf(ev); ok {
		return findCycle(db, cid) != nil
	}
	return true
}

func findCycle(db *Dashboard, id uuid.UUID) *CycleView {
	for i := range db.Cycles {
		if db.Cycles[i].CycleID == id {
			return &db.Cycles[i]
		}
	}
	return nil
}

func ensureCycle(db *Dashboard, id uuid.UUID) *CycleView {
	if c := findCycle(db, id); c != nil {
		return c
	}
	db.Cycles = append(db.Cycles, CycleView{CycleID: id, Status: domain.CycleActive, CurrentStep: domain.IssueRaising})
	return &db.Cycles[len(db.Cycles)-1]
}

func setComponents(v *CycleView, refs []events.ComponentRef) {
	v.Components = make([]ComponentView, len(refs))
	for i, r := range refs {
		v.Components[i] = ComponentView{ComponentID: r.ComponentID, ComponentType: r.ComponentType, Status: r.Status}
	}
	v.Progress = progressOf(v)
}

func setStatus(db *Dashboard, k events.ComponentKey, st domain.ComponentStatus) *CycleView {
	v := findCycle(db, k.CycleID)
	if v == nil {
		return nil
	}
	for i := range v.Components {
		if v.Components[i].ComponentType == k.ComponentType {
			v.Components[i].Status = st
		}
	}
	v.Progress = progressOf(v)
	return v
}

func apply(db *Dashboard, ev eventbus.DomainEvent) {
	switch e := ev.(type) {
	case events.SessionCreated:
		db.UserID, db.Title, db.Description, db.Status = e.UserID, e.Title, e.Description, domain.SessionActive
	case events.SessionRenamed:
		db.Title = e.NewTitle
	case events.SessionArchived:
		db.Status = domain.SessionArchived
	case events.SessionCycleAdded:
		ensureCycle(db, e.CycleID)
	case events.CycleCreated:
		v := ensureCycle(db, e.CycleID)
		if len(v.Components) == 0 {
			setComponents(v, e.Components)
		}
	case events.CycleBranched:
		v := ensureCycle(db, e.CycleID)
		parent, point := e.ParentCycleID, e.BranchPoint
		v.ParentCycleID, v.BranchPoint, v.BranchLabel, v.CurrentStep = &parent, &point, e.BranchLabel, e.BranchPoint
		if len(v.Components) == 0 {
			setComponents(v, e.Components)
		}
	case events.ComponentStarted:
		if v := findCycle(db, e.CycleID); v != nil && len(v.Components) == len(domain.ComponentOrder) && v.Components[e.ComponentType.Index()].Status == domain.NotStarted {
			setStatus(db, e.ComponentKey, domain.InProgress)
			v.CurrentStep = e.ComponentType
			v.Progress = progressOf(v)
		}
	case events.ComponentCompleted:
		if v := setStatus(db, e.ComponentKey, domain.Complete); v != nil {
			v.CurrentStep = e.Progress.CurrentStep
			v.Progress = progressOf(v)
		}
	case events.ComponentMarkedForRevision:
		if v := setStatus(db, e.ComponentKey, domain.NeedsRevision); v != nil {
			v.CurrentStep = e.ComponentType
			v.Progress = progressOf(v)
			switch e.ComponentType {
			case domain.Consequences:
				v.Pugh = nil
			case domain.Tradeoffs:
				v.Tradeoffs = nil
			case domain.DecisionQuality:
				v.DQ = nil
			}
		}
	case events.CycleCompleted:
		if v := findCycle(db, e.CycleID); v != nil {
			v.Status, v.DQScore = domain.CycleCompleted, e.DQOverallScore
		}
	case events.CycleArchived:
		if v := findCycle(db, e.CycleID); v != nil {
			v.Status, v.DQScore = domain.CycleArchived, nil
		}
	case events.MessageSent:
		db.RecentMessages = trimMessages(append(db.RecentMessages, MessageView{MessageID: e.MessageID, CycleID: e.CycleID,
			ComponentType: e.ComponentType, Role: e.Role, ContentPreview: e.ContentPreview, SentAt: e.SentAt}))
	case events.PughScoresComputed:
		if v := findCycle(db, e.CycleID); v != nil {
			v.Pugh = pughView(e)
		}
	case events.TradeoffsAnalyzed:
		if v := findCycle(db, e.CycleID); v != nil {
			v.Tradeoffs = tradeoffsView(e)
		}
	case events.DQScoresComputed:
		if v := findCycle(db, e.CycleID); v != nil {
			v.DQ = &DQView{Overall: e.OverallScore, WeakestElement: e.WeakestElement, Acceptable: e.Acceptable}
		}
	}
}

// Dashboard returns the dashboard of a session the acting user owns.
func (s *Service) Dashboard(ctx context.Context, cache *DashboardCache, sessionID uuid.UUID) (Dashboard, error) {
	_, user, err := commandContext(ctx)
	if err != nil {
		return Dashboard{}, err
	}
	if _, err := s.ownedSession(ctx, user, sessionID); err != nil {
		return Dashboard{}, err
	}
	return cache.Load(ctx, sessionID)
}
