package ai

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
)

type guide struct {
	name      string
	purpose   string
	questions []string
	syntax    string
}

var guides = map[domain.ComponentType]guide{
	domain.IssueRaising: {"Issue Raising", "surface what is on your mind: decisions, objectives, uncertainties and considerations",
		[]string{"What is going on that makes you think a decision is needed?", "What decisions do you see in front of you, and what worries you about them?", "Anything else: uncertainties or considerations we should write down?"},
		"decision: ... / objective: ... / uncertainty: ... / consideration: ..."},
	domain.ProblemFrame: {"Problem Frame", "frame the focal decision: who decides, what exactly, and within which limits",
		[]string{"Who makes this decision, and what is the focal decision in one sentence?", "What constraints, scope or other parties matter?"},
		"decision_maker: Name (role) / focal_decision: ... / scope: ... / constraint: ... / party: Name (role)"},
	domain.Objectives: {"Objectives", "find what really matters: fundamental objectives and the means that serve them",
		[]string{"What do you ultimately want from this decision?", "How would you measure each of those, and what helps achieve them?"},
		"fundamental: description | measure / means: description"},
	domain.Alternatives: {"Alternatives", "list creative alternatives, including the status quo",
		[]string{"What options do you have, including doing nothing (the status quo)?", "Can you think of one more, maybe a hybrid?"},
		"alternative: Name | description / status quo: Name | description"},
	domain.Consequences: {"Consequences", "rate each alternative on each objective relative to the status quo (-2..+2)",
		[]string{"How does each alternative do on your first objective compared with the status quo?", "And on the other objectives?", "Where are you least certain?", "Anything to adjust before we fill the table?"},
		"rating: Alternative / Objective = +1 | rationale"},
	domain.Tradeoffs: {"Tradeoffs", "see which alternatives are dominated and what each remaining one gains and loses",
		[]string{"Looking at the table, which trade-off feels hardest?", "Is any alternative clearly worse than another?", "What would you give up to get more of what matters most?"},
		"note: ..."},
	domain.Recommendation: {"Recommendation", "synthesise the analysis without deciding for you",
		[]string{"Which alternative stands out to you, and why?", "What caveats or open points remain?"},
		"standout: Alternative | rationale / synthesis: ... / caveat: ..."},
	domain.DecisionQuality: {"Decision Quality", "score the seven elements of decision quality from 0 to 100",
		[]string{"How helpful is the problem frame, and how clear are the objectives (0-100)?", "How creative were the alternatives and how reliable is the information?", "How sound is the reasoning, how clear the trade-offs, how strong your commitment?"},
		"Helpful Problem Frame: 80 | rationale | improvement path (one line per element)"},
	domain.NotesNextSteps: {"Notes & Next Steps", "write down next steps and open questions",
		[]string{"What are your next steps, and what questions remain open?"},
		"action: ... / question: ... / note: ..."},
}

// DisplayName returns a component's human name.
func DisplayName(t domain.ComponentType) string { return guides[t].name }

// Questions returns the questions the facilitator asks for t, in order.
func Questions(t domain.ComponentType) []string { return append([]string(nil), guides[t].questions...) }

// AnswerSyntax documents the line syntax the offline facilitator extracts
// structured output from.
func AnswerSyntax(t domain.ComponentType) string { return guides[t].syntax }

// OpeningPrompt is the system prompt of t's conversation.
func OpeningPrompt(t domain.ComponentType) string {
	g := guides[t]
	return fmt.Sprintf("You are Choice Sherpa, a decision facilitator using the PrOACT method. "+
		"This step is %s: help the user %s. Ask one question at a time, never decide for the user. "+
		"When you have enough, reply with a short summary and the structured output as a fenced ```json block.", g.name, g.purpose)
}

// OpeningMessage is what the facilitator says first.
func OpeningMessage(t domain.ComponentType) string {
	g := guides[t]
	return fmt.Sprintf("Let's work on %s: we will %s. %s", g.name, g.purpose, g.questions[0])
}

// RenderContext appends the other components' outputs to a system prompt,
// for text providers.
func RenderContext(prompt string, ctx map[domain.ComponentType]json.RawMessage) string {
	var b strings.Builder
	b.WriteString(prompt)
	for _, t := range domain.ComponentOrder {
		if out, ok := ctx[t]; ok && len(out) > 0 {
			fmt.Fprintf(&b, "\n\n%s so far: %s", DisplayName(t), out)
		}
	}
	return b.String()
}
