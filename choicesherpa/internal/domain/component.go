package domain

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// ComponentType is one of the nine PrOACT steps.
type ComponentType string

// The nine component types, in order.
const (
	IssueRaising    ComponentType = "issue_raising"
	ProblemFrame    ComponentType = "problem_frame"
	Objectives      ComponentType = "objectives"
	Alternatives    ComponentType = "alternatives"
	Consequences    ComponentType = "consequences"
	Tradeoffs       ComponentType = "tradeoffs"
	Recommendation  ComponentType = "recommendation"
	DecisionQuality ComponentType = "decision_quality"
	NotesNextSteps  ComponentType = "notes_next_steps"
)

// ComponentOrder lists the nine types in PrOACT order.
var ComponentOrder = [...]ComponentType{
	IssueRaising, ProblemFrame, Objectives, Alternatives, Consequences,
	Tradeoffs, Recommendation, DecisionQuality, NotesNextSteps,
}

// RequiredComponents is how many components count for progress (all but
// notes_next_steps).
const RequiredComponents = 8

// Index returns t's position in ComponentOrder, or -1 for an unknown type.
func (t ComponentType) Index() int {
	for i, c := range ComponentOrder {
		if c == t {
			return i
		}
	}
	return -1
}

// Valid reports whether t is one of the nine types.
func (t ComponentType) Valid() bool { return t.Index() >= 0 }

// Required reports whether t counts for progress.
func (t ComponentType) Required() bool { return t.Valid() && t != NotesNextSteps }

// ParseComponentType validates s.
func ParseComponentType(s string) (ComponentType, error) {
	t := ComponentType(s)
	if !t.Valid() {
		return "", Validationf("invalid_component_type", "unknown component type %q", s)
	}
	return t, nil
}

// ComponentStatus is the state of one component.
type ComponentStatus string

// Component statuses.
const (
	NotStarted    ComponentStatus = "not_started"
	InProgress    ComponentStatus = "in_progress"
	Complete      ComponentStatus = "complete"
	NeedsRevision ComponentStatus = "needs_revision"
)

var componentTransitions = map[ComponentStatus][]ComponentStatus{
	NotStarted:    {InProgress},
	InProgress:    {Complete, NeedsRevision},
	Complete:      {NeedsRevision},
	NeedsRevision: {InProgress, Complete},
}

// CanTransitionTo reports whether s -> to is allowed.
func (s ComponentStatus) CanTransitionTo(to ComponentStatus) bool {
	for _, t := range componentTransitions[s] {
		if t == to {
			return true
		}
	}
	return false
}

// Started reports whether the component has ever been started.
func (s ComponentStatus) Started() bool { return s != NotStarted && s != "" }

// AcceptsOutput reports whether output may be updated in this status.
func (s ComponentStatus) AcceptsOutput() bool { return s == InProgress || s == NeedsRevision }

// Component is one PrOACT step of a cycle. Output is the step's JSON output
// (null until first set).
type Component struct {
	ID             uuid.UUID       `json:"id"`
	Type           ComponentType   `json:"component_type"`
	Status         ComponentStatus `json:"status"`
	Output         json.RawMessage `json:"output,omitempty"`
	RevisionReason string          `json:"revision_reason,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
}

func (c *Component) transition(to ComponentStatus, now time.Time) error {
	if !c.Status.CanTransitionTo(to) {
		return Conflictf("invalid_transition", "component %s cannot go from %s to %s", c.Type, c.Status, to)
	}
	c.Status = to
	c.UpdatedAt = now
	return nil
}

func (c Component) clone() Component {
	if c.Output != nil {
		c.Output = append(json.RawMessage(nil), c.Output...)
	}
	return c
}
