package analysis

import (
	"testing"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/stretchr/testify/require"
)

// mx builds a matrix from rows of ratings: alts[i] x objs[j] = rows[i][j];
// a rating of 9 means "missing cell".
func mx(alts, objs []string, rows ...[]int) Matrix {
	m := Matrix{Alternatives: alts, Objectives: objs, Ratings: map[string]int{}}
	for i, r := range rows {
		for j, v := range r {
			if v != 9 {
				m.Ratings[domain.CellKey(alts[i], objs[j])] = v
			}
		}
	}
	return m
}

var abc, o3 = []string{"A", "B", "C"}, []string{"x", "y", "z"}

func TestPughScoresAndBest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		m      Matrix
		want   map[string]int
		best   string
		bestOK bool
	}{
		{"plain sum", mx(abc, o3, []int{0, 0, 0}, []int{2, -1, 1}, []int{1, 1, -2}), map[string]int{"A": 0, "B": 2, "C": 0}, "B", true},
		{"missing cell counts as 0", mx(abc, o3, []int{9, 9, 9}, []int{2, 9, 9}, []int{1, 9, 9}), map[string]int{"A": 0, "B": 2, "C": 1}, "B", true},
		{"tie at the top means none", mx(abc, o3, []int{0, 0, 0}, []int{2, 0, 0}, []int{1, 1, 0}), map[string]int{"A": 0, "B": 2, "C": 2}, "", false},
		{"tie below the top is fine", mx(abc, o3, []int{0, 0, 0}, []int{0, 0, 0}, []int{1, 0, 0}), map[string]int{"A": 0, "B": 0, "C": 1}, "C", true},
		{"no objectives", mx(abc, nil, nil, nil, nil), map[string]int{"A": 0, "B": 0, "C": 0}, "", false},
		{"single alternative", mx([]string{"A"}, o3, []int{-1, -1, 0}), map[string]int{"A": -2}, "A", true},
		{"no alternatives", mx(nil, o3), map[string]int{}, "", false},
		{"all negative", mx(abc, o3, []int{-1, 0, 0}, []int{-2, -2, -2}, []int{-1, -1, 0}), map[string]int{"A": -1, "B": -6, "C": -2}, "A", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := PughScores(tc.m)
			require.Equal(t, tc.want, got)
			best, ok := BestAlternative(tc.m.Alternatives, got)
			require.Equal(t, tc.bestOK, ok)
			require.Equal(t, tc.best, best)
		})
	}
}

func TestFromTableRejectsBadRatings(t *testing.T) {
	t.Parallel()
	for _, r := range []int{-3, 3, 100} {
		_, err := FromTable(domain.ConsequencesTable{AlternativeIDs: []string{"a"}, ObjectiveIDs: []string{"o"}, Cells: map[string]domain.Cell{"a:o": {Rating: r}}})
		require.ErrorIs(t, err, domain.ErrValidation)
	}
	m, err := FromTable(domain.ConsequencesTable{AlternativeIDs: []string{"a"}, ObjectiveIDs: []string{"o"}, Cells: map[string]domain.Cell{"a:o": {Rating: -2}}})
	require.NoError(t, err)
	require.Equal(t, -2, m.Ratings["a:o"])
}

func TestFindDominated(t *testing.T) {
	t.Parallel()
	type pair struct{ alt, by string }
	tests := []struct {
		name string
		m    Matrix
		want []pair
	}{
		{"none: tradeoffs", mx(abc, o3, []int{0, 0, 0}, []int{2, -1, 0}, []int{-1, 2, 0}), nil},
		{"equal is not dominance", mx([]string{"A", "B"}, o3, []int{1, 1, 1}, []int{1, 1, 1}), nil},
		{"one dominator", mx(abc, o3, []int{0, 0, 0}, []int{1, 0, 0}, []int{-1, 2, 0}), []pair{{"A", "B"}}},
		{"first dominator in alternative order", mx(abc, o3, []int{0, 0, 0}, []int{1, 0, 0}, []int{2, 2, 2}), []pair{{"A", "B"}, {"B", "C"}}},
		{"hop by hop, not transitive", mx(abc, o3, []int{2, 2, 2}, []int{1, 1, 1}, []int{0, 0, 0}), []pair{{"B", "A"}, {"C", "A"}}},
		{"missing counts as 0", mx([]string{"A", "B"}, o3, []int{9, 9, 9}, []int{1, 9, 9}), []pair{{"A", "B"}}},
		{"single alternative", mx([]string{"A"}, o3, []int{0, 0, 0}), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := FindDominated(tc.m)
			require.Len(t, got, len(tc.want))
			for i, p := range tc.want {
				require.Equal(t, p.alt, got[i].AlternativeID)
				require.Equal(t, p.by, got[i].DominatedByID)
				require.NotEmpty(t, got[i].StrictlyOn)
			}
		})
	}
}

