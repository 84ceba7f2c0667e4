package wiring

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/app"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/events"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/stretchr/testify/require"
)

// Seed 2.3: session commands emit their events with the right payload and metadata.
func TestSeedSessionEvents(t *testing.T) {
	t.Parallel()
	runModes(t, func(t *testing.T, h *harness) {
		ctx, corr := h.ctx()
		desc := "Berlin or not"
		sess, err := h.app.Service.CreateSession(ctx, app.CreateSession{Title: "  Job offer ", Description: &desc})
		require.NoError(t, err)
		require.Equal(t, "Job offer", sess.Title)

		created := h.waitEvents(events.TypeSessionCreated, 1, forAgg(sess.ID))[0]
		require.Equal(t, events.AggregateSession, created.AggregateType)
		require.Equal(t, 1, created.SchemaVersion)
		require.Equal(t, corr, created.Metadata.CorrelationID)
		require.Equal(t, h.user, created.Metadata.UserID)
		require.Empty(t, created.Metadata.CausationID)
		p := payload(t, created)
		require.Equal(t, sess.ID.String(), p["session_id"])
		require.Equal(t, h.user, p["user_id"])
		require.Equal(t, "Job offer", p["title"])
		require.Equal(t, desc, p["description"])

		ctx2, corr2 := h.ctx()
		old, err := h.app.Service.RenameSession(ctx2, sess.ID, "New job?")
		require.NoError(t, err)
		require.Equal(t, "Job offer", old)
		renamed := h.waitEvents(events.TypeSessionRenamed, 1, forAgg(sess.ID))[0]
		require.Equal(t, corr2, renamed.Metadata.CorrelationID)
		rp := payload(t, renamed)
		require.Equal(t, "Job offer", rp["old_title"])
		require.Equal(t, "New job?", rp["new_title"])

		// Another user can neither read nor change it.
		other := h.userCtx("intruder")
		_, err = h.app.Service.RenameSession(other, sess.ID, "mine")
		require.ErrorIs(t, err, domain.ErrForbidden)
		_, err = h.app.Service.GetSession(other, sess.ID)
		require.ErrorIs(t, err, domain.ErrForbidden)
		require.ErrorIs(t, h.app.Service.ArchiveSession(other, sess.ID), domain.ErrForbidden)
		_, err = h.app.Service.CreateCycle(other, sess.ID)
		require.ErrorIs(t, err, domain.ErrForbidden)
		_, err = h.app.Service.CreateSession(context.Background(), app.CreateSession{Title: "x"})
		require.ErrorIs(t, err, domain.ErrForbidden, "no user in context")

		ctx3, _ := h.ctx()
		require.NoError(t, h.app.Service.ArchiveSession(ctx3, sess.ID))
		archived := h.waitEvents(events.TypeSessionArchived, 1, forAgg(sess.ID))[0]
		require.Equal(t, sess.ID.String(), payload(t, archived)["session_id"])
		require.ErrorIs(t, h.app.Service.ArchiveSession(ctx3, sess.ID), domain.ErrConflict)
		_, err = h.app.Service.CreateCycle(ctx3, sess.ID)
		require.ErrorIs(t, err, domain.ErrConflict, "archived session rejects changes")
		_, err = h.app.Service.GetSession(ctx3, [16]byte{1})
		require.ErrorIs(t, err, domain.ErrNotFound)
	})
}

