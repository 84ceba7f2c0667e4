// Package analysis holds the pure PrOACT analysis functions of DOMAIN.md:
// Pugh scores, best alternative, dominance, irrelevant objectives, tradeoff
// tensions and Decision Quality. They are deterministic and have no side
// effects; results are ordered by the input's alternative / objective order
// (never by map iteration).
package analysis

import (
	"fmt"
	"sort"
	"strings"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
)

// Matrix is a consequences table reduced to what the analysis needs.
type Matrix struct {
	Alternatives []string
	Objectives   []string
	// Ratings holds the cells keyed "alt:obj"; a missing cell counts as 0.
	Ratings map[string]int
}

// FromTable builds a Matrix, rejecting ratings outside -2..2.
func FromTable(t domain.ConsequencesTable) (Matrix, error) {
	m := Matrix{Alternatives: t.AlternativeIDs, Objectives: t.ObjectiveIDs, Ratings: make(map[string]int, len(t.Cells))}
	for k, c := range t.Cells {
		if c.Rating < domain.MinRating || c.Rating > domain.MaxRating {
			return Matrix{}, domain.Validationf("invalid_rating", "rating of cell %q must be between -2 and 2", k)
		}
		m.Ratings[k] = c.Rating
	}
	return m, nil
}

func (m Matrix) rating(a, o string) int { return m.Ratings[domain.CellKey(a, o)] }

// PughScores returns each alternative's sum of ratings over all objectives
// (missing cells 0, no weights).
func PughScores(m Matrix) map[string]int {
	out := make(map[string]int, len(m.Alternatives))
	for _, a := range m.Alternatives {
		s := 0
		for _, o := range m.Objectives {
			s += m.rating(a, o)
		}
		out[a] = s
	}
	return out
}

// BestAlternative returns the alternative with the unique highest score; a
// tie at the top (or no alternatives) gives ok=false.
func BestAlternative(alternatives []string, scores map[string]int) (best string, ok bool) {
	tied := false
	for i, a := range alternatives {
		switch {
		case i == 0 || scores[a] > scores[best]:
			best, tied = a, false
		case scores[a] == scores[best]:
			tied = true
		}
	}
	if len(alternatives) == 0 || tied {
		return "", false
	}
	return best, true
}

// Dominated is one dominated alternative and its first dominator.
type Dominated struct {
	AlternativeID string   `json:"alternative_id"`
	DominatedByID string   `json:"dominated_by_id"`
	StrictlyOn    []string `json:"strictly_better_on"`
	Explanation   string   `json:"explanation"`
}

// dominates reports whether a is at least as good as b on every objective
// and strictly better on one, with the objectives where it is strictly better.
func (m Matrix) dominates(a, b string) (bool, []string) {
	var strict []string
	for _, o := range m.Objectives {
		ra, rb := m.rating(a, o), m.rating(b, o)
		if ra < rb {
			return false, nil
		}
		if ra > rb {
			strict = append(strict, o)
		}
	}
	return len(strict) > 0, strict
}

// FindDominated reports, for every dominated alternative in order, the first
// dominator in alternative order. It needs >= 2 alternatives.
func FindDominated(m Matrix) []Dominated {
	out := []Dominated{}
	if len(m.Alternatives) < 2 {
		return out
	}
	for _, b := range m.Alternatives {
		for _, a := range m.Alternatives {
			if a == b {
				continue
			}
			if ok, strict := m.dominates(a, b); ok {
				out = append(out, Dominated{
					AlternativeID: b, DominatedByID: a, StrictlyOn: strict,
					Explanation: fmt.Sprintf("%s is at least as good on all objectives and strictly better on: %s", a, strings.Join(strict, ", ")),
				})
				break
			}
		}
	}
	return out
}

// Irrelevant is an objective on which every alternative has the same rating.
type Irrelevant struct {
	ObjectiveID   string `json:"objective_id"`
	UniformRating int    `json:"uniform_rating"`
	Reason        string `json:"reason"`
}

// FindIrrelevant returns the objectives, in order, on which every alternative
// has the same rating (missing = 0). It needs >= 2 alternatives.
func FindIrrelevant(m Matrix) []Irrelevant {
	out := []Irrelevant{}
	if len(m.Alternatives) < 2 {
		return out
	}
	for _, o := range m.Objectives {
		first := m.rating(m.Alternatives[0], o)
		same := true
		for _, a := range m.Alternatives[1:] {
			if m.rating(a, o) != first {
				same = false
				break
			}
		}
		if same {
			out = append(out, Irrelevant{ObjectiveID: o, UniformRating: first, Reason: "All alternatives have the same rating"})
		}
	}
	return out
}

