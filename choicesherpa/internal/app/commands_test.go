package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/ai"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/app"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/events"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func asUser(user, corr string) context.Context {
	return eventbus.WithMetadata(context.Background(), eventbus.Metadata{UserID: user, CorrelationID: corr})
}

// Every command's events carry the request's correlation id and the acting
// user, and no causation (they are not follow-ups).
func TestCommandEventsCarryCorrelationAndUser(t *testing.T) {
	t.Parallel()
	f := setup(t, ai.Offline{})
	var sess *domain.Session
	var c, child *domain.Cycle
	steps := []struct {
		corr  string
		types []string
		run   func(ctx context.Context) error
	}{
		{"corr-create-session", []string{events.TypeSessionCreated}, func(ctx context.Context) (err error) {
			sess, err = f.svc.CreateSession(ctx, app.CreateSession{Title: "Job"})
			return err
		}},
		{"corr-rename", []string{events.TypeSessionRenamed}, func(ctx context.Context) error {
			_, err := f.svc.RenameSession(ctx, sess.ID, "Job?")
			return err
		}},
		{"corr-create-cycle", []string{events.TypeCycleCreated}, func(ctx context.Context) (err error) {
			c, err = f.svc.CreateCycle(ctx, sess.ID)
			return err
		}},
		{"corr-start", []string{events.TypeComponentStarted}, func(ctx context.Context) error {
			_, err := f.svc.StartComponent(ctx, c.ID, domain.IssueRaising)
			return err
		}},
		{"corr-output", []string{events.TypeComponentOutputUpdated}, func(ctx context.Context) error {
			_, err := f.svc.UpdateComponentOutput(ctx, c.ID, domain.IssueRaising, json.RawMessage(`{"synthesis":"x"}`))
			return err
		}},
		{"corr-complete", []string{events.TypeComponentCompleted}, func(ctx context.Context) error {
			_, err := f.svc.CompleteComponent(ctx, c.ID, domain.IssueRaising)
			return err
		}},
		{"corr-revise", []string{events.TypeComponentMarkedForRevision}, func(ctx context.Context) error {
			_, err := f.svc.MarkComponentForRevision(ctx, c.ID, domain.IssueRaising, "new facts")
			return err
		}},
		{"corr-branch", []string{events.TypeCycleBranched}, func(ctx context.Context) (err error) {
			child, err = f.svc.BranchCycle(ctx, app.BranchCycle{CycleID: c.ID, BranchPoint: domain.IssueRaising})
			return err
		}},
		{"corr-send", []string{events.TypeMessageSent}, func(ctx context.Context) error {
			_, err := f.svc.SendMessage(ctx, app.SendMessage{CycleID: child.ID, ComponentType: domain.IssueRaising, Content: "hello"})
			return err
		}},
		{"corr-archive-cycle", []string{events.TypeCycleArchived}, func(ctx context.Context) error {
			_, err := f.svc.ArchiveCycle(ctx, c.ID)
			return err
		}},
		{"corr-archive-session", []string{events.TypeSessionArchived}, func(ctx context.Context) error {
			return f.svc.ArchiveSession(ctx, sess.ID)
		}},
	}
	for _, st := range steps {
		require.NoError(t, st.run(asUser("u1", st.corr)), st.corr)
		for _, typ := range st.types {
			evs := f.bus.Filter(func(e eventbus.Envelope) bool { return e.EventType == typ && e.Metadata.CorrelationID == st.corr })
			require.NotEmpty(t, evs, "%s raised %s", st.corr, typ)
			for _, e := range evs {
				require.Equal(t, "u1", e.Metadata.UserID, "%s: user id", typ)
				require.Empty(t, e.Metadata.CausationID, "%s: a command event has no cause", typ)
			}
		}
	}
	// message.sent for the user and the assistant, both under the request's ids.
	sent := f.bus.Filter(func(e eventbus.Envelope) bool {
		return e.EventType == events.TypeMessageSent && e.Metadata.CorrelationID == "corr-send"
	})
	require.Len(t, sent, 2)
}