// Seed 3.4: the session's cycle list updates on cycle creation, through
// the SessionCycleTracker, with causation and correlation.
func TestSeedCycleListUpdatesOnCycleCreation(t *testing.T) {
	t.Parallel()
	runModes(t, func(t *testing.T, h *harness) {
		ctx, corr := h.ctx()
		sess, err := h.app.Service.CreateSession(ctx, app.CreateSession{Title: "Cycles"})
		require.NoError(t, err)
		ctx, corr = h.ctx()
		c1, err := h.app.Service.CreateCycle(ctx, sess.ID)
		require.NoError(t, err)

		created := h.waitEvents(events.TypeCycleCreated, 1, forAgg(c1.ID))[0]
		cp := payload(t, created)
		require.Equal(t, sess.ID.String(), cp["session_id"])
		require.Nil(t, cp["parent_cycle_id"])
		require.Equal(t, corr, created.Metadata.CorrelationID)

		added := h.waitEvents(events.TypeSessionCycleAdded, 1, withField("cycle_id", c1.ID.String()))[0]
		ap := payload(t, added)
		require.Equal(t, true, ap["is_root_cycle"])
		require.Equal(t, sess.ID.String(), ap["session_id"])
		require.Equal(t, created.EventID.String(), added.Metadata.CausationID, "caused by cycle.created")
		require.Equal(t, corr, added.Metadata.CorrelationID, "keeps the correlation")
		require.Equal(t, h.user, added.Metadata.UserID)

		h.waitFor("cycle in the session's list", func() bool {
			s, err := h.app.Service.GetSession(ctx, sess.ID)
			return err == nil && len(s.CycleIDs) == 1 && s.CycleIDs[0] == c1.ID
		})

		c2, err := h.app.Service.CreateCycle(ctx, sess.ID)
		require.NoError(t, err)
		added2 := h.waitEvents(events.TypeSessionCycleAdded, 1, withField("cycle_id", c2.ID.String()))[0]
		require.Equal(t, false, payload(t, added2)["is_root_cycle"])
		h.waitFor("two cycles", func() bool {
			s, _ := h.app.Service.GetSession(ctx, sess.ID)
			return s != nil && len(s.CycleIDs) == 2
		})

		// A redelivered cycle.created changes nothing and raises nothing.
		require.NoError(t, h.publisher().Publish(context.Background(), created))
		h.settle()
		s, err := h.app.Service.GetSession(ctx, sess.ID)
		require.NoError(t, err)
		require.Len(t, s.CycleIDs, 2)
		require.Len(t, h.bus.Filter(func(e eventbus.Envelope) bool {
			return e.EventType == events.TypeSessionCycleAdded && e.AggregateID == sess.ID.String()
		}), 2)
	})
}

