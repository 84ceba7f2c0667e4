package domain

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

func TestSessionRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		user    string
		title   string
		want    string
		wantErr error
	}{
		{"trimmed", "u1", "  Job offer  ", "Job offer", nil},
		{"empty", "u1", "   ", "", ErrValidation},
		{"max length", "u1", strings.Repeat("é", 500), strings.Repeat("é", 500), nil},
		{"too long", "u1", strings.Repeat("a", 501), "", ErrValidation},
		{"no user", "", "x", "", ErrValidation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSession(tc.user, tc.title, nil, t0)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, s.Title)
			require.Equal(t, SessionActive, s.Status)
			require.Empty(t, s.CycleIDs)
		})
	}
}

func TestSessionLifecycle(t *testing.T) {
	t.Parallel()
	s, err := NewSession("u1", "Old", ptr(" d "), t0)
	require.NoError(t, err)
	require.Equal(t, "d", *s.Description)

	require.NoError(t, s.Authorize("u1"))
	require.ErrorIs(t, s.Authorize("u2"), ErrForbidden)
	require.ErrorIs(t, s.Authorize(""), ErrForbidden)

	old, err := s.Rename(" New ", t0.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, "Old", old)
	require.Equal(t, "New", s.Title)
	_, err = s.Rename("", t0)
	require.ErrorIs(t, err, ErrValidation)

	c1, c2 := NewID(), NewID()
	added, root, err := s.AddCycle(c1, t0)
	require.NoError(t, err)
	require.True(t, added)
	require.True(t, root)
	added, root, err = s.AddCycle(c1, t0)
	require.NoError(t, err)
	require.False(t, added, "adding twice is a no-op")
	require.True(t, root)
	added, root, err = s.AddCycle(c2, t0)
	require.NoError(t, err)
	require.True(t, added)
	require.False(t, root)
	require.Len(t, s.CycleIDs, 2)

	require.NoError(t, s.Archive(t0))
	err = s.Archive(t0)
	require.ErrorIs(t, err, ErrConflict)
	require.Equal(t, "invalid_transition", CodeOf(err))
	_, err = s.Rename("x", t0)
	require.ErrorIs(t, err, ErrConflict)
	_, _, err = s.AddCycle(NewID(), t0)
	require.ErrorIs(t, err, ErrConflict)
}

func TestComponentOrder(t *testing.T) {
	t.Parallel()
	want := []string{"issue_raising", "problem_frame", "objectives", "alternatives", "consequences", "tradeoffs", "recommendation", "decision_quality", "notes_next_steps"}
	for i, ct := range ComponentOrder {
		require.Equal(t, want[i], string(ct))
		require.Equal(t, i, ct.Index())
		require.Equal(t, ct != NotesNextSteps, ct.Required())
	}
	_, err := ParseComponentType("bogus")
	require.ErrorIs(t, err, ErrValidation)
}

func TestComponentStatusTransitions(t *testing.T) {
	t.Parallel()
	all := []ComponentStatus{NotStarted, InProgress, Complete, NeedsRevision}
	allowed := map[[2]ComponentStatus]bool{
		{NotStarted, InProgress}: true, {InProgress, Complete}: true, {InProgress, NeedsRevision}: true,
		{Complete, NeedsRevision}: true, {NeedsRevision, InProgress}: true, {NeedsRevision, Complete}: true,
	}
	for _, from := range all {
		for _, to := range all {
			require.Equal(t, allowed[[2]ComponentStatus{from, to}], from.CanTransitionTo(to), "%s -> %s", from, to)
		}
	}
}

// Valid outputs used by the cycle tests.
var (
	altsOK  = json.RawMessage(`{"alternatives":[{"id":"a1","name":"Stay","description":"","is_status_quo":true},{"id":"a2","name":"Move","description":"","is_status_quo":false}],"status_quo_id":"a1"}`)
	objsOK  = json.RawMessage(`{"fundamental_objectives":[{"id":"o1","description":"Income"}],"means_objectives":[]}`)
	consOK  = json.RawMessage(`{"table":{"alternative_ids":["a1","a2"],"objective_ids":["o1"],"cells":{"a1:o1":{"rating":0,"rationale":""},"a2:o1":{"rating":2,"rationale":"more"}}}}`)
	dqOK    = dqOutput(80, 70, 90, 60, 85, 75, 95)
	emptyOK = json.RawMessage(`{}`)
)

func dqOutput(scores ...int) json.RawMessage {
	var o DecisionQualityOutput
	for i, s := range scores {
		o.Elements = append(o.Elements, DQElement{Name: DQElementNames[i], Score: s})
	}
	b, _ := json.Marshal(o)
	return b
}

func TestCompletionRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ct      ComponentType
		output  string
		wantErr error
	}{
		{"alternatives ok", Alternatives, string(altsOK), nil},
		{"alternatives one entry", Alternatives, `{"alternatives":[{"id":"a1","name":"Stay","is_status_quo":true}],"status_quo_id":"a1"}`, ErrValidation},
		{"alternatives missing status quo", Alternatives, `{"alternatives":[{"id":"a1","name":"A"},{"id":"a2","name":"B"}]}`, ErrValidation},
		{"alternatives status quo not among them", Alternatives, `{"alternatives":[{"id":"a1","name":"A"},{"id":"a2","name":"B"}],"status_quo_id":"zz"}`, ErrValidation},
		{"alternatives name too long", Alternatives, `{"alternatives":[{"id":"a1","name":"` + strings.Repeat("x", 101) + `"},{"id":"a2","name":"B"}],"status_quo_id":"a1"}`, ErrValidation},
		{"alternatives empty name", Alternatives, `{"alternatives":[{"id":"a1","name":""},{"id":"a2","name":"B"}],"status_quo_id":"a1"}`, ErrValidation},
		{"objectives ok", Objectives, string(objsOK), nil},
		{"objectives none", Objectives, `{"fundamental_objectives":[],"means_objectives":[{"id":"m","description":"x","supports":[]}]}`, ErrValidation},
		{"consequences ok", Consequences, string(consOK), nil},
		{"consequences missing cell", Consequences, `{"table":{"alternative_ids":["a1","a2"],"objective_ids":["o1"],"cells":{"a1:o1":{"rating":0}}}}`, ErrValidation},
		{"consequences rating out of range", Consequences, `{"table":{"alternative_ids":["a1","a2"],"objective_ids":["o1"],"cells":{"a1:o1":{"rating":0},"a2:o1":{"rating":3}}}}`, ErrValidation},
		{"consequences fractional rating", Consequences, `{"table":{"alternative_ids":["a1","a2"],"objective_ids":["o1"],"cells":{"a1:o1":{"rating":0},"a2:o1":{"rating":1.5}}}}`, ErrValidation},
		{"consequences nested shape rejected", Consequences, `{"table":{"alternative_ids":["a1","a2"],"objective_ids":["o1"],"cells":{"a1":{"o1":{"rating":0}}}}}`, ErrValidation},
		{"dq ok", DecisionQuality, string(dqOK), nil},
		{"dq six elements", DecisionQuality, string(dqOutput(1, 2, 3, 4, 5, 6)), ErrValidation},
		{"dq score above 100", DecisionQuality, string(dqOutput(101, 2, 3, 4, 5, 6, 7)), ErrValidation},
		{"dq negative score", DecisionQuality, string(dqOutput(-1, 2, 3, 4, 5, 6, 7)), ErrValidation},
		{"dq repeated element", DecisionQuality, `{"elements":[` + strings.Repeat(`{"name":"Clear Objectives","score":1},`, 6) + `{"name":"Clear Objectives","score":1}]}`, ErrValidation},
		{"no output", Alternatives, ``, ErrValidation},
		{"recommendation free form", Recommendation, `{"synthesis":"x"}`, nil},
		{"issue raising no output needed", IssueRaising, ``, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckCompletion(tc.ct, json.RawMessage(tc.output))
			if tc.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.wantErr)
			}
		})
	}
}

func TestValidateOutputRejectsNonObjects(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{`[]`, `"x"`, `12`, `{`, ``, `null`} {
		require.ErrorIs(t, ValidateOutput(IssueRaising, json.RawMessage(raw)), ErrValidation, raw)
	}
}

// startThrough starts every component up to and including last.
func startThrough(t *testing.T, c *Cycle, last ComponentType) {
	t.Helper()
	for _, ct := range ComponentOrder[:last.Index()+1] {
		_, err := c.StartComponent(ct, t0)
		require.NoError(t, err)
	}
}

func outputFor(ct ComponentType) json.RawMessage {
	switch ct {
	case Alternatives:
		return altsOK
	case Objectives:
		return objsOK
	case Consequences:
		return consOK
	case DecisionQuality:
		return dqOK
	}
	return emptyOK
}

func completeThrough(t *testing.T, c *Cycle, last ComponentType) {
	t.Helper()
	for _, ct := range ComponentOrder[:last.Index()+1] {
		if comp, _ := c.Component(ct); comp.Status == NotStarted {
			_, err := c.StartComponent(ct, t0)
			require.NoError(t, err)
		}
		_, err := c.UpdateOutput(ct, outputFor(ct), t0)
		require.NoError(t, err)
		_, err = c.CompleteComponent(ct, t0)
		require.NoError(t, err)
	}
}

