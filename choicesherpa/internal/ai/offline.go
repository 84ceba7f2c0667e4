package ai

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/analysis"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/google/uuid"
)

// Offline is the embedded, deterministic facilitator: no network, same
// input, same reply. It follows the phase in the request: in intro and
// gather it asks the component's next question (and shows the answer
// syntax), in clarify it explains the syntax, in extract it builds the
// component's structured output from every "key: value" line the user typed
// (see AnswerSyntax) and replies with a summary and a fenced ```json block,
// in confirm it asks for approval.
//
// Answer syntax, one item per line (keys are case-insensitive):
//
//	issue_raising:    decision: / objective: / uncertainty: / consideration:
//	problem_frame:    decision_maker: Name (role) / focal_decision: / scope: / constraint: / party: Name (role)
//	objectives:       fundamental: description | measure / means: description
//	alternatives:     alternative: Name | description / status quo: Name | description
//	consequences:     rating: Alternative / Objective = +1 | rationale   (names from the earlier outputs; the status quo's cells are 0)
//	tradeoffs:        note: ...   (dominance and tensions are computed from the consequences table)
//	recommendation:   standout: Alternative | rationale / synthesis: ... / caveat: ...
//	decision_quality: <element name>: score | rationale | improvement path
//	notes_next_steps: action: / question: / note:
//
// Ids it mints are UUIDv5 of the conversation id and the item, so
// re-extraction keeps them stable.
type Offline struct{}

var _ Provider = Offline{}

// Complete implements Provider.
func (o Offline) Complete(ctx context.Context, req Request) (Response, error) {
	if err := ctx.Err(); err != nil {
		return Response{}, err
	}
	content := o.reply(req)
	n := len(strings.Fields(content))
	return Response{Content: content, Model: "offline-facilitator", FinishReason: "stop",
		Usage: Usage{CompletionTokens: n, TotalTokens: n}}, nil
}

// Stream implements Provider: the reply is delivered line by line.
func (o Offline) Stream(ctx context.Context, req Request, onDelta func(string) error) (Response, error) {
	resp, err := o.Complete(ctx, req)
	if err != nil {
		return Response{}, err
	}
	for _, line := range strings.SplitAfter(resp.Content, "\n") {
		if err := ctx.Err(); err != nil {
			return Response{}, err
		}
		if line == "" {
			continue
		}
		if err := onDelta(line); err != nil {
			return Response{}, err
		}
	}
	return resp, nil
}

func (o Offline) reply(req Request) string {
	t := req.ComponentType
	users := 0
	for _, m := range req.Messages {
		if m.Role == ChatUser {
			users++
		}
	}
	qs := guides[t].questions
	switch req.Phase {
	case domain.PhaseExtract:
		out := Extract(req)
		b, _ := json.MarshalIndent(out, "", "  ")
		summary, _ := Summarize(t, b)
		return fmt.Sprintf("Here is what I captured. %s.\n```json\n%s\n```\nDoes this look right? Say \"looks good\" or tell me what to change.", summary, b)
	case domain.PhaseConfirm:
		return "Thanks. If this looks right, complete the step; otherwise tell me what to change."
	case domain.PhaseClarify:
		return fmt.Sprintf("No problem, let's take it slowly. You can answer in lines like: %s. %s", guides[t].syntax, qs[max(0, min(users, len(qs))-1)])
	}
	if len(qs) == 0 {
		return "Tell me more."
	}
	q := qs[min(users, len(qs)-1)]
	return fmt.Sprintf("%s\n(You can answer in lines like: %s. Say \"done\" when you have covered everything.)", q, guides[t].syntax)
}

type line struct{ key, value string }

// userLines parses "key: value" lines from every user message.
func userLines(req Request) []line {
	var out []line
	for _, m := range req.Messages {
		if m.Role != ChatUser {
			continue
		}
		for _, l := range strings.Split(m.Content, "\n") {
			k, v, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			k = strings.ToLower(strings.TrimSpace(k))
			v = strings.TrimSpace(v)
			if k != "" && v != "" {
				out = append(out, line{k, v})
			}
		}
	}
	return out
}

func splitBar(v string) []string {
	parts := strings.Split(v, "|")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

func part(p []string, i int) string {
	if i < len(p) {
		return p[i]
	}
	return ""
}

// nameRole parses "Name (role)".
func nameRole(v string) (string, string) {
	if i := strings.LastIndex(v, "("); i > 0 && strings.HasSuffix(v, ")") {
		return strings.TrimSpace(v[:i]), strings.TrimSpace(v[i+1 : len(v)-1])
	}
	return v, ""
}

func mintID(req Request, kind, name string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(req.ConversationID+"|"+kind+"|"+strings.ToLower(strings.TrimSpace(name)))).String()
}

type idText struct {
	ID          string `json:"id"`
	Description string `json:"description"`
}

