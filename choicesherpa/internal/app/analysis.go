package app

import (
	"encoding/json"
	"time"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/analysis"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/events"
)

func dqOf(o domain.DecisionQualityOutput) analysis.DQResult {
	return analysis.DecisionQuality(o.Elements)
}

func matrixOf(c *domain.Cycle) (analysis.Matrix, bool) {
	comp, _ := c.Component(domain.Consequences)
	var o domain.ConsequencesOutput
	if len(comp.Output) == 0 || json.Unmarshal(comp.Output, &o) != nil {
		return analysis.Matrix{}, false
	}
	m, err := analysis.FromTable(o.Table)
	return m, err == nil
}

// PughEvent computes the Pugh analysis of c's consequences table.
func PughEvent(c *domain.Cycle, now time.Time) (events.PughScoresComputed, bool) {
	m, ok := matrixOf(c)
	if !ok {
		return events.PughScoresComputed{}, false
	}
	scores := analysis.PughScores(m)
	ev := events.PughScoresComputed{SessionID: c.SessionID, CycleID: c.ID, AlternativeScores: scores,
		DominatedAlternatives: []events.DominatedRef{}, IrrelevantObjectives: []string{}, ComputedAt: now}
	for _, d := range analysis.FindDominated(m) {
		ev.DominatedAlternatives = append(ev.DominatedAlternatives, events.DominatedRef{AlternativeID: d.AlternativeID, DominatedByID: d.DominatedByID})
	}
	for _, i := range analysis.FindIrrelevant(m) {
		ev.IrrelevantObjectives = append(ev.IrrelevantObjectives, i.ObjectiveID)
	}
	if best, ok := analysis.BestAlternative(m.Alternatives, scores); ok {
		ev.BestAlternativeID = &best
	}
	return ev, true
}

// TradeoffsEvent computes the tradeoff analysis of c's consequences table.
func TradeoffsEvent(c *domain.Cycle, now time.Time) (events.TradeoffsAnalyzed, bool) {
	m, ok := matrixOf(c)
	if !ok {
		return events.TradeoffsAnalyzed{}, false
	}
	r := analysis.TradeoffTensions(m)
	ev := events.TradeoffsAnalyzed{SessionID: c.SessionID, CycleID: c.ID, DominatedCount: len(r.Dominated),
		IrrelevantCount: len(r.Irrelevant), Tensions: []events.TensionSummary{}, HasClearWinner: r.HasClearWinner, AnalyzedAt: now}
	for _, t := range r.Tensions {
		ev.Tensions = append(ev.Tensions, events.TensionSummary{AlternativeID: t.AlternativeID, Gains: t.Gains, Losses: t.Losses})
	}
	return ev, true
}

// DQEvent computes the Decision Quality analysis of c's DQ output.
func DQEvent(c *domain.Cycle, now time.Time) (events.DQScoresComputed, bool) {
	comp, _ := c.Component(domain.DecisionQuality)
	var o domain.DecisionQualityOutput
	if len(comp.Output) == 0 || json.Unmarshal(comp.Output, &o) != nil {
		return events.DQScoresComputed{}, false
	}
	r := dqOf(o)
	ev := events.DQScoresComputed{SessionID: c.SessionID, CycleID: c.ID, ElementScores: []events.DQElementScore{},
		OverallScore: r.Overall, WeakestElement: r.Weakest, Acceptable: r.Acceptable, ImprovementSuggestions: r.Suggestions, ComputedAt: now}
	for _, e := range r.Elements {
		ev.ElementScores = append(ev.ElementScores, events.DQElementScore{ElementName: e.ElementName, Score: e.Score, Priority: string(e.Priority)})
	}
	return ev, true
}