func TestStartComponentPrerequisites(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(*Cycle)
		start   ComponentType
		wantErr string
	}{
		{"issue raising has no prerequisite", func(*Cycle) {}, IssueRaising, ""},
		{"previous not started", func(*Cycle) {}, ProblemFrame, "previous_component_required"},
		{"previous started is enough", func(c *Cycle) { _, _ = c.StartComponent(IssueRaising, t0) }, ProblemFrame, ""},
		{"already started", func(c *Cycle) { _, _ = c.StartComponent(IssueRaising, t0) }, IssueRaising, "component_already_started"},
		{"skip ahead", func(c *Cycle) { _, _ = c.StartComponent(IssueRaising, t0) }, Objectives, "previous_component_required"},
		{"completed cycle", func(c *Cycle) { c.Status = CycleCompleted }, IssueRaising, "cycle_not_active"},
		{"archived cycle", func(c *Cycle) { c.Status = CycleArchived }, IssueRaising, "cycle_not_active"},
		{"unknown type", func(*Cycle) {}, ComponentType("x"), "invalid_component_type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCycle(NewID(), t0)
			tc.setup(c)
			comp, err := c.StartComponent(tc.start, t0.Add(time.Minute))
			if tc.wantErr != "" {
				require.Error(t, err)
				require.Equal(t, tc.wantErr, CodeOf(err))
				return
			}
			require.NoError(t, err)
			require.Equal(t, InProgress, comp.Status)
			require.Equal(t, tc.start, c.CurrentStep)
		})
	}
}

func TestCycleComponentOperations(t *testing.T) {
	t.Parallel()
	c := NewCycle(NewID(), t0)
	require.Len(t, c.Components, 9)
	require.Equal(t, IssueRaising, c.CurrentStep)

	_, err := c.UpdateOutput(IssueRaising, emptyOK, t0)
	require.ErrorIs(t, err, ErrConflict, "not started does not accept output")
	_, err = c.CompleteComponent(IssueRaising, t0)
	require.ErrorIs(t, err, ErrConflict, "not_started -> complete is invalid")

	startThrough(t, c, Alternatives)
	_, err = c.CompleteComponent(Alternatives, t0)
	require.ErrorIs(t, err, ErrValidation, "completion rules apply")
	_, err = c.UpdateOutput(Alternatives, json.RawMessage(`{"alternatives":[{"id":"a1","name":"A"}],"status_quo_id":"a1"}`), t0)
	require.NoError(t, err, "partial output is accepted while in progress")
	_, err = c.CompleteComponent(Alternatives, t0)
	require.ErrorIs(t, err, ErrValidation)
	_, err = c.UpdateOutput(Alternatives, altsOK, t0)
	require.NoError(t, err)
	comp, err := c.CompleteComponent(Alternatives, t0)
	require.NoError(t, err)
	require.Equal(t, Complete, comp.Status)
	require.JSONEq(t, string(altsOK), string(comp.Output))

	_, err = c.UpdateOutput(Alternatives, altsOK, t0)
	require.ErrorIs(t, err, ErrConflict, "complete is locked")
	comp, err = c.MarkForRevision(Alternatives, "new idea", t0)
	require.NoError(t, err)
	require.Equal(t, NeedsRevision, comp.Status)
	require.Equal(t, "new idea", comp.RevisionReason)
	_, err = c.UpdateOutput(Alternatives, altsOK, t0)
	require.NoError(t, err, "needs_revision accepts output")
	_, err = c.MarkForRevision(Alternatives, "again", t0)
	require.ErrorIs(t, err, ErrConflict, "needs_revision -> needs_revision is invalid")
	_, err = c.CompleteComponent(Alternatives, t0)
	require.NoError(t, err, "needs_revision -> complete")
	_, err = c.MarkForRevision(Consequences, "x", t0)
	require.ErrorIs(t, err, ErrConflict, "not_started cannot be revised")
}

func TestProgress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		through ComponentType
		count   int
		percent int
	}{
		{IssueRaising, 1, 12},
		{ProblemFrame, 2, 25},
		{Objectives, 3, 37},
		{Recommendation, 7, 87},
		{DecisionQuality, 8, 100},
		{NotesNextSteps, 8, 100},
	}
	for _, tc := range tests {
		t.Run(string(tc.through), func(t *testing.T) {
			c := NewCycle(NewID(), t0)
			completeThrough(t, c, tc.through)
			p := c.Progress()
			require.Equal(t, tc.count, p.CompletedCount)
			require.Equal(t, 8, p.TotalCount)
			require.Equal(t, tc.percent, p.PercentComplete)
		})
	}
	require.Equal(t, 0, NewCycle(NewID(), t0).Progress().PercentComplete)
}

