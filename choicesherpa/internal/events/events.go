// Package events defines every Choice Sherpa domain event of DOMAIN.md as a
// Go type with a versioned type string, registered in Registry (and in
// eventbus.DefaultRegistry, which eventbus.Subscribe uses).
//
// Guarantees: every payload carries session_id; component events also carry
// cycle_id, component_id and component_type; message events carry a
// content_preview of at most PreviewLength characters and never the full
// message content. Payloads are the JSON of the structs (snake_case).
package events

import (
	"time"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/google/uuid"
)

// Aggregate types named in envelopes.
const (
	AggregateSession      = "Session"
	AggregateCycle        = "Cycle"
	AggregateConversation = "Conversation"
	AggregateAnalysis     = "Analysis"
)

// PreviewLength is the longest content_preview, in characters.
const PreviewLength = 100

// Event type strings.
const (
	TypeSessionCreated             = "session.created.v1"
	TypeSessionRenamed             = "session.renamed.v1"
	TypeSessionArchived            = "session.archived.v1"
	TypeSessionCycleAdded          = "session.cycle_added.v1"
	TypeCycleCreated               = "cycle.created.v1"
	TypeCycleBranched              = "cycle.branched.v1"
	TypeComponentStarted           = "component.started.v1"
	TypeComponentOutputUpdated     = "component.output_updated.v1"
	TypeComponentCompleted         = "component.completed.v1"
	TypeComponentMarkedForRevision = "component.marked_for_revision.v1"
	TypeCycleCompleted             = "cycle.completed.v1"
	TypeCycleArchived              = "cycle.archived.v1"
	TypeConversationStarted        = "conversation.started.v1"
	TypeMessageSent                = "message.sent.v1"
	TypeConversationDataExtracted  = "conversation.data_extracted.v1"
	TypePughScoresComputed         = "analysis.pugh_scores_computed.v1"
	TypeTradeoffsAnalyzed          = "analysis.tradeoffs_analyzed.v1"
	TypeDQScoresComputed           = "analysis.dq_scores_computed.v1"
)

// --- Session ---

