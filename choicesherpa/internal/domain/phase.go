package domain

import "strings"

// AgentPhase is where the facilitator is in a component's conversation.
type AgentPhase string

// Agent phases.
const (
	PhaseIntro   AgentPhase = "intro"
	PhaseGather  AgentPhase = "gather"
	PhaseClarify AgentPhase = "clarify"
	PhaseExtract AgentPhase = "extract"
	PhaseConfirm AgentPhase = "confirm"
)

// MinMessagesForExtraction is how many user messages each component needs
// before the engine moves to extraction without a completion signal.
var MinMessagesForExtraction = map[ComponentType]int{
	IssueRaising: 3, ProblemFrame: 2, Objectives: 2, Alternatives: 2, Consequences: 4,
	Tradeoffs: 3, Recommendation: 2, DecisionQuality: 3, NotesNextSteps: 1,
}

// Phase-engine word lists (case-insensitive substring matches).
var (
	CompletionSignals = []string{"done", "that's all", "that's it", "nothing else", "no more", "ready"}
	ClarifyTriggers   = []string{"?", "not sure", "maybe", "unclear", "confused"}
	ChangeRequests    = []string{"change", "modify", "update", "wrong", "incorrect", "fix", "revise", "edit", "no, ", "not quite", "that's not"}
	ApprovalWords     = []string{"looks good", "that's right", "correct", "yes", "approve", "confirm", "perfect", "good", "okay"}
)

func containsAny(s string, words []string) bool {
	s = strings.ToLower(s)
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// IsApproval reports whether msg approves an extraction.
func IsApproval(msg string) bool {
	return containsAny(msg, ApprovalWords) && !containsAny(msg, ChangeRequests)
}

// NextPhase is the phase engine: given the current phase, the component,
// the number of user messages so far (including latest) and the latest user
// message, it returns the next phase. One step per user message:
// intro -> gather after a user message; gather -> extract when the count
// reaches the component's minimum or the message signals completion, ->
// clarify on a clarify trigger, else stays; clarify -> extract on the same
// condition, else gather; extract -> confirm; confirm -> gather on a change
// request, else stays.
func NextPhase(p AgentPhase, t ComponentType, userMessages int, latest string) AgentPhase {
	ready := userMessages >= MinMessagesForExtraction[t] || containsAny(latest, CompletionSignals)
	switch p {
	case PhaseIntro, "":
		if userMessages >= 1 {
			return PhaseGather
		}
		return PhaseIntro
	case PhaseGather:
		switch {
		case ready:
			return PhaseExtract
		case containsAny(latest, ClarifyTriggers):
			return PhaseClarify
		default:
			return PhaseGather
		}
	case PhaseClarify:
		if ready {
			return PhaseExtract
		}
		return PhaseGather
	case PhaseExtract:
		return PhaseConfirm
	case PhaseConfirm:
		if containsAny(latest, ChangeRequests) {
			return PhaseGather
		}
		return PhaseConfirm
	}
	return p
}