func TestCycleStatusTransitions(t *testing.T) {
	t.Parallel()
	c := NewCycle(NewID(), t0)
	require.Equal(t, "decision_quality_incomplete", CodeOf(c.Complete(t0)))
	completeThrough(t, c, DecisionQuality)
	require.NoError(t, c.Complete(t0))
	require.ErrorIs(t, c.Complete(t0), ErrConflict)
	_, err := c.StartComponent(NotesNextSteps, t0)
	require.ErrorIs(t, err, ErrConflict, "a completed cycle cannot change")
	require.NoError(t, c.Archive(t0))
	require.ErrorIs(t, c.Archive(t0), ErrConflict)

	a := NewCycle(NewID(), t0)
	require.NoError(t, a.Archive(t0), "active -> archived")
	require.ErrorIs(t, a.Complete(t0), ErrConflict, "archived -> completed")
}

func TestBranch(t *testing.T) {
	t.Parallel()
	parent := NewCycle(NewID(), t0)
	completeThrough(t, parent, Alternatives)
	_, err := parent.StartComponent(Consequences, t0)
	require.NoError(t, err)

	_, err = parent.Branch(Tradeoffs, nil, t0)
	require.Equal(t, "cannot_branch", CodeOf(err), "branch point must be started")

	label := "Try renting"
	child, err := parent.Branch(Alternatives, &label, t0.Add(time.Hour))
	require.NoError(t, err)
	require.NotEqual(t, parent.ID, child.ID)
	require.Equal(t, parent.SessionID, child.SessionID)
	require.Equal(t, parent.ID, *child.ParentCycleID)
	require.Equal(t, Alternatives, *child.BranchPoint)
	require.Equal(t, label, *child.BranchLabel)
	require.Equal(t, CycleActive, child.Status)
	require.Equal(t, Alternatives, child.CurrentStep)
	for i, comp := range child.Components {
		pc := parent.Components[i]
		require.NotEqual(t, pc.ID, comp.ID, "copied components get new ids")
		switch {
		case i < Alternatives.Index():
			require.Equal(t, pc.Status, comp.Status)
			require.JSONEq(t, string(pc.Output), string(comp.Output))
		case i == Alternatives.Index():
			require.Equal(t, NeedsRevision, comp.Status)
			require.Equal(t, BranchRevisionReason, comp.RevisionReason)
			require.JSONEq(t, string(altsOK), string(comp.Output), "ids inside outputs are kept")
		default:
			require.Equal(t, NotStarted, comp.Status)
			require.Nil(t, comp.Output)
		}
	}
	// The copy is deep: changing the child leaves the parent alone.
	child.Components[0].Output[1] = 'X'
	require.JSONEq(t, string(emptyOK), string(parent.Components[0].Output))

	parent.Status = CycleCompleted
	_, err = parent.Branch(IssueRaising, nil, t0)
	require.Equal(t, "cannot_branch", CodeOf(err))
	require.ErrorIs(t, err, ErrConflict)
}

func TestBranchAtInProgressAndNeedsRevision(t *testing.T) {
	t.Parallel()
	parent := NewCycle(NewID(), t0)
	startThrough(t, parent, ProblemFrame)
	child, err := parent.Branch(ProblemFrame, nil, t0)
	require.NoError(t, err)
	require.Equal(t, NeedsRevision, child.Components[1].Status)
	require.Equal(t, InProgress, child.Components[0].Status)

	_, err = parent.MarkForRevision(ProblemFrame, "mine", t0)
	require.NoError(t, err)
	child, err = parent.Branch(ProblemFrame, nil, t0)
	require.NoError(t, err)
	require.Equal(t, NeedsRevision, child.Components[1].Status)
	require.Equal(t, BranchRevisionReason, child.Components[1].RevisionReason, "DOMAIN.md: the branch point's reason is always \"Branched for exploration\"")
	require.Equal(t, "mine", parent.Components[1].RevisionReason, "the parent is untouched")
}