// Every command and query checks ownership (403) before anything else, and
// a refused command raises nothing.
func TestEveryCommandChecksOwnership(t *testing.T) {
	t.Parallel()
	f := setup(t, ai.Offline{})
	sess, err := f.svc.CreateSession(f.ctx, app.CreateSession{Title: "Job"})
	require.NoError(t, err)
	c, err := f.svc.CreateCycle(f.ctx, sess.ID)
	require.NoError(t, err)
	_, err = f.svc.StartComponent(f.ctx, c.ID, domain.IssueRaising)
	require.NoError(t, err)
	_, err = f.svc.UpdateComponentOutput(f.ctx, c.ID, domain.IssueRaising, json.RawMessage(`{}`))
	require.NoError(t, err)

	intruder := asUser("u2", "corr-intruder")
	ops := map[string]func(ctx context.Context) error{
		"RenameSession":  func(ctx context.Context) error { _, err := f.svc.RenameSession(ctx, sess.ID, "x"); return err },
		"ArchiveSession": func(ctx context.Context) error { return f.svc.ArchiveSession(ctx, sess.ID) },
		"CreateCycle":    func(ctx context.Context) error { _, err := f.svc.CreateCycle(ctx, sess.ID); return err },
		"BranchCycle": func(ctx context.Context) error {
			_, err := f.svc.BranchCycle(ctx, app.BranchCycle{CycleID: c.ID, BranchPoint: domain.IssueRaising})
			return err
		},
		"StartComponent": func(ctx context.Context) error {
			_, err := f.svc.StartComponent(ctx, c.ID, domain.ProblemFrame)
			return err
		},
		"UpdateComponentOutput": func(ctx context.Context) error {
			_, err := f.svc.UpdateComponentOutput(ctx, c.ID, domain.IssueRaising, json.RawMessage(`{}`))
			return err
		},
		"CompleteComponent": func(ctx context.Context) error {
			_, err := f.svc.CompleteComponent(ctx, c.ID, domain.IssueRaising)
			return err
		},
		"MarkComponentForRevision": func(ctx context.Context) error {
			_, err := f.svc.MarkComponentForRevision(ctx, c.ID, domain.IssueRaising, "x")
			return err
		},
		"CompleteCycle": func(ctx context.Context) error { _, err := f.svc.CompleteCycle(ctx, c.ID); return err },
		"ArchiveCycle":  func(ctx context.Context) error { _, err := f.svc.ArchiveCycle(ctx, c.ID); return err },
		"SendMessage": func(ctx context.Context) error {
			_, err := f.svc.SendMessage(ctx, app.SendMessage{CycleID: c.ID, ComponentType: domain.IssueRaising, Content: "hi"})
			return err
		},
		"GetSession": func(ctx context.Context) error { _, err := f.svc.GetSession(ctx, sess.ID); return err },
		"GetCycle":   func(ctx context.Context) error { _, err := f.svc.GetCycle(ctx, c.ID); return err },
		"ListCycles": func(ctx context.Context) error { _, err := f.svc.ListCycles(ctx, sess.ID); return err },
		"GetConversation": func(ctx context.Context) error {
			_, err := f.svc.GetConversation(ctx, c.ID, domain.IssueRaising)
			return err
		},
		"Dashboard": func(ctx context.Context) error { _, err := f.svc.Dashboard(ctx, f.dash, sess.ID); return err },
	}
	for name, op := range ops {
		before := f.bus.Count()
		require.ErrorIs(t, op(intruder), domain.ErrForbidden, name)
		require.ErrorIs(t, op(context.Background()), domain.ErrForbidden, "%s without a user", name)
		require.Equal(t, before, f.bus.Count(), "%s raised events for an intruder", name)
	}
	// Unknown aggregates are 404, not 403.
	_, err = f.svc.GetSession(f.ctx, uuid.New())
	require.ErrorIs(t, err, domain.ErrNotFound)
	_, err = f.svc.StartComponent(f.ctx, uuid.New(), domain.IssueRaising)
	require.ErrorIs(t, err, domain.ErrNotFound)
}

// An archived session rejects every change (409) and raises nothing.
func TestArchivedSessionRejectsEveryChange(t *testing.T) {
	t.Parallel()
	f := setup(t, ai.Offline{})
	sess, err := f.svc.CreateSession(f.ctx, app.CreateSession{Title: "Job"})
	require.NoError(t, err)
	c, err := f.svc.CreateCycle(f.ctx, sess.ID)
	require.NoError(t, err)
	_, err = f.svc.StartComponent(f.ctx, c.ID, domain.IssueRaising)
	require.NoError(t, err)
	require.NoError(t, f.svc.ArchiveSession(f.ctx, sess.ID))

	ops := []func() error{
		func() error { _, err := f.svc.RenameSession(f.ctx, sess.ID, "x"); return err },
		func() error { return f.svc.ArchiveSession(f.ctx, sess.ID) },
		func() error { _, err := f.svc.CreateCycle(f.ctx, sess.ID); return err },
		func() error {
			_, err := f.svc.BranchCycle(f.ctx, app.BranchCycle{CycleID: c.ID, BranchPoint: domain.IssueRaising})
			return err
		},
		func() error { _, err := f.svc.StartComponent(f.ctx, c.ID, domain.ProblemFrame); return err },
		func() error {
			_, err := f.svc.UpdateComponentOutput(f.ctx, c.ID, domain.IssueRaising, json.RawMessage(`{}`))
			return err
		},
		func() error { _, err := f.svc.CompleteComponent(f.ctx, c.ID, domain.IssueRaising); return err },
		func() error {
			_, err := f.svc.MarkComponentForRevision(f.ctx, c.ID, domain.IssueRaising, "x")
			return err
		},
		func() error { _, err := f.svc.ArchiveCycle(f.ctx, c.ID); return err },
		func() error {
			_, err := f.svc.SendMessage(f.ctx, app.SendMessage{CycleID: c.ID, ComponentType: domain.IssueRaising, Content: "hi"})
			return err
		},
	}
	before := f.bus.Count()
	for i, op := range ops {
		require.ErrorIs(t, op(), domain.ErrConflict, fmt.Sprint("op ", i))
	}
	require.Equal(t, before, f.bus.Count())
	// Reads still work for the owner.
	_, err = f.svc.GetCycle(f.ctx, c.ID)
	require.NoError(t, err)
}