// Extract builds the component's output from the user's answer lines.
func Extract(req Request) map[string]any {
	lines := userLines(req)
	switch req.ComponentType {
	case domain.IssueRaising:
		out := map[string]any{"potential_decisions": []idText{}, "objectives": []idText{}, "uncertainties": []idText{}, "considerations": []map[string]string{}, "user_confirmed": true}
		for _, l := range lines {
			switch l.key {
			case "decision", "objective", "uncertainty":
				k := map[string]string{"decision": "potential_decisions", "objective": "objectives", "uncertainty": "uncertainties"}[l.key]
				out[k] = append(out[k].([]idText), idText{mintID(req, l.key, l.value), l.value})
			case "consideration":
				out["considerations"] = append(out["considerations"].([]map[string]string), map[string]string{"id": mintID(req, l.key, l.value), "text": l.value})
			}
		}
		return out
	case domain.ProblemFrame:
		focal := map[string]any{"statement": "", "scope": "", "constraints": []string{}, "trigger": ""}
		out := map[string]any{"decision_maker": map[string]string{"name": "", "role": ""}, "focal_decision": focal,
			"decision_hierarchy": map[string][]string{"already_made": {}, "focal": {}, "deferred": {}}, "parties": []map[string]string{}}
		for _, l := range lines {
			switch l.key {
			case "decision_maker", "decision maker":
				n, r := nameRole(l.value)
				out["decision_maker"] = map[string]string{"name": n, "role": r}
			case "focal_decision", "focal decision":
				focal["statement"] = l.value
				out["decision_hierarchy"].(map[string][]string)["focal"] = []string{l.value}
			case "scope":
				focal["scope"] = l.value
			case "trigger":
				focal["trigger"] = l.value
			case "constraint":
				focal["constraints"] = append(focal["constraints"].([]string), l.value)
			case "party":
				n, r := nameRole(l.value)
				out["parties"] = append(out["parties"].([]map[string]string), map[string]string{"name": n, "role": r})
			case "already_made", "deferred":
				h := out["decision_hierarchy"].(map[string][]string)
				h[l.key] = append(h[l.key], l.value)
			}
		}
		return out
	case domain.Objectives:
		var o domain.ObjectivesOutput
		o.FundamentalObjectives = []domain.FundamentalObjective{}
		o.MeansObjectives = []domain.MeansObjective{}
		for _, l := range lines {
			p := splitBar(l.value)
			switch l.key {
			case "fundamental", "objective":
				f := domain.FundamentalObjective{ID: mintID(req, "objective", p[0]), Description: p[0]}
				if m := part(p, 1); m != "" {
					f.Measure, _ = json.Marshal(map[string]string{"metric": m})
				}
				o.FundamentalObjectives = append(o.FundamentalObjectives, f)
			case "means":
				o.MeansObjectives = append(o.MeansObjectives, domain.MeansObjective{ID: mintID(req, "means", p[0]), Description: p[0], Supports: []string{}})
			}
		}
		for i := range o.MeansObjectives {
			for _, f := range o.FundamentalObjectives {
				o.MeansObjectives[i].Supports = append(o.MeansObjectives[i].Supports, f.ID)
			}
		}
		return toMap(o)
	case domain.Alternatives:
		var o domain.AlternativesOutput
		o.Alternatives = []domain.Alternative{}
		for _, l := range lines {
			p := splitBar(l.value)
			sq := l.key == "status quo" || l.key == "status_quo"
			if l.key != "alternative" && !sq {
				continue
			}
			name := p[0]
			if strings.HasSuffix(strings.ToLower(name), "(status quo)") {
				name, sq = strings.TrimSpace(name[:len(name)-len("(status quo)")]), true
			}
			a := domain.Alternative{ID: mintID(req, "alternative", name), Name: name, Description: part(p, 1), IsStatusQuo: sq}
			if sq {
				o.StatusQuoID = a.ID
			}
			o.Alternatives = append(o.Alternatives, a)
		}
		return toMap(o)
	case domain.Consequences:
		return toMap(extractConsequences(req, lines))
	case domain.Tradeoffs:
		return extractTradeoffs(req, lines)
	case domain.Recommendation:
		out := map[string]any{"synthesis": "", "caveats": []string{}, "key_considerations": []string{}}
		alts := alternativesOf(req)
		for _, l := range lines {
			p := splitBar(l.value)
			switch l.key {
			case "standout":
				so := map[string]string{"alternative_id": "", "rationale": part(p, 1)}
				if a, ok := lookup(alts, p[0]); ok {
					so["alternative_id"] = a
				}
				out["standout_option"] = so
			case "synthesis":
				out["synthesis"] = strings.TrimSpace(out["synthesis"].(string) + " " + l.value)
			case "caveat":
				out["caveats"] = append(out["caveats"].([]string), l.value)
			case "consideration":
				out["key_considerations"] = append(out["key_considerations"].([]string), l.value)
			}
		}
		return out
	case domain.DecisionQuality:
		var o domain.DecisionQualityOutput
		o.Elements = []domain.DQElement{}
		for _, name := range domain.DQElementNames {
			for _, l := range lines {
				if l.key != strings.ToLower(name) {
					continue
				}
				p := splitBar(l.value)
				score, err := strconv.Atoi(strings.TrimSuffix(p[0], "%"))
				if err != nil {
					continue
				}
				o.Elements = append(o.Elements, domain.DQElement{Name: name, Score: score, Rationale: part(p, 1), ImprovementPath: part(p, 2)})
				break
			}
		}
		return toMap(o)
	case domain.NotesNextSteps:
		out := map[string]any{"planned_actions": []map[string]string{}, "open_questions": []string{}, "notes": []string{}}
		for _, l := range lines {
			switch l.key {
			case "action":
				out["planned_actions"] = append(out["planned_actions"].([]map[string]string), map[string]string{"action": l.value, "status": "planned"})
			case "question":
				out["open_questions"] = append(out["open_questions"].([]string), l.value)
			case "note":
				out["notes"] = append(out["notes"].([]string), l.value)
			}
		}
		var dq domain.DecisionQualityOutput
		if raw, ok := req.Context[domain.DecisionQuality]; ok && json.Unmarshal(raw, &dq) == nil && len(dq.Elements) > 0 {
			if r := analysis.DecisionQuality(dq.Elements); r.Overall == 100 {
				out["decision_affirmation"] = "Every element of decision quality is at 100%: this was a good decision at the time it was made."
			} else {
				out["further_analysis_paths"] = r.Suggestions
			}
		}
		return out
	}
	return map[string]any{}
}

