package ai

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/stretchr/testify/require"
)

func req(t domain.ComponentType, phase domain.AgentPhase, user ...string) Request {
	r := Request{ComponentType: t, Phase: phase, ConversationID: "conv-1", Context: map[domain.ComponentType]json.RawMessage{}}
	for _, u := range user {
		r.Messages = append(r.Messages, ChatMessage{Role: ChatUser, Content: u}, ChatMessage{Role: ChatAssistant, Content: "ok"})
	}
	return r
}

func TestOfflineAsksQuestionsInOrder(t *testing.T) {
	t.Parallel()
	for _, ct := range domain.ComponentOrder {
		qs := Questions(ct)
		require.NotEmpty(t, qs, ct)
		require.NotEmpty(t, AnswerSyntax(ct), ct)
		require.Contains(t, OpeningPrompt(ct), DisplayName(ct))
		for i := range qs {
			users := make([]string, i)
			for j := range users {
				users[j] = "something"
			}
			r, err := Offline{}.Complete(context.Background(), req(ct, domain.PhaseGather, users...))
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(r.Content, qs[i]), "%s question %d", ct, i)
		}
	}
	r, _ := Offline{}.Complete(context.Background(), req(domain.Objectives, domain.PhaseClarify, "not sure"))
	require.Contains(t, r.Content, AnswerSyntax(domain.Objectives))
}

func TestOfflineIsDeterministicAndStreams(t *testing.T) {
	t.Parallel()
	r := req(domain.Alternatives, domain.PhaseExtract, "status quo: Stay | as is\nalternative: Move | go", "that's all")
	a, err := Offline{}.Complete(context.Background(), r)
	require.NoError(t, err)
	var streamed strings.Builder
	b, err := Offline{}.Stream(context.Background(), r, func(d string) error { streamed.WriteString(d); return nil })
	require.NoError(t, err)
	require.Equal(t, a.Content, b.Content)
	require.Equal(t, a.Content, streamed.String())

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Offline{}.Stream(ctx, r, func(string) error { return nil })
	require.ErrorIs(t, err, context.Canceled)
}

func extract(t *testing.T, r Request) json.RawMessage {
	t.Helper()
	resp, err := Offline{}.Complete(context.Background(), r)
	require.NoError(t, err)
	out, ok := ExtractJSON(resp.Content)
	require.True(t, ok, resp.Content)
	return out
}

func TestOfflineExtractionPassesCompletionRules(t *testing.T) {
	t.Parallel()
	alts := extract(t, req(domain.Alternatives, domain.PhaseExtract, "alternative: Move abroad | far\nstatus quo: Stay home | as is", "ALTERNATIVE: Hybrid"))
	require.NoError(t, domain.CheckCompletion(domain.Alternatives, alts))
	objs := extract(t, req(domain.Objectives, domain.PhaseExtract, "fundamental: Income | salary\nfundamental: Family time\nmeans: Negotiate"))
	require.NoError(t, domain.CheckCompletion(domain.Objectives, objs))

	r := req(domain.Consequences, domain.PhaseExtract, "rating: Move / Income = +2 | more\nrating: Move / Family = -1\nrating: hybrid / income = 1\nrating: Hybrid / Family = +1\nrating: Move / Income = +7 | ignored, out of range")
	r.Context[domain.Alternatives], r.Context[domain.Objectives] = alts, objs
	cons := extract(t, r)
	require.NoError(t, domain.CheckCompletion(domain.Consequences, cons), string(cons))
	var co domain.ConsequencesOutput
	require.NoError(t, json.Unmarshal(cons, &co))
	var ao domain.AlternativesOutput
	require.NoError(t, json.Unmarshal(alts, &ao))
	require.Equal(t, 2, co.Table.Cells[domain.CellKey(ao.Alternatives[0].ID, co.Table.ObjectiveIDs[0])].Rating)
	require.Equal(t, 0, co.Table.Cells[domain.CellKey(ao.StatusQuoID, co.Table.ObjectiveIDs[1])].Rating, "status quo is the baseline")

	dq := extract(t, req(domain.DecisionQuality, domain.PhaseExtract,
		"helpful problem frame: 80\nClear Objectives: 70 | ok | talk more\nCreative Alternatives: 60%\nReliable Consequence Information: 50\nLogically Correct Reasoning: 90\nClear Tradeoffs: 85\nCommitment to Follow Through: 95"))
	require.NoError(t, domain.CheckCompletion(domain.DecisionQuality, dq), string(dq))

	// Re-extraction keeps ids stable.
	again := extract(t, req(domain.Alternatives, domain.PhaseExtract, "alternative: Move abroad | far\nstatus quo: Stay home | as is", "ALTERNATIVE: Hybrid"))
	require.JSONEq(t, string(alts), string(again))

	tr := req(domain.Tradeoffs, domain.PhaseExtract, "note: hmm")
	tr.Context[domain.Consequences] = cons
	var to map[string]any
	require.NoError(t, json.Unmarshal(extract(t, tr), &to))
	require.Len(t, to["tensions"], 2, "the status quo is dominated by Hybrid")
	require.Len(t, to["dominated_alternatives"], 1)
}

func TestExtractJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"fenced", "Summary\n```json\n{\"a\": 1}\n```\nbye", `{"a": 1}`, true},
		{"bare object", `I think {"a": {"b": "}"}} is it`, `{"a": {"b": "}"}}`, true},
		{"first invalid then valid", `{oops} and {"x": 2}`, `{"x": 2}`, true},
		{"injection markers stripped", "<|im_start|>```json\n{\"a\":[1]}\n```", `{"a":[1]}`, true},
		{"none", "no data here", "", false},
		{"array only", "[1,2]", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ExtractJSON(tc.in)
			require.Equal(t, tc.ok, ok)
			if ok {
				require.JSONEq(t, tc.want, string(got))
			}
		})
	}
	require.Equal(t, "ab\ncd", Sanitize("a\x00b\ncd[INST]"))
	s, n := Summarize(domain.Alternatives, json.RawMessage(`{"alternatives":[{},{}],"status_quo_id":"x"}`))
	require.Equal(t, 2, n)
	require.Contains(t, s, "2 alternatives")
}
