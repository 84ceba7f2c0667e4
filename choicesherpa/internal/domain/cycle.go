package domain

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// BranchRevisionReason is the revision reason of a branch point in the child cycle.
const BranchRevisionReason = "Branched for exploration"

// CycleStatus is active, completed or archived.
type CycleStatus string

// Cycle statuses.
const (
	CycleActive    CycleStatus = "active"
	CycleCompleted CycleStatus = "completed"
	CycleArchived  CycleStatus = "archived"
)

// Cycle is one pass through PrOACT. It owns its nine components, always
// present and in ComponentOrder.
type Cycle struct {
	ID            uuid.UUID      `json:"id"`
	SessionID     uuid.UUID      `json:"session_id"`
	ParentCycleID *uuid.UUID     `json:"parent_cycle_id,omitempty"`
	BranchPoint   *ComponentType `json:"branch_point,omitempty"`
	BranchLabel   *string        `json:"branch_label,omitempty"`
	Status        CycleStatus    `json:"status"`
	CurrentStep   ComponentType  `json:"current_step"`
	Components    []Component    `json:"components"`
	CreatedAt     time.Time      `json:"created_at"`
	UpdatedAt     time.Time      `json:"updated_at"`
}

// Progress summarises the required components.
type Progress struct {
	CompletedCount  int           `json:"completed_count"`
	TotalCount      int           `json:"total_count"`
	PercentComplete int           `json:"percent_complete"`
	CurrentStep     ComponentType `json:"current_step"`
}

// NewCycle builds an active cycle of session with nine fresh components.
func NewCycle(sessionID uuid.UUID, now time.Time) *Cycle {
	c := &Cycle{
		ID: NewID(), SessionID: sessionID, Status: CycleActive, CurrentStep: IssueRaising,
		CreatedAt: now, UpdatedAt: now,
	}
	c.Components = make([]Component, len(ComponentOrder))
	for i, t := range ComponentOrder {
		c.Components[i] = Component{ID: NewID(), Type: t, Status: NotStarted, CreatedAt: now, UpdatedAt: now}
	}
	return c
}

// Component returns the component of type t.
func (c *Cycle) Component(t ComponentType) (*Component, error) {
	i := t.Index()
	if i < 0 || i >= len(c.Components) {
		return nil, Validationf("invalid_component_type", "unknown component type %q", t)
	}
	return &c.Components[i], nil
}

// ComponentByID returns the component with id.
func (c *Cycle) ComponentByID(id uuid.UUID) (*Component, bool) {
	for i := range c.Components {
		if c.Components[i].ID == id {
			return &c.Components[i], true
		}
	}
	return nil, false
}

func (c *Cycle) ensureActive() error {
	if c.Status != CycleActive {
		return Conflictf("cycle_not_active", "cycle %s is %s", c.ID, c.Status)
	}
	return nil
}

// StartComponent moves t from not_started to in_progress. The cycle must be
// active and the previous component started (issue_raising has no
// prerequisite). It sets the current step.
func (c *Cycle) StartComponent(t ComponentType, now time.Time) (*Component, error) {
	if err := c.ensureActive(); err != nil {
		return nil, err
	}
	comp, err := c.Component(t)
	if err != nil {
		return nil, err
	}
	if comp.Status != NotStarted {
		return nil, Conflictf("component_already_started", "component %s is already started", t)
	}
	if i := t.Index(); i > 0 && !c.Components[i-1].Status.Started() {
		return nil, Conflictf("previous_component_required", "component %s must be started before %s", ComponentOrder[i-1], t)
	}
	if err := comp.transition(InProgress, now); err != nil {
		return nil, err
	}
	c.CurrentStep = t
	c.UpdatedAt = now
	return comp, nil
}

// UpdateOutput replaces t's output. The component must accept output
// (in_progress or needs_revision) and output must be a JSON object that
// decodes into t's schema (ValidateOutput).
func (c *Cycle) UpdateOutput(t ComponentType, output json.RawMessage, now time.Time) (*Component, error) {
	if err := c.ensureActive(); err != nil {
		return nil, err
	}
	comp, err := c.Component(t)
	if err != nil {
		return nil, err
	}
	if !comp.Status.AcceptsOutput() {
		return nil, Conflictf("output_not_accepted", "component %s does not accept output while %s", t, comp.Status)
	}
	if err := ValidateOutput(t, output); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, output); err != nil {
		return nil, Validationf("invalid_output", "output is not valid JSON")
	}
	comp.Output = buf.Bytes()
	comp.UpdatedAt = now
	c.UpdatedAt = now
	return comp, nil
}