func toMap(v any) map[string]any {
	b, _ := json.Marshal(v)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

type named struct{ id, name string }

func alternativesOf(req Request) []named {
	var o domain.AlternativesOutput
	_ = json.Unmarshal(req.Context[domain.Alternatives], &o)
	out := make([]named, 0, len(o.Alternatives))
	for _, a := range o.Alternatives {
		out = append(out, named{a.ID, a.Name})
	}
	return out
}

func objectivesOf(req Request) []named {
	var o domain.ObjectivesOutput
	_ = json.Unmarshal(req.Context[domain.Objectives], &o)
	out := make([]named, 0, len(o.FundamentalObjectives))
	for _, f := range o.FundamentalObjectives {
		out = append(out, named{f.ID, f.Description})
	}
	return out
}

// lookup matches a name case-insensitively: exact name or id first, then prefix.
func lookup(items []named, s string) (string, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	for _, it := range items {
		if strings.ToLower(it.name) == s || it.id == s {
			return it.id, true
		}
	}
	for _, it := range items {
		if s != "" && strings.HasPrefix(strings.ToLower(it.name), s) {
			return it.id, true
		}
	}
	return "", false
}

func extractConsequences(req Request, lines []line) domain.ConsequencesOutput {
	alts, objs := alternativesOf(req), objectivesOf(req)
	var sq domain.AlternativesOutput
	_ = json.Unmarshal(req.Context[domain.Alternatives], &sq)
	t := domain.ConsequencesTable{AlternativeIDs: []string{}, ObjectiveIDs: []string{}, Cells: map[string]domain.Cell{}}
	for _, a := range alts {
		t.AlternativeIDs = append(t.AlternativeIDs, a.id)
	}
	for _, o := range objs {
		t.ObjectiveIDs = append(t.ObjectiveIDs, o.id)
	}
	if sq.StatusQuoID != "" {
		for _, o := range objs {
			t.Cells[domain.CellKey(sq.StatusQuoID, o.id)] = domain.Cell{Rating: 0, Rationale: "status quo baseline"}
		}
	}
	for _, l := range lines {
		if l.key != "rating" {
			continue
		}
		p := splitBar(l.value)
		pair, val, ok := strings.Cut(p[0], "=")
		if !ok {
			continue
		}
		an, on, ok := strings.Cut(pair, "/")
		if !ok {
			continue
		}
		a, okA := lookup(alts, an)
		o, okO := lookup(objs, on)
		r, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(val), "+"))
		if !okA || !okO || err != nil || r < domain.MinRating || r > domain.MaxRating {
			continue
		}
		t.Cells[domain.CellKey(a, o)] = domain.Cell{Rating: r, Rationale: part(p, 1)}
	}
	return domain.ConsequencesOutput{Table: t}
}

func extractTradeoffs(req Request, lines []line) map[string]any {
	out := map[string]any{"dominated_alternatives": []analysis.Dominated{}, "irrelevant_objectives": []analysis.Irrelevant{}, "tensions": []analysis.Tension{}, "notes": []string{}}
	for _, l := range lines {
		if l.key == "note" {
			out["notes"] = append(out["notes"].([]string), l.value)
		}
	}
	var c domain.ConsequencesOutput
	if json.Unmarshal(req.Context[domain.Consequences], &c) != nil {
		return out
	}
	m, err := analysis.FromTable(c.Table)
	if err != nil {
		return out
	}
	r := analysis.TradeoffTensions(m)
	out["dominated_alternatives"], out["irrelevant_objectives"], out["tensions"] = r.Dominated, r.Irrelevant, r.Tensions
	return out
}
