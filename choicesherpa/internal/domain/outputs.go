package domain

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// Output shapes of the components the rules and the analysis read (JSON,
// snake_case, see DOMAIN.md). Other components' outputs are stored as given.

// Alternative is one option of the alternatives output.
type Alternative struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	IsStatusQuo bool   `json:"is_status_quo"`
}

// AlternativesOutput is the alternatives component output.
type AlternativesOutput struct {
	Alternatives []Alternative `json:"alternatives"`
	StatusQuoID  string        `json:"status_quo_id"`
}

// FundamentalObjective is what really matters to the decision maker.
type FundamentalObjective struct {
	ID          string          `json:"id"`
	Description string          `json:"description"`
	Measure     json.RawMessage `json:"measure,omitempty"`
}

// MeansObjective supports fundamental objectives.
type MeansObjective struct {
	ID          string   `json:"id"`
	Description string   `json:"description"`
	Supports    []string `json:"supports"`
}

// ObjectivesOutput is the objectives component output.
type ObjectivesOutput struct {
	FundamentalObjectives []FundamentalObjective `json:"fundamental_objectives"`
	MeansObjectives       []MeansObjective       `json:"means_objectives"`
}

// Rating bounds (relative to the status quo).
const (
	MinRating = -2
	MaxRating = 2
)

// Cell is one alternative x objective rating.
type Cell struct {
	Rating      int             `json:"rating"`
	Rationale   string          `json:"rationale"`
	Uncertainty json.RawMessage `json:"uncertainty,omitempty"`
}

// ConsequencesTable is the flat-key consequences table: cells are keyed
// "<alternative id>:<objective id>".
type ConsequencesTable struct {
	AlternativeIDs []string        `json:"alternative_ids"`
	ObjectiveIDs   []string        `json:"objective_ids"`
	Cells          map[string]Cell `json:"cells"`
}

// CellKey returns the key of the cell of alternative a and objective o.
func CellKey(a, o string) string { return a + ":" + o }

// ConsequencesOutput is the consequences component output.
type ConsequencesOutput struct {
	Table ConsequencesTable `json:"table"`
}

// DQElementNames are the seven Decision Quality elements, in order.
var DQElementNames = [...]string{
	"Helpful Problem Frame",
	"Clear Objectives",
	"Creative Alternatives",
	"Reliable Consequence Information",
	"Logically Correct Reasoning",
	"Clear Tradeoffs",
	"Commitment to Follow Through",
}

// DQElement is one scored element.
type DQElement struct {
	Name            string `json:"name"`
	Score           int    `json:"score"`
	Rationale       string `json:"rationale"`
	ImprovementPath string `json:"improvement_path,omitempty"`
}

// DecisionQualityOutput is the decision_quality component output.
type DecisionQualityOutput struct {
	Elements []DQElement `json:"elements"`
}

// MaxAlternativeNameLength bounds an alternative's name, in characters.
const MaxAlternativeNameLength = 100

func decodeOutput(t ComponentType, raw json.RawMessage, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return Validationf("invalid_output", "%s output does not match its schema: %v", t, err)
	}
	return nil
}