func TestConversation(t *testing.T) {
	t.Parallel()
	c, err := NewConversation(NewID(), NewID(), NewID(), Objectives, "prompt", t0)
	require.NoError(t, err)
	require.Equal(t, ConvReady, c.State)

	tests := []struct {
		role    Role
		content string
		wantErr error
	}{
		{RoleUser, "", ErrValidation},
		{RoleUser, "   \n", ErrValidation},
		{RoleUser, strings.Repeat("ü", MaxMessageLength), nil},
		{RoleUser, strings.Repeat("a", MaxMessageLength+1), ErrValidation},
		{Role("system"), "x", ErrValidation},
		{RoleAssistant, "hello", nil},
	}
	for _, tc := range tests {
		_, err := c.AddMessage(tc.role, tc.content, t0)
		if tc.wantErr != nil {
			require.ErrorIs(t, err, tc.wantErr)
		} else {
			require.NoError(t, err)
		}
	}
	require.Equal(t, ConvInProgress, c.State)
	require.Len(t, c.Messages, 2)
	require.Equal(t, 1, c.UserMessageCount())

	require.NoError(t, c.Confirm(t0))
	_, err = c.AddMessage(RoleUser, "change it", t0)
	require.NoError(t, err)
	require.Equal(t, ConvInProgress, c.State, "confirmed -> in_progress to revise")
	require.NoError(t, c.Complete(t0))
	_, err = c.AddMessage(RoleUser, "more", t0)
	require.ErrorIs(t, err, ErrConflict, "complete rejects new messages")
	require.ErrorIs(t, c.Confirm(t0), ErrConflict)

	_, err = NewConversation(NewID(), NewID(), NewID(), "nope", "", t0)
	require.ErrorIs(t, err, ErrValidation)
}

func TestConversationStates(t *testing.T) {
	t.Parallel()
	allowed := map[[2]ConversationState]bool{
		{ConvInitializing, ConvReady}: true, {ConvReady, ConvInProgress}: true, {ConvInProgress, ConvConfirmed}: true,
		{ConvConfirmed, ConvInProgress}: true, {ConvConfirmed, ConvComplete}: true, {ConvInProgress, ConvComplete}: true,
	}
	all := []ConversationState{ConvInitializing, ConvReady, ConvInProgress, ConvConfirmed, ConvComplete}
	for _, a := range all {
		for _, b := range all {
			require.Equal(t, allowed[[2]ConversationState{a, b}], a.CanTransitionTo(b), "%s -> %s", a, b)
		}
	}
}

func TestPreview(t *testing.T) {
	t.Parallel()
	require.Equal(t, "abc", Preview("abc", 100))
	long := strings.Repeat("é", 150)
	require.Equal(t, 100, len([]rune(Preview(long, 100))))
}

func TestNextPhase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		from   AgentPhase
		ct     ComponentType
		count  int
		latest string
		want   AgentPhase
	}{
		{"intro waits", PhaseIntro, IssueRaising, 0, "", PhaseIntro},
		{"intro to gather", PhaseIntro, IssueRaising, 1, "done", PhaseGather},
		{"gather stays", PhaseGather, IssueRaising, 2, "we have kids", PhaseGather},
		{"gather to extract by count", PhaseGather, IssueRaising, 3, "more", PhaseExtract},
		{"gather to extract by signal", PhaseGather, Consequences, 2, "That's all", PhaseExtract},
		{"gather to clarify", PhaseGather, Consequences, 2, "I'm NOT SURE", PhaseClarify},
		{"clarify back to gather", PhaseClarify, Consequences, 3, "ok", PhaseGather},
		{"clarify to extract", PhaseClarify, Consequences, 4, "ok", PhaseExtract},
		{"extract to confirm", PhaseExtract, Objectives, 3, "anything", PhaseConfirm},
		{"confirm stays on approval", PhaseConfirm, Objectives, 4, "looks good", PhaseConfirm},
		{"confirm to gather on change", PhaseConfirm, Objectives, 4, "that's wrong", PhaseGather},
		{"notes needs one message", PhaseGather, NotesNextSteps, 1, "x", PhaseExtract},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, NextPhase(tc.from, tc.ct, tc.count, tc.latest))
		})
	}
	require.True(t, IsApproval("Yes, looks good"))
	require.False(t, IsApproval("no, that's wrong"))
}

func TestErrorKinds(t *testing.T) {
	t.Parallel()
	for kind, err := range map[error]error{
		ErrValidation: Validationf("c", "m"), ErrConflict: Conflictf("c", "m"),
		ErrNotFound: NotFoundf("c", "m"), ErrForbidden: Forbiddenf("c", "m"),
	} {
		require.ErrorIs(t, err, kind)
		var de *Error
		require.True(t, errors.As(err, &de))
		require.Equal(t, "c", de.Code)
	}
}