// Tension is what one viable alternative gains and loses against the others.
type Tension struct {
	AlternativeID string   `json:"alternative_id"`
	Gains         []string `json:"gains"`
	Losses        []string `json:"losses"`
}

// Tradeoffs is the result of TradeoffTensions.
type Tradeoffs struct {
	Dominated      []Dominated  `json:"dominated"`
	Irrelevant     []Irrelevant `json:"irrelevant"`
	Tensions       []Tension    `json:"tensions"`
	HasClearWinner bool         `json:"has_clear_winner"`
}

// TradeoffTensions computes tensions over the non-dominated (viable)
// alternatives: gains are the objectives where X beats some other viable
// alternative, losses where some other viable alternative beats X. No viable
// alternative gives no tension; exactly one gives one tension with no gains
// and losses. A clear winner has gains and no losses.
func TradeoffTensions(m Matrix) Tradeoffs {
	res := Tradeoffs{Dominated: FindDominated(m), Irrelevant: FindIrrelevant(m), Tensions: []Tension{}}
	dominated := map[string]bool{}
	for _, d := range res.Dominated {
		dominated[d.AlternativeID] = true
	}
	var viable []string
	for _, a := range m.Alternatives {
		if !dominated[a] {
			viable = append(viable, a)
		}
	}
	for _, x := range viable {
		t := Tension{AlternativeID: x, Gains: []string{}, Losses: []string{}}
		if len(viable) > 1 {
			for _, o := range m.Objectives {
				gain, loss := false, false
				for _, y := range viable {
					if y == x {
						continue
					}
					gain = gain || m.rating(x, o) > m.rating(y, o)
					loss = loss || m.rating(x, o) < m.rating(y, o)
				}
				if gain {
					t.Gains = append(t.Gains, o)
				}
				if loss {
					t.Losses = append(t.Losses, o)
				}
			}
		}
		if len(t.Gains) > 0 && len(t.Losses) == 0 {
			res.HasClearWinner = true
		}
		res.Tensions = append(res.Tensions, t)
	}
	return res
}

// DQAcceptableThreshold is the score every element needs for an acceptable decision.
const DQAcceptableThreshold = 80

// Priority is how urgently a DQ element needs work.
type Priority string

// Priorities by score band.
const (
	PriorityCritical Priority = "critical" // 0-30
	PriorityHigh     Priority = "high"     // 31-50
	PriorityMedium   Priority = "medium"   // 51-70
	PriorityLow      Priority = "low"      // 71-100
)

// PriorityFor returns the band of score.
func PriorityFor(score int) Priority {
	switch {
	case score <= 30:
		return PriorityCritical
	case score <= 50:
		return PriorityHigh
	case score <= 70:
		return PriorityMedium
	default:
		return PriorityLow
	}
}

// ElementScore is one scored DQ element with its priority.
type ElementScore struct {
	ElementName string   `json:"element_name"`
	Score       int      `json:"score"`
	Priority    Priority `json:"priority"`
}

// DQResult is the Decision Quality analysis.
type DQResult struct {
	Elements []ElementScore `json:"element_scores"`
	// Overall is the minimum element score (never the average); 0 without elements.
	Overall int `json:"overall_score"`
	// Weakest is the first element with the minimum score ("" without elements).
	Weakest     string   `json:"weakest_element"`
	Acceptable  bool     `json:"acceptable"`
	Suggestions []string `json:"improvement_suggestions"`
}

// DecisionQuality scores elements: overall = min, acceptable = non-empty
// and all >= 80, suggestions for the elements below 80, lowest first (ties
// keep input order), from improvement_path or "Improve {name} (currently at
// {score}%)".
func DecisionQuality(elements []domain.DQElement) DQResult {
	res := DQResult{Elements: []ElementScore{}, Suggestions: []string{}, Acceptable: len(elements) > 0}
	for i, e := range elements {
		res.Elements = append(res.Elements, ElementScore{ElementName: e.Name, Score: e.Score, Priority: PriorityFor(e.Score)})
		if i == 0 || e.Score < res.Overall {
			res.Overall, res.Weakest = e.Score, e.Name
		}
		if e.Score < DQAcceptableThreshold {
			res.Acceptable = false
		}
	}
	low := make([]domain.DQElement, 0, len(elements))
	for _, e := range elements {
		if e.Score < DQAcceptableThreshold {
			low = append(low, e)
		}
	}
	sort.SliceStable(low, func(i, j int) bool { return low[i].Score < low[j].Score })
	for _, e := range low {
		s := e.ImprovementPath
		if strings.TrimSpace(s) == "" {
			s = fmt.Sprintf("Improve %s (currently at %d%%)", e.Name, e.Score)
		}
		res.Suggestions = append(res.Suggestions, s)
	}
	return res
}