// SessionCreated is raised by CreateSession.
type SessionCreated struct {
	SessionID   uuid.UUID `json:"session_id"`
	UserID      string    `json:"user_id"`
	Title       string    `json:"title"`
	Description *string   `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// SessionRenamed is raised by RenameSession.
type SessionRenamed struct {
	SessionID uuid.UUID `json:"session_id"`
	UserID    string    `json:"user_id"`
	OldTitle  string    `json:"old_title"`
	NewTitle  string    `json:"new_title"`
	RenamedAt time.Time `json:"renamed_at"`
}

// SessionArchived is raised by ArchiveSession.
type SessionArchived struct {
	SessionID  uuid.UUID `json:"session_id"`
	UserID     string    `json:"user_id"`
	ArchivedAt time.Time `json:"archived_at"`
}

// SessionCycleAdded is raised by the SessionCycleTracker (caused by
// cycle.created / cycle.branched).
type SessionCycleAdded struct {
	SessionID   uuid.UUID `json:"session_id"`
	CycleID     uuid.UUID `json:"cycle_id"`
	IsRootCycle bool      `json:"is_root_cycle"`
	AddedAt     time.Time `json:"added_at"`
}

func (SessionCreated) EventType() string        { return TypeSessionCreated }
func (SessionRenamed) EventType() string        { return TypeSessionRenamed }
func (SessionArchived) EventType() string       { return TypeSessionArchived }
func (SessionCycleAdded) EventType() string     { return TypeSessionCycleAdded }
func (e SessionCreated) AggregateID() string    { return e.SessionID.String() }
func (e SessionRenamed) AggregateID() string    { return e.SessionID.String() }
func (e SessionArchived) AggregateID() string   { return e.SessionID.String() }
func (e SessionCycleAdded) AggregateID() string { return e.SessionID.String() }
func (SessionCreated) AggregateType() string    { return AggregateSession }
func (SessionRenamed) AggregateType() string    { return AggregateSession }
func (SessionArchived) AggregateType() string   { return AggregateSession }
func (SessionCycleAdded) AggregateType() string { return AggregateSession }

// --- Cycle ---

// ComponentRef names one component of a cycle with its status.
type ComponentRef struct {
	ComponentID   uuid.UUID              `json:"component_id"`
	ComponentType domain.ComponentType   `json:"component_type"`
	Status        domain.ComponentStatus `json:"status"`
}

// Refs lists a cycle's components.
func Refs(c *domain.Cycle) []ComponentRef {
	out := make([]ComponentRef, len(c.Components))
	for i, comp := range c.Components {
		out[i] = ComponentRef{ComponentID: comp.ID, ComponentType: comp.Type, Status: comp.Status}
	}
	return out
}

// CycleCreated is raised by CreateCycle.
type CycleCreated struct {
	CycleID       uuid.UUID      `json:"cycle_id"`
	SessionID     uuid.UUID      `json:"session_id"`
	ParentCycleID *uuid.UUID     `json:"parent_cycle_id"`
	Components    []ComponentRef `json:"components"`
	CreatedAt     time.Time      `json:"created_at"`
}

// CycleBranched is raised by BranchCycle. InheritedComponents lists the
// component types copied from the parent (the branch point included).
type CycleBranched struct {
	CycleID             uuid.UUID              `json:"cycle_id"`
	SessionID           uuid.UUID              `json:"session_id"`
	ParentCycleID       uuid.UUID              `json:"parent_cycle_id"`
	BranchPoint         domain.ComponentType   `json:"branch_point"`
	BranchLabel         *string                `json:"branch_label,omitempty"`
	InheritedComponents []domain.ComponentType `json:"inherited_components"`
	Components          []ComponentRef         `json:"components"`
	CreatedAt           time.Time              `json:"created_at"`
}

// ComponentKey is embedded in every component event.
type ComponentKey struct {
	SessionID     uuid.UUID            `json:"session_id"`
	CycleID       uuid.UUID            `json:"cycle_id"`
	ComponentID   uuid.UUID            `json:"component_id"`
	ComponentType domain.ComponentType `json:"component_type"`
}

// Key builds the ComponentKey of comp in c.
func Key(c *domain.Cycle, comp *domain.Component) ComponentKey {
	return ComponentKey{SessionID: c.SessionID, CycleID: c.ID, ComponentID: comp.ID, ComponentType: comp.Type}
}

// ComponentStarted is raised by StartComponent.
type ComponentStarted struct {
	ComponentKey
	StartedAt time.Time `json:"started_at"`
}

// ComponentOutputUpdated is raised by UpdateComponentOutput (and by
// SendMessage when the facilitator extracted the output).
type ComponentOutputUpdated struct {
	ComponentKey
	ChangeSummary string    `json:"change_summary"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// ComponentCompleted is raised by CompleteComponent.
type ComponentCompleted struct {
	ComponentKey
	Progress    domain.Progress `json:"progress"`
	CompletedAt time.Time       `json:"completed_at"`
}

// ComponentMarkedForRevision is raised by MarkComponentForRevision.
type ComponentMarkedForRevision struct {
	ComponentKey
	Reason   string    `json:"reason"`
	MarkedAt time.Time `json:"marked_at"`
}

// CycleCompleted is raised by CompleteCycle; DQOverallScore is the minimum
// DQ element score.
type CycleCompleted struct {
	CycleID        uuid.UUID `json:"cycle_id"`
	SessionID      uuid.UUID `json:"session_id"`
	DQOverallScore *int      `json:"dq_overall_score"`
	CompletedAt    time.Time `json:"completed_at"`
}

// CycleArchived is raised by ArchiveCycle.
type CycleArchived struct {
	CycleID    uuid.UUID `json:"cycle_id"`
	SessionID  uuid.UUID `json:"session_id"`
	ArchivedAt time.Time `json:"archived_at"`
}

func (CycleCreated) EventType() string               { return TypeCycleCreated }
func (CycleBranched) EventType() string              { return TypeCycleBranched }
func (ComponentStarted) EventType() string           { return TypeComponentStarted }
func (ComponentOutputUpdated) EventType() string     { return TypeComponentOutputUpdated }
func (ComponentCompleted) EventType() string         { return TypeComponentCompleted }
func (ComponentMarkedForRevision) EventType() string { return TypeComponentMarkedForRevision }
func (CycleCompleted) EventType() string             { return TypeCycleCompleted }
func (CycleArchived) EventType() string              { return TypeCycleArchived }
func (e CycleCreated) AggregateID() string           { return e.CycleID.String() }
func (e CycleBranched) AggregateID() string          { return e.CycleID.String() }
func (e ComponentKey) AggregateID() string           { return e.CycleID.String() }
func (e CycleCompleted) AggregateID() string         { return e.CycleID.String() }
func (e CycleArchived) AggregateID() string          { return e.CycleID.String() }
func (CycleCreated) AggregateType() string           { return AggregateCycle }
func (CycleBranched) AggregateType() string          { return AggregateCycle }
func (ComponentKey) AggregateType() string           { return AggregateCycle }
func (CycleCompleted) AggregateType() string         { return AggregateCycle }
func (CycleArchived) AggregateType() string          { return AggregateCycle }

// --- Conversation ---

// ConversationKey is embedded in every conversation event.
type ConversationKey struct {
	SessionID      uuid.UUID            `json:"session_id"`
	CycleID        uuid.UUID            `json:"cycle_id"`
	ComponentID    uuid.UUID            `json:"component_id"`
	ComponentType  domain.ComponentType `json:"component_type"`
	ConversationID uuid.UUID            `json:"conversation_id"`
}

// ConvKey builds the key of c.
func ConvKey(c *domain.Conversation) ConversationKey {
	return ConversationKey{SessionID: c.SessionID, CycleID: c.CycleID, ComponentID: c.ComponentID, ComponentType: c.ComponentType, ConversationID: c.ID}
}

// ConversationStarted is raised when a component's conversation is created.
type ConversationStarted struct {
	ConversationKey
	StartedAt time.Time `json:"started_at"`
}

// MessageSent is raised for each persisted message. It carries a preview,
// never the content.
type MessageSent struct {
	ConversationKey
	MessageID      uuid.UUID   `json:"message_id"`
	Role           domain.Role `json:"role"`
	ContentPreview string      `json:"content_preview"`
	SentAt         time.Time   `json:"sent_at"`
}

// NewMessageSent builds a MessageSent from a message, cutting the content
// to PreviewLength characters.
func NewMessageSent(c *domain.Conversation, m domain.Message) MessageSent {
	return MessageSent{ConversationKey: ConvKey(c), MessageID: m.ID, Role: m.Role,
		ContentPreview: domain.Preview(m.Content, PreviewLength), SentAt: m.CreatedAt}
}

// ConversationDataExtracted is raised when the facilitator's reply yields
// structured output for the component.
type ConversationDataExtracted struct {
	ConversationKey
	ExtractionSummary string    `json:"extraction_summary"`
	ItemCount         int       `json:"item_count"`
	ExtractedAt       time.Time `json:"extracted_at"`
}

func (ConversationStarted) EventType() string       { return TypeConversationStarted }
func (MessageSent) EventType() string               { return TypeMessageSent }
func (ConversationDataExtracted) EventType() string { return TypeConversationDataExtracted }
func (e ConversationKey) AggregateID() string       { return e.ConversationID.String() }
func (ConversationKey) AggregateType() string       { return AggregateConversation }

// --- Analysis (aggregate id = the cycle id) ---

// DominatedRef is one dominated alternative and its first dominator.
type DominatedRef struct {
	AlternativeID string `json:"alternative_id"`
	DominatedByID string `json:"dominated_by_id"`
}

// PughScoresComputed is raised when consequences complete.
type PughScoresComputed struct {
	SessionID             uuid.UUID      `json:"session_id"`
	CycleID               uuid.UUID      `json:"cycle_id"`
	AlternativeScores     map[string]int `json:"alternative_scores"`
	DominatedAlternatives []DominatedRef `json:"dominated_alternatives"`
	IrrelevantObjectives  []string       `json:"irrelevant_objectives"`
	BestAlternativeID     *string        `json:"best_alternative_id"`
	ComputedAt            time.Time      `json:"computed_at"`
}

// TensionSummary is one viable alternative's gains and losses.
type TensionSummary struct {
	AlternativeID string   `json:"alternative_id"`
	Gains         []string `json:"gains"`
	Losses        []string `json:"losses"`
}

// TradeoffsAnalyzed is raised when tradeoffs complete (computed from the
// consequences table).
type TradeoffsAnalyzed struct {
	SessionID       uuid.UUID        `json:"session_id"`
	CycleID         uuid.UUID        `json:"cycle_id"`
	DominatedCount  int              `json:"dominated_count"`
	IrrelevantCount int              `json:"irrelevant_count"`
	Tensions        []TensionSummary `json:"tension_summaries"`
	HasClearWinner  bool             `json:"has_clear_winner"`
	AnalyzedAt      time.Time        `json:"analyzed_at"`
}

// DQElementScore is one element in DQScoresComputed.
type DQElementScore struct {
	ElementName string `json:"element_name"`
	Score       int    `json:"score"`
	Priority    string `json:"priority"`
}

// DQScoresComputed is raised when decision_quality completes; overall is the
// minimum element score.
type DQScoresComputed struct {
	SessionID              uuid.UUID        `json:"session_id"`
	CycleID                uuid.UUID        `json:"cycle_id"`
	ElementScores          []DQElementScore `json:"element_scores"`
	OverallScore           int              `json:"overall_score"`
	WeakestElement         string           `json:"weakest_element"`
	Acceptable             bool             `json:"acceptable"`
	ImprovementSuggestions []string         `json:"improvement_suggestions"`
	ComputedAt             time.Time        `json:"computed_at"`
}

func (PughScoresComputed) EventType() string     { return TypePughScoresComputed }
func (TradeoffsAnalyzed) EventType() string      { return TypeTradeoffsAnalyzed }
func (DQScoresComputed) EventType() string       { return TypeDQScoresComputed }
func (e PughScoresComputed) AggregateID() string { return e.CycleID.String() }
func (e TradeoffsAnalyzed) AggregateID() string  { return e.CycleID.String() }
func (e DQScoresComputed) AggregateID() string   { return e.CycleID.String() }
func (PughScoresComputed) AggregateType() string { return AggregateAnalysis }
func (TradeoffsAnalyzed) AggregateType() string  { return AggregateAnalysis }
func (DQScoresComputed) AggregateType() string   { return AggregateAnalysis }

// Registry knows every Choice Sherpa event type.
var Registry = &eventbus.Registry{}

func register[T eventbus.DomainEvent]() {
	eventbus.MustRegister[T](Registry)
	eventbus.MustRegister[T](eventbus.DefaultRegistry)
}

func init() {
	register[SessionCreated]()
	register[SessionRenamed]()
	register[SessionArchived]()
	register[SessionCycleAdded]()
	register[CycleCreated]()
	register[CycleBranched]()
	register[ComponentStarted]()
	register[ComponentOutputUpdated]()
	register[ComponentCompleted]()
	register[ComponentMarkedForRevision]()
	register[CycleCompleted]()
	register[CycleArchived]()
	register[ConversationStarted]()
	register[MessageSent]()
	register[ConversationDataExtracted]()
	register[PughScoresComputed]()
	register[TradeoffsAnalyzed]()
	register[DQScoresComputed]()
}

// AllTypes lists every event type string.
var AllTypes = []string{
	TypeSessionCreated, TypeSessionRenamed, TypeSessionArchived, TypeSessionCycleAdded,
	TypeCycleCreated, TypeCycleBranched, TypeComponentStarted, TypeComponentOutputUpdated,
	TypeComponentCompleted, TypeComponentMarkedForRevision, TypeCycleCompleted, TypeCycleArchived,
	TypeConversationStarted, TypeMessageSent, TypeConversationDataExtracted,
	TypePughScoresComputed, TypeTradeoffsAnalyzed, TypeDQScoresComputed,
}