func TestFindIrrelevant(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    Matrix
		want []string
	}{
		{"uniform column", mx(abc, o3, []int{0, 1, 0}, []int{2, 1, 0}, []int{-1, 1, 0}), []string{"y", "z"}},
		{"missing equals 0", mx([]string{"A", "B"}, o3, []int{9, 1, 0}, []int{0, 2, 9}), []string{"x", "z"}},
		{"needs two alternatives", mx([]string{"A"}, o3, []int{1, 1, 1}), nil},
		{"all differ", mx([]string{"A", "B"}, o3, []int{0, 1, 2}, []int{1, 2, 0}), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := FindIrrelevant(tc.m)
			ids := []string{}
			for _, g := range got {
				ids = append(ids, g.ObjectiveID)
				require.Equal(t, "All alternatives have the same rating", g.Reason)
			}
			if tc.want == nil {
				tc.want = []string{}
			}
			require.Equal(t, tc.want, ids)
		})
	}
}

func TestTradeoffTensions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		m      Matrix
		want   []Tension
		winner bool
	}{
		{"two viable trade off", mx(abc, o3, []int{0, 0, 0}, []int{2, -1, 0}, []int{-1, 2, 0}),
			[]Tension{{"A", []string{"x", "y"}, []string{"x", "y"}}, {"B", []string{"x"}, []string{"y"}}, {"C", []string{"y"}, []string{"x"}}}, false},
		{"dominated excluded", mx(abc, o3, []int{0, 0, 0}, []int{1, 0, 0}, []int{-1, 2, 0}),
			[]Tension{{"B", []string{"x"}, []string{"y"}}, {"C", []string{"y"}, []string{"x"}}}, false},
		{"one viable", mx([]string{"A", "B"}, o3, []int{0, 0, 0}, []int{1, 1, 1}),
			[]Tension{{"B", []string{}, []string{}}}, false},
		{"none", mx(nil, o3), []Tension{}, false},
		{"identical alternatives", mx([]string{"A", "B"}, o3, []int{1, 0, 0}, []int{1, 0, 0}),
			[]Tension{{"A", []string{}, []string{}}, {"B", []string{}, []string{}}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := TradeoffTensions(tc.m)
			require.Equal(t, tc.want, got.Tensions)
			require.Equal(t, tc.winner, got.HasClearWinner)
		})
	}
}

func els(scores ...int) []domain.DQElement {
	var out []domain.DQElement
	for i, s := range scores {
		out = append(out, domain.DQElement{Name: domain.DQElementNames[i], Score: s})
	}
	return out
}

func TestDecisionQuality(t *testing.T) {
	t.Parallel()
	withPath := els(90, 40, 85, 85, 85, 85, 85)
	withPath[1].ImprovementPath = "Talk to two more people"
	tests := []struct {
		name        string
		in          []domain.DQElement
		overall     int
		weakest     string
		acceptable  bool
		suggestions []string
	}{
		{"minimum never average", els(100, 100, 100, 100, 100, 100, 10), 10, "Commitment to Follow Through", false,
			[]string{"Improve Commitment to Follow Through (currently at 10%)"}},
		{"all at 80 acceptable", els(80, 80, 80, 80, 80, 80, 80), 80, "Helpful Problem Frame", true, []string{}},
		{"79 not acceptable", els(80, 80, 79, 80, 95, 99, 100), 79, "Creative Alternatives", false,
			[]string{"Improve Creative Alternatives (currently at 79%)"}},
		{"lowest first, improvement path used", withPath, 40, "Clear Objectives", false, []string{"Talk to two more people"}},
		{"sorted ascending", els(70, 20, 50, 90, 90, 90, 90), 20, "Clear Objectives", false,
			[]string{"Improve Clear Objectives (currently at 20%)", "Improve Creative Alternatives (currently at 50%)", "Improve Helpful Problem Frame (currently at 70%)"}},
		{"no elements", nil, 0, "", false, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := DecisionQuality(tc.in)
			require.Equal(t, tc.overall, got.Overall)
			require.Equal(t, tc.weakest, got.Weakest)
			require.Equal(t, tc.acceptable, got.Acceptable)
			require.Equal(t, tc.suggestions, got.Suggestions)
			require.Len(t, got.Elements, len(tc.in))
		})
	}
}

func TestPriorityBands(t *testing.T) {
	t.Parallel()
	for score, want := range map[int]Priority{0: PriorityCritical, 30: PriorityCritical, 31: PriorityHigh, 50: PriorityHigh,
		51: PriorityMedium, 70: PriorityMedium, 71: PriorityLow, 100: PriorityLow} {
		require.Equal(t, want, PriorityFor(score), "score %d", score)
	}
}