// Seed 3.4: component lifecycle events carry session, cycle and component
// ids, the progress, and keep the correlation; the conversation starts.
func TestSeedComponentLifecycleEvents(t *testing.T) {
	t.Parallel()
	runModes(t, func(t *testing.T, h *harness) {
		ctx, _ := h.ctx()
		sess, err := h.app.Service.CreateSession(ctx, app.CreateSession{Title: "Lifecycle"})
		require.NoError(t, err)
		c, err := h.app.Service.CreateCycle(ctx, sess.ID)
		require.NoError(t, err)
		ir, _ := c.Component(domain.IssueRaising)

		_, err = h.app.Service.StartComponent(ctx, c.ID, domain.ProblemFrame)
		require.Equal(t, "previous_component_required", domain.CodeOf(err))
		require.ErrorIs(t, err, domain.ErrConflict)

		sctx, corr := h.ctx()
		_, err = h.app.Service.StartComponent(sctx, c.ID, domain.IssueRaising)
		require.NoError(t, err)
		started := h.waitEvents(events.TypeComponentStarted, 1, forAgg(c.ID))[0]
		sp := payload(t, started)
		require.Equal(t, sess.ID.String(), sp["session_id"])
		require.Equal(t, c.ID.String(), sp["cycle_id"])
		require.Equal(t, ir.ID.String(), sp["component_id"])
		require.Equal(t, "issue_raising", sp["component_type"])
		require.Equal(t, corr, started.Metadata.CorrelationID)

		convStarted := h.waitEvents(events.TypeConversationStarted, 1, withField("component_id", ir.ID.String()))[0]
		require.Equal(t, started.EventID.String(), convStarted.Metadata.CausationID)
		require.Equal(t, corr, convStarted.Metadata.CorrelationID)
		h.waitFor("conversation created", func() bool {
			conv, err := h.app.Service.GetConversation(ctx, c.ID, domain.IssueRaising)
			return err == nil && conv.State == domain.ConvReady && conv.SystemPrompt != ""
		})

		out := json.RawMessage(`{"potential_decisions":[{"id":"d1","description":"x"}]}`)
		_, err = h.app.Service.UpdateComponentOutput(ctx, c.ID, domain.IssueRaising, out)
		require.NoError(t, err)
		upd := h.waitEvents(events.TypeComponentOutputUpdated, 1, forAgg(c.ID))[0]
		require.Equal(t, ir.ID.String(), payload(t, upd)["component_id"])
		require.NotContains(t, string(upd.Payload), `"x"`, "the output itself is not in the event")

		_, err = h.app.Service.UpdateComponentOutput(ctx, c.ID, domain.IssueRaising, json.RawMessage(`[1]`))
		require.ErrorIs(t, err, domain.ErrValidation)

		_, err = h.app.Service.CompleteComponent(ctx, c.ID, domain.IssueRaising)
		require.NoError(t, err)
		done := h.waitEvents(events.TypeComponentCompleted, 1, forAgg(c.ID))[0]
		prog := payload(t, done)["progress"].(map[string]any)
		require.Equal(t, map[string]any{"completed_count": 1.0, "total_count": 8.0, "percent_complete": 12.0, "current_step": "issue_raising"}, prog)

		_, err = h.app.Service.MarkComponentForRevision(ctx, c.ID, domain.IssueRaising, "new facts")
		require.NoError(t, err)
		rev := h.waitEvents(events.TypeComponentMarkedForRevision, 1, forAgg(c.ID))[0]
		require.Equal(t, "new facts", payload(t, rev)["reason"])
		require.Equal(t, ir.ID.String(), payload(t, rev)["component_id"])

		_, err = h.app.Service.CompleteCycle(ctx, c.ID)
		require.Equal(t, "decision_quality_incomplete", domain.CodeOf(err))
		_, err = h.app.Service.StartComponent(h.userCtx("intruder"), c.ID, domain.ProblemFrame)
		require.ErrorIs(t, err, domain.ErrForbidden)

		cyc, err := h.app.Service.ArchiveCycle(ctx, c.ID)
		require.NoError(t, err)
		require.Equal(t, domain.CycleArchived, cyc.Status)
		h.waitEvents(events.TypeCycleArchived, 1, forAgg(c.ID))
		_, err = h.app.Service.StartComponent(ctx, c.ID, domain.ProblemFrame)
		require.ErrorIs(t, err, domain.ErrConflict)
	})
}

// A failing unit of work leaves no state and raises no event.
func TestFailedCommandLeavesNoTrace(t *testing.T) {
	t.Parallel()
	runModes(t, func(t *testing.T, h *harness) {
		ctx, _ := h.ctx()
		sess, err := h.app.Service.CreateSession(ctx, app.CreateSession{Title: "Atomic"})
		require.NoError(t, err)
		boom := errors.New("boom")
		err = h.app.UnitOfWork.Do(ctx, func(ctx context.Context) error {
			s, err := h.app.Repos.Sessions.Get(ctx, sess.ID)
			require.NoError(t, err)
			_, _ = s.Rename("changed", s.UpdatedAt)
			require.NoError(t, h.app.Repos.Sessions.Update(ctx, s))
			got, err := h.app.Repos.Sessions.Get(ctx, sess.ID)
			require.NoError(t, err)
			require.Equal(t, "changed", got.Title, "reads inside the unit see its writes")
			require.NoError(t, raise(ctx, events.SessionRenamed{SessionID: sess.ID, OldTitle: "Atomic", NewTitle: "changed"}))
			return boom
		})
		require.ErrorIs(t, err, boom)
		got, err := h.app.Service.GetSession(ctx, sess.ID)
		require.NoError(t, err)
		require.Equal(t, "Atomic", got.Title)
		h.waitEvents(events.TypeSessionCreated, 1, forAgg(sess.ID))
		require.Empty(t, h.bus.Filter(func(e eventbus.Envelope) bool {
			return e.EventType == events.TypeSessionRenamed && e.AggregateID == sess.ID.String()
		}))
	})
}
