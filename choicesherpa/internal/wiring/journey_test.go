package wiring

import (
	"encoding/json"
	"sort"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/app"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/events"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// Journey 1: a complete decision through all nine components with the
// offline facilitator, ending in a DQ score whose overall is the minimum.
func TestJourneyCompleteDecision(t *testing.T) {
	t.Parallel()
	runModes(t, func(t *testing.T, h *harness) {
		ctx, _ := h.ctx()
		sess, err := h.app.Service.CreateSession(ctx, app.CreateSession{Title: "Berlin offer"})
		require.NoError(t, err)
		c, err := h.app.Service.CreateCycle(ctx, sess.ID)
		require.NoError(t, err)
		var mu sync.Mutex
		var updates []app.Update
		cancel := h.app.Dashboard.OnUpdate(func(u app.Update) {
			mu.Lock()
			defer mu.Unlock()
			if u.SessionID == sess.ID {
				updates = append(updates, u)
			}
		})
		defer cancel()

		for _, ct := range domain.ComponentOrder {
			h.runComponent(c.ID, ct)
		}
		cctx, corr := h.ctx()
		done, err := h.app.Service.CompleteCycle(cctx, c.ID)
		require.NoError(t, err)
		require.Equal(t, domain.CycleCompleted, done.Status)
		require.Equal(t, 100, done.Progress().PercentComplete)

		// Extracted outputs: ids inside outputs link up.
		var alts domain.AlternativesOutput
		comp, _ := done.Component(domain.Alternatives)
		require.NoError(t, json.Unmarshal(comp.Output, &alts))
		require.Len(t, alts.Alternatives, 3)
		byName := map[string]string{}
		for _, a := range alts.Alternatives {
			byName[a.Name] = a.ID
		}
		require.Equal(t, byName["Stay in current job"], alts.StatusQuoID)

		// Pugh on consequences: Stay 0, Berlin +1, Negotiate +2; Negotiate dominates Stay.
		pugh := h.waitEvents(events.TypePughScoresComputed, 1, forAgg(c.ID))[0]
		var pe events.PughScoresComputed
		require.NoError(t, json.Unmarshal(pugh.Payload, &pe))
		require.Equal(t, map[string]int{byName["Stay in current job"]: 0, byName["Accept Berlin offer"]: 1, byName["Negotiate remote work"]: 2}, pe.AlternativeScores)
		require.Equal(t, byName["Negotiate remote work"], *pe.BestAlternativeID)
		require.Equal(t, []events.DominatedRef{{AlternativeID: byName["Stay in current job"], DominatedByID: byName["Negotiate remote work"]}}, pe.DominatedAlternatives)
		consCompleted := h.waitEvents(events.TypeComponentCompleted, 1, withField("component_type", "consequences"))
		var cause eventbus.Envelope
		for _, e := range consCompleted {
			if e.AggregateID == c.ID.String() {
				cause = e
			}
		}
		require.Equal(t, cause.EventID.String(), pugh.Metadata.CausationID, "analysis is caused by the completion")
		require.Equal(t, cause.Metadata.CorrelationID, pugh.Metadata.CorrelationID)

		tr := h.waitEvents(events.TypeTradeoffsAnalyzed, 1, forAgg(c.ID))[0]
		var te events.TradeoffsAnalyzed
		require.NoError(t, json.Unmarshal(tr.Payload, &te))
		require.Equal(t, 1, te.DominatedCount)
		require.Len(t, te.Tensions, 2)

		// DQ: overall = min (60), never the average.
		dq := h.waitEvents(events.TypeDQScoresComputed, 1, forAgg(c.ID))[0]
		var de events.DQScoresComputed
		require.NoError(t, json.Unmarshal(dq.Payload, &de))
		require.Equal(t, 60, de.OverallScore)
		require.Equal(t, "Reliable Consequence Information", de.WeakestElement)
		require.False(t, de.Acceptable)
		require.Equal(t, []string{"Improve Reliable Consequence Information (currently at 60%)", "Brainstorm two more options"}, de.ImprovementSuggestions)
		require.Len(t, de.ElementScores, 7)

		completed := h.waitEvents(events.TypeCycleCompleted, 1, forAgg(c.ID))[0]
		require.Equal(t, 60.0, payload(t, completed)["dq_overall_score"])
		require.Equal(t, corr, completed.Metadata.CorrelationID)

		// Conversations: one per component, 4 messages each, previews only.
		h.waitEvents(events.TypeConversationStarted, 9, withField("cycle_id", c.ID.String()))
		msgs := h.waitEvents(events.TypeMessageSent, 36, withField("cycle_id", c.ID.String()))
		require.Len(t, msgs, 36)
		for _, m := range msgs {
			p := payload(t, m)
			require.LessOrEqual(t, utf8.RuneCountInString(p["content_preview"].(string)), events.PreviewLength)
			require.NotContains(t, p, "content")
		}
		h.waitEvents(events.TypeConversationDataExtracted, 9, withField("cycle_id", c.ID.String()))
		for _, ct := range domain.ComponentOrder {
			conv, err := h.app.Service.GetConversation(ctx, c.ID, ct)
			require.NoError(t, err)
			require.Len(t, conv.Messages, 4, "%s", ct)
			require.Equal(t, answers[ct], conv.Messages[0].Content, "full content is stored")
		}

		// The dashboard followed along.
		h.settle()
		h.waitFor("dashboard complete", func() bool {
			d, ok := h.app.Dashboard.Get(sess.ID)
			return ok && len(d.Cycles) == 1 && d.Cycles[0].Status == domain.CycleCompleted && d.Cycles[0].DQ != nil
		})
		d, err := h.app.Service.Dashboard(ctx, h.app.Dashboard, sess.ID)
		require.NoError(t, err)
		cv := d.Cycles[0]
		require.Equal(t, 100, cv.Progress.PercentComplete)
		require.Equal(t, 60, cv.DQ.Overall)
		require.Equal(t, "Reliable Consequence Information", cv.DQ.WeakestElement)
		require.Equal(t, 60, *cv.DQScore)
		require.Equal(t, byName["Negotiate remote work"], *cv.Pugh.BestAlternativeID)
		require.Equal(t, 2, cv.Pugh.Scores[byName["Negotiate remote work"]])
		require.Len(t, d.RecentMessages, app.DefaultRecentMessages)
		for _, comp := range cv.Components {
			require.Equal(t, domain.Complete, comp.Status)
		}
		_, err = h.app.Service.Dashboard(h.userCtx("intruder"), h.app.Dashboard, sess.ID)
		require.ErrorIs(t, err, domain.ErrForbidden)

		// Live updates: one per applied event, sequence strictly increasing.
		h.waitFor("live updates", func() bool {
			mu.Lock()
			defer mu.Unlock()
			sort.Slice(updates, func(i, j int) bool { return updates[i].Sequence < updates[j].Sequence })
			return len(updates) > 0 && updates[len(updates)-1].Sequence == d.Sequence
		})
		mu.Lock()
		defer mu.Unlock()
		sort.Slice(updates, func(i, j int) bool { return updates[i].Sequence < updates[j].Sequence })
		for i := 1; i < len(updates); i++ {
			require.Equal(t, updates[i-1].Sequence+1, updates[i].Sequence)
			require.NotEmpty(t, updates[i].UpdateType, updates[i].EventType)
		}
		require.Equal(t, d.LastEventID, updates[len(updates)-1].EventID)
	})
}

// Journey 2: branch after three components; both cycles' events are right.
func TestJourneyBranch(t *testing.T) {
	t.Parallel()
	runModes(t, func(t *testing.T, h *harness) {
		ctx, _ := h.ctx()
		sess, err := h.app.Service.CreateSession(ctx, app.CreateSession{Title: "Branching"})
		require.NoError(t, err)
		parent, err := h.app.Service.CreateCycle(ctx, sess.ID)
		require.NoError(t, err)
		for _, ct := range domain.ComponentOrder[:3] {
			h.runComponent(parent.ID, ct)
		}
		parent, err = h.app.Service.GetCycle(ctx, parent.ID)
		require.NoError(t, err)

		bctx, corr := h.ctx()
		label := "Only money matters"
		child, err := h.app.Service.BranchCycle(bctx, app.BranchCycle{CycleID: parent.ID, BranchPoint: domain.Objectives, Label: &label})
		require.NoError(t, err)

		br := h.waitEvents(events.TypeCycleBranched, 1, forAgg(child.ID))[0]
		require.Equal(t, corr, br.Metadata.CorrelationID)
		var be events.CycleBranched
		require.NoError(t, json.Unmarshal(br.Payload, &be))
		require.Equal(t, parent.ID, be.ParentCycleID)
		require.Equal(t, sess.ID, be.SessionID)
		require.Equal(t, domain.Objectives, be.BranchPoint)
		require.Equal(t, label, *be.BranchLabel)
		require.Equal(t, []domain.ComponentType{domain.IssueRaising, domain.ProblemFrame, domain.Objectives}, be.InheritedComponents)
		require.Empty(t, h.bus.Filter(func(e eventbus.Envelope) bool {
			return e.EventType == events.TypeCycleCreated && e.AggregateID == child.ID.String()
		}), "a branch raises cycle.branched, not cycle.created")

		added := h.waitEvents(events.TypeSessionCycleAdded, 1, withField("cycle_id", child.ID.String()))[0]
		require.Equal(t, false, payload(t, added)["is_root_cycle"])
		require.Equal(t, br.EventID.String(), added.Metadata.CausationID)

		// Child components: new ids, statuses per the rules, outputs kept.
		for i, comp := range child.Components {
			require.NotEqual(t, parent.Components[i].ID, comp.ID)
			require.Equal(t, be.Components[i].ComponentID, comp.ID)
		}
		obj, _ := child.Component(domain.Objectives)
		require.Equal(t, domain.NeedsRevision, obj.Status)
		require.Equal(t, domain.BranchRevisionReason, obj.RevisionReason)
		pobj, _ := parent.Component(domain.Objectives)
		require.JSONEq(t, string(pobj.Output), string(obj.Output))
		_, err = h.app.Service.GetConversation(ctx, child.ID, domain.IssueRaising)
		require.ErrorIs(t, err, domain.ErrNotFound, "conversations are not copied")

		// Follow a different path in the child: revise objectives, continue.
		sctx, _ := h.ctx()
		money := json.RawMessage(`{"fundamental_objectives":[{"id":"` + uuid.NewString() + `","description":"Income"}],"means_objectives":[]}`)
		_, err = h.app.Service.UpdateComponentOutput(sctx, child.ID, domain.Objectives, money)
		require.NoError(t, err)
		_, err = h.app.Service.CompleteComponent(sctx, child.ID, domain.Objectives)
		require.NoError(t, err)
		h.runComponent(child.ID, domain.Alternatives)
		// ...and the parent goes on independently.
		h.runComponent(parent.ID, domain.Alternatives)

		childDone := h.waitEvents(events.TypeComponentCompleted, 2, forAgg(child.ID))
		require.Equal(t, []any{"objectives", "alternatives"}, []any{payload(t, childDone[0])["component_type"], payload(t, childDone[1])["component_type"]})
		require.Equal(t, 50.0, payload(t, childDone[1])["progress"].(map[string]any)["percent_complete"], "IR, PF, OBJ, ALT of 8")
		childAlt, _ := child.Component(domain.Alternatives)
		require.Equal(t, childAlt.ID.String(), payload(t, childDone[1])["component_id"])
		for _, e := range h.bus.EventsForAggregate(child.ID.String()) {
			require.Equal(t, sess.ID.String(), payload(t, e)["session_id"])
			if cid, ok := payload(t, e)["component_id"].(string); ok {
				_, found := child.ComponentByID(uuid.MustParse(cid))
				require.True(t, found, "child events name child components (%s)", e.EventType)
			}
		}
		parentDone := h.waitEvents(events.TypeComponentCompleted, 4, forAgg(parent.ID))
		require.Len(t, parentDone, 4)
		require.Equal(t, 50.0, payload(t, parentDone[3])["progress"].(map[string]any)["percent_complete"])

		h.waitFor("dashboard shows both cycles", func() bool {
			d, ok := h.app.Dashboard.Get(sess.ID)
			return ok && len(d.Cycles) == 2 && d.Cycles[1].Progress.CompletedCount == 4 && d.Cycles[0].Progress.CompletedCount == 4
		})
		d, _ := h.app.Dashboard.Get(sess.ID)
		require.Equal(t, parent.ID, *d.Cycles[1].ParentCycleID)
		require.Equal(t, domain.Objectives, *d.Cycles[1].BranchPoint)
		h.waitFor("both cycles in the session's list", func() bool {
			s, err := h.app.Service.GetSession(ctx, sess.ID)
			require.NoError(t, err)
			return len(s.CycleIDs) == 2
		})
		s, err := h.app.Service.GetSession(ctx, sess.ID)
		require.NoError(t, err)
		require.Equal(t, []uuid.UUID{parent.ID, child.ID}, s.CycleIDs)
	})
}

// Journey 3: resume. The dashboard rebuilt from stored state equals the one
// built incrementally from the events.
func TestJourneyResumeDashboard(t *testing.T) {
	t.Parallel()
	runModes(t, func(t *testing.T, h *harness) {
		ctx, _ := h.ctx()
		sess, err := h.app.Service.CreateSession(ctx, app.CreateSession{Title: "Resume me"})
		require.NoError(t, err)
		c, err := h.app.Service.CreateCycle(ctx, sess.ID)
		require.NoError(t, err)
		for _, ct := range domain.ComponentOrder[:5] {
			h.runComponent(c.ID, ct)
		}
		_, err = h.app.Service.StartComponent(ctx, c.ID, domain.Tradeoffs)
		require.NoError(t, err)
		_, err = h.app.Service.SendMessage(ctx, SendMessageCmd(c.ID, domain.Tradeoffs, "note: thinking about it"))
		require.NoError(t, err)
		child, err := h.app.Service.BranchCycle(ctx, app.BranchCycle{CycleID: c.ID, BranchPoint: domain.Tradeoffs})
		require.NoError(t, err)
		_, err = h.app.Service.MarkComponentForRevision(ctx, c.ID, domain.Alternatives, "one more idea")
		require.NoError(t, err)
		_, err = h.app.Service.RenameSession(ctx, sess.ID, "Resumed")
		require.NoError(t, err)

		h.waitEvents(events.TypeSessionRenamed, 1, forAgg(sess.ID))
		h.waitEvents(events.TypePughScoresComputed, 1, forAgg(child.ID))
		h.waitFor("incremental dashboard caught up", func() bool {
			d, ok := h.app.Dashboard.Get(sess.ID)
			return ok && d.Title == "Resumed" && len(d.Cycles) == 2 && d.Cycles[1].Pugh != nil &&
				d.Cycles[0].Components[domain.Alternatives.Index()].Status == domain.NeedsRevision
		})
		h.settle()
		incremental, _ := h.app.Dashboard.Get(sess.ID)
		require.NotNil(t, incremental.Cycles[1].Pugh, "the branch inherited a complete consequences table")
		require.NotNil(t, incremental.Cycles[0].Pugh, "the parent's consequences stay complete")

		// A fresh process: a new cache over the same stored state.
		fresh := app.NewDashboardCache(h.app.Repos, nil)
		rebuilt, err := fresh.Load(ctx, sess.ID)
		require.NoError(t, err)
		incremental.Sequence, incremental.LastEventID = 0, ""
		a, _ := json.Marshal(incremental)
		b, _ := json.Marshal(rebuilt)
		require.JSONEq(t, string(a), string(b))

		// Rebuilding the live cache keeps its sequence.
		before, _ := h.app.Dashboard.Get(sess.ID)
		again, err := h.app.Dashboard.Rebuild(ctx, sess.ID)
		require.NoError(t, err)
		require.Equal(t, before.Sequence, again.Sequence)
		require.Equal(t, before.LastEventID, again.LastEventID)
	})
}