// CompleteComponent moves t to complete after checking its completion rules.
func (c *Cycle) CompleteComponent(t ComponentType, now time.Time) (*Component, error) {
	if err := c.ensureActive(); err != nil {
		return nil, err
	}
	comp, err := c.Component(t)
	if err != nil {
		return nil, err
	}
	if !comp.Status.CanTransitionTo(Complete) {
		return nil, Conflictf("invalid_transition", "component %s cannot go from %s to complete", t, comp.Status)
	}
	if err := CheckCompletion(t, comp.Output); err != nil {
		return nil, err
	}
	if err := comp.transition(Complete, now); err != nil {
		return nil, err
	}
	comp.RevisionReason = ""
	c.UpdatedAt = now
	return comp, nil
}

// MarkForRevision moves t (in_progress or complete) to needs_revision with
// reason and makes it the current step.
func (c *Cycle) MarkForRevision(t ComponentType, reason string, now time.Time) (*Component, error) {
	if err := c.ensureActive(); err != nil {
		return nil, err
	}
	comp, err := c.Component(t)
	if err != nil {
		return nil, err
	}
	if err := comp.transition(NeedsRevision, now); err != nil {
		return nil, err
	}
	comp.RevisionReason = reason
	c.CurrentStep = t
	c.UpdatedAt = now
	return comp, nil
}

// Progress counts the complete required components; percent uses integer
// division over 8.
func (c *Cycle) Progress() Progress {
	n := 0
	for _, comp := range c.Components {
		if comp.Type.Required() && comp.Status == Complete {
			n++
		}
	}
	return Progress{CompletedCount: n, TotalCount: RequiredComponents, PercentComplete: n * 100 / RequiredComponents, CurrentStep: c.CurrentStep}
}

// Complete moves active -> completed; decision_quality must be complete.
func (c *Cycle) Complete(now time.Time) error {
	if c.Status != CycleActive {
		return Conflictf("invalid_transition", "cycle cannot go from %s to completed", c.Status)
	}
	if dq, _ := c.Component(DecisionQuality); dq.Status != Complete {
		return Conflictf("decision_quality_incomplete", "decision_quality must be complete before the cycle")
	}
	c.Status = CycleCompleted
	c.UpdatedAt = now
	return nil
}

// Archive moves active or completed -> archived.
func (c *Cycle) Archive(now time.Time) error {
	if c.Status != CycleActive && c.Status != CycleCompleted {
		return Conflictf("invalid_transition", "cycle cannot go from %s to archived", c.Status)
	}
	c.Status = CycleArchived
	c.UpdatedAt = now
	return nil
}

// Branch creates a child cycle at component at (see DOMAIN.md): the parent
// must be active and at started. Earlier components are copied as they are,
// at is copied and set to needs_revision, later ones start fresh. Every
// component of the child gets a new id; ids inside outputs are kept.
func (c *Cycle) Branch(at ComponentType, label *string, now time.Time) (*Cycle, error) {
	if err := c.ensureActive(); err != nil {
		return nil, Conflictf("cannot_branch", "cannot branch: cycle %s is %s", c.ID, c.Status)
	}
	src, err := c.Component(at)
	if err != nil {
		return nil, err
	}
	if !src.Status.Started() {
		return nil, Conflictf("cannot_branch", "cannot branch at %s: component not started", at)
	}
	parent := c.ID
	point := at
	child := &Cycle{
		ID: NewID(), SessionID: c.SessionID, ParentCycleID: &parent, BranchPoint: &point,
		Status: CycleActive, CurrentStep: at, CreatedAt: now, UpdatedAt: now,
	}
	if label != nil {
		l := *label
		child.BranchLabel = &l
	}
	child.Components = make([]Component, len(ComponentOrder))
	atIdx := at.Index()
	for i, t := range ComponentOrder {
		switch {
		case i < atIdx:
			cp := c.Components[i].clone()
			cp.ID = NewID()
			child.Components[i] = cp
		case i == atIdx:
			cp := c.Components[i].clone()
			cp.ID = NewID()
			cp.UpdatedAt = now
			// Always the branch reason, even if the parent's copy was
			// already needs_revision: the child reopens it for exploration.
			cp.Status = NeedsRevision
			cp.RevisionReason = BranchRevisionReason
			child.Components[i] = cp
		default:
			child.Components[i] = Component{ID: NewID(), Type: t, Status: NotStarted, CreatedAt: now, UpdatedAt: now}
		}
	}
	return child, nil
}

// Clone returns a deep copy.
func (c *Cycle) Clone() *Cycle {
	cp := *c
	if c.ParentCycleID != nil {
		p := *c.ParentCycleID
		cp.ParentCycleID = &p
	}
	if c.BranchPoint != nil {
		b := *c.BranchPoint
		cp.BranchPoint = &b
	}
	if c.BranchLabel != nil {
		l := *c.BranchLabel
		cp.BranchLabel = &l
	}
	cp.Components = make([]Component, len(c.Components))
	for i := range c.Components {
		cp.Components[i] = c.Components[i].clone()
	}
	return &cp
}