// ValidateOutput checks that raw is a JSON object and, for the components
// with a fixed schema, that it decodes and its values are in range (names
// 1..100 characters, ratings -2..2, scores 0..100). It does not apply the
// completion rules (an output may be partial while work is in progress).
func ValidateOutput(t ComponentType, raw json.RawMessage) error {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		return Validationf("invalid_output", "output must be a JSON object")
	}
	switch t {
	case Alternatives:
		var o AlternativesOutput
		if err := decodeOutput(t, raw, &o); err != nil {
			return err
		}
		for _, a := range o.Alternatives {
			if n := utf8.RuneCountInString(a.Name); n < 1 || n > MaxAlternativeNameLength {
				return Validationf("invalid_output", "alternative name must be 1..%d characters", MaxAlternativeNameLength)
			}
			if a.ID == "" {
				return Validationf("invalid_output", "alternative id must not be empty")
			}
		}
	case Objectives:
		var o ObjectivesOutput
		if err := decodeOutput(t, raw, &o); err != nil {
			return err
		}
		for _, f := range o.FundamentalObjectives {
			if f.ID == "" {
				return Validationf("invalid_output", "objective id must not be empty")
			}
		}
	case Consequences:
		var o ConsequencesOutput
		if err := decodeOutput(t, raw, &o); err != nil {
			return err
		}
		for k, c := range o.Table.Cells {
			if c.Rating < MinRating || c.Rating > MaxRating {
				return Validationf("invalid_rating", "rating of cell %q must be between -2 and 2", k)
			}
		}
	case DecisionQuality:
		var o DecisionQualityOutput
		if err := decodeOutput(t, raw, &o); err != nil {
			return err
		}
		for _, e := range o.Elements {
			if e.Score < 0 || e.Score > 100 {
				return Validationf("invalid_score", "score of %q must be between 0 and 100", e.Name)
			}
		}
	}
	return nil
}

// CheckCompletion applies t's completion rules to its output:
// alternatives: >= 2 entries and a status_quo_id among them; objectives:
// >= 1 fundamental objective; consequences: >= 2 alternatives, >= 1
// objective and a cell for every pair; decision_quality: exactly the seven
// elements, each once, each 0..100. Other components have no rule.
func CheckCompletion(t ComponentType, raw json.RawMessage) error {
	needs := t == Alternatives || t == Objectives || t == Consequences || t == DecisionQuality
	if !needs {
		return nil
	}
	if len(raw) == 0 || string(raw) == "null" {
		return Validationf("incomplete_output", "%s has no output yet", t)
	}
	if err := ValidateOutput(t, raw); err != nil {
		return err
	}
	switch t {
	case Alternatives:
		var o AlternativesOutput
		_ = json.Unmarshal(raw, &o)
		if len(o.Alternatives) < 2 {
			return Validationf("incomplete_output", "alternatives needs at least 2 alternatives")
		}
		found := false
		seen := map[string]bool{}
		for _, a := range o.Alternatives {
			if seen[a.ID] {
				return Validationf("incomplete_output", "alternative id %q is repeated", a.ID)
			}
			seen[a.ID] = true
			found = found || a.ID == o.StatusQuoID
		}
		if o.StatusQuoID == "" || !found {
			return Validationf("incomplete_output", "alternatives needs a status_quo_id that is one of the alternatives")
		}
	case Objectives:
		var o ObjectivesOutput
		_ = json.Unmarshal(raw, &o)
		if len(o.FundamentalObjectives) < 1 {
			return Validationf("incomplete_output", "objectives needs at least 1 fundamental objective")
		}
	case Consequences:
		var o ConsequencesOutput
		_ = json.Unmarshal(raw, &o)
		if len(o.Table.AlternativeIDs) < 2 || len(o.Table.ObjectiveIDs) < 1 {
			return Validationf("incomplete_output", "consequences needs at least 2 alternatives and 1 objective")
		}
		for _, a := range o.Table.AlternativeIDs {
			for _, ob := range o.Table.ObjectiveIDs {
				if _, ok := o.Table.Cells[CellKey(a, ob)]; !ok {
					return Validationf("incomplete_output", "consequences is missing the cell %q", CellKey(a, ob))
				}
			}
		}
	case DecisionQuality:
		var o DecisionQualityOutput
		_ = json.Unmarshal(raw, &o)
		if len(o.Elements) != len(DQElementNames) {
			return Validationf("incomplete_output", "decision_quality needs exactly %d elements", len(DQElementNames))
		}
		seen := map[string]bool{}
		for _, e := range o.Elements {
			known := false
			for _, n := range DQElementNames {
				known = known || n == e.Name
			}
			if !known || seen[e.Name] {
				return Validationf("incomplete_output", "decision_quality element %q is unknown or repeated", e.Name)
			}
			seen[e.Name] = true
		}
	}
	return nil
}
