// Package repotest is the contract every Choice Sherpa repository
// implementation passes (in memory and PostgreSQL): round trips that
// preserve every field, not-found and duplicate errors, list ordering,
// append-only messages, and unit-of-work atomicity (a failed unit leaves
// nothing; reads inside a unit see its writes).
package repotest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/app"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/choicesherpa/eventkit/outbox"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// Env is one fresh, empty set of repositories and the unit of work that
// commits their writes.
type Env struct {
	Repos app.Repositories
	UoW   outbox.UnitOfWork
}

var base = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func at(n int) time.Time { return base.Add(time.Duration(n) * time.Second) }

// Run runs the contract; newEnv is called once per subtest.
func Run(t *testing.T, newEnv func(t *testing.T) Env) {
	t.Run("session round trip", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ctx := context.Background()
		desc := "why"
		s, err := domain.NewSession("u1", "Title", &desc, at(0))
		require.NoError(t, err)
		require.NoError(t, e.Repos.Sessions.Create(ctx, s))
		require.ErrorIs(t, e.Repos.Sessions.Create(ctx, s), domain.ErrConflict)
		got, err := e.Repos.Sessions.Get(ctx, s.ID)
		require.NoError(t, err)
		require.Equal(t, s, got)

		_, _, _ = s.AddCycle(uuid.New(), at(1))
		_, _ = s.Rename("New", at(2))
		require.NoError(t, s.Archive(at(3)))
		require.NoError(t, e.Repos.Sessions.Update(ctx, s))
		got, err = e.Repos.Sessions.Get(ctx, s.ID)
		require.NoError(t, err)
		require.Equal(t, s, got)

		_, err = e.Repos.Sessions.Get(ctx, uuid.New())
		require.ErrorIs(t, err, domain.ErrNotFound)
		ghost, _ := domain.NewSession("u1", "ghost", nil, at(0))
		require.ErrorIs(t, e.Repos.Sessions.Update(ctx, ghost), domain.ErrNotFound)
	})

	t.Run("sessions listed per user oldest first", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ctx := context.Background()
		var want []uuid.UUID
		for i := 3; i >= 1; i-- {
			s, _ := domain.NewSession("owner", "s", nil, at(i))
			require.NoError(t, e.Repos.Sessions.Create(ctx, s))
			want = append([]uuid.UUID{s.ID}, want...)
		}
		other, _ := domain.NewSession("other", "s", nil, at(0))
		require.NoError(t, e.Repos.Sessions.Create(ctx, other))
		got, err := e.Repos.Sessions.ListByUser(ctx, "owner")
		require.NoError(t, err)
		var ids []uuid.UUID
		for _, s := range got {
			ids = append(ids, s.ID)
		}
		require.Equal(t, want, ids)
	})

	t.Run("cycle round trip with components and branch", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ctx := context.Background()
		s, _ := domain.NewSession("u1", "S", nil, at(0))
		require.NoError(t, e.Repos.Sessions.Create(ctx, s))
		c := domain.NewCycle(s.ID, at(1))
		require.NoError(t, e.Repos.Cycles.Create(ctx, c))
		require.ErrorIs(t, e.Repos.Cycles.Create(ctx, c), domain.ErrConflict)
		got, err := e.Repos.Cycles.Get(ctx, c.ID)
		require.NoError(t, err)
		require.Equal(t, c, got)

		_, err = c.StartComponent(domain.IssueRaising, at(2))
		require.NoError(t, err)
		out := json.RawMessage(`{"b":1,"a":[1,2]}`)
		_, err = c.UpdateOutput(domain.IssueRaising, out, at(3))
		require.NoError(t, err)
		_, err = c.MarkForRevision(domain.IssueRaising, "because", at(4))
		require.NoError(t, err)
		require.NoError(t, e.Repos.Cycles.Update(ctx, c))
		got, err = e.Repos.Cycles.Get(ctx, c.ID)
		require.NoError(t, err)
		require.Equal(t, c, got)
		require.Equal(t, `{"b":1,"a":[1,2]}`, string(got.Components[0].Output), "output comes back byte for byte")

		label := "alt"
		child, err := c.Branch(domain.IssueRaising, &label, at(5))
		require.NoError(t, err)
		require.NoError(t, e.Repos.Cycles.Create(ctx, child))
		got, err = e.Repos.Cycles.Get(ctx, child.ID)
		require.NoError(t, err)
		require.Equal(t, child, got)

		list, err := e.Repos.Cycles.ListBySession(ctx, s.ID)
		require.NoError(t, err)
		require.Len(t, list, 2)
		require.Equal(t, c, list[0])
		require.Equal(t, child, list[1])

		_, err = e.Repos.Cycles.Get(ctx, uuid.New())
		require.ErrorIs(t, err, domain.ErrNotFound)
		require.ErrorIs(t, e.Repos.Cycles.Update(ctx, domain.NewCycle(s.ID, at(0))), domain.ErrNotFound)
	})

	t.Run("conversation one per component, messages appended", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ctx := context.Background()
		s, _ := domain.NewSession("u1", "S", nil, at(0))
		require.NoError(t, e.Repos.Sessions.Create(ctx, s))
		c := domain.NewCycle(s.ID, at(1))
		require.NoError(t, e.Repos.Cycles.Create(ctx, c))
		comp := c.Components[0]
		conv, err := domain.NewConversation(s.ID, c.ID, comp.ID, comp.Type, "prompt", at(2))
		require.NoError(t, err)
		require.NoError(t, e.Repos.Conversations.Create(ctx, conv))
		dup, _ := domain.NewConversation(s.ID, c.ID, comp.ID, comp.Type, "prompt", at(2))
		require.ErrorIs(t, e.Repos.Conversations.Create(ctx, dup), domain.ErrConflict, "at most one per component")

		_, err = conv.AddMessage(domain.RoleUser, "hello", at(3))
		require.NoError(t, err)
		conv.Phase = domain.PhaseGather
		require.NoError(t, e.Repos.Conversations.Update(ctx, conv))
		_, err = conv.AddMessage(domain.RoleAssistant, "hi there", at(4))
		require.NoError(t, err)
		require.NoError(t, e.Repos.Conversations.Update(ctx, conv))

		got, err := e.Repos.Conversations.Get(ctx, conv.ID)
		require.NoError(t, err)
		require.Equal(t, conv, got)
		got, err = e.Repos.Conversations.GetByComponent(ctx, comp.ID)
		require.NoError(t, err)
		require.Equal(t, conv, got)
		list, err := e.Repos.Conversations.ListBySession(ctx, s.ID)
		require.NoError(t, err)
		require.Equal(t, []*domain.Conversation{conv}, list)

		_, err = e.Repos.Conversations.GetByComponent(ctx, c.Components[1].ID)
		require.ErrorIs(t, err, domain.ErrNotFound)
		_, err = e.Repos.Conversations.Get(ctx, uuid.New())
		require.ErrorIs(t, err, domain.ErrNotFound)
	})

	t.Run("a failed unit of work leaves nothing", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ctx := context.Background()
		s, _ := domain.NewSession("u1", "Before", nil, at(0))
		require.NoError(t, e.Repos.Sessions.Create(ctx, s))
		boom := errors.New("boom")
		var created uuid.UUID
		err := e.UoW.Do(ctx, func(ctx context.Context) error {
			x, err := e.Repos.Sessions.Get(ctx, s.ID)
			require.NoError(t, err)
			_, _ = x.Rename("After", at(1))
			require.NoError(t, e.Repos.Sessions.Update(ctx, x))
			n, _ := domain.NewSession("u1", "New", nil, at(1))
			created = n.ID
			require.NoError(t, e.Repos.Sessions.Create(ctx, n))
			c := domain.NewCycle(s.ID, at(1))
			require.NoError(t, e.Repos.Cycles.Create(ctx, c))
			seen, err := e.Repos.Sessions.Get(ctx, s.ID)
			require.NoError(t, err)
			require.Equal(t, "After", seen.Title, "reads inside the unit see its writes")
			list, err := e.Repos.Cycles.ListBySession(ctx, s.ID)
			require.NoError(t, err)
			require.Len(t, list, 1)
			return boom
		})
		require.ErrorIs(t, err, boom)
		got, err := e.Repos.Sessions.Get(ctx, s.ID)
		require.NoError(t, err)
		require.Equal(t, "Before", got.Title)
		_, err = e.Repos.Sessions.Get(ctx, created)
		require.ErrorIs(t, err, domain.ErrNotFound)
		list, err := e.Repos.Cycles.ListBySession(ctx, s.ID)
		require.NoError(t, err)
		require.Empty(t, list)

		require.NoError(t, e.UoW.Do(ctx, func(ctx context.Context) error {
			x, err := e.Repos.Sessions.Get(ctx, s.ID)
			if err != nil {
				return err
			}
			_, _ = x.Rename("Committed", at(2))
			return e.Repos.Sessions.Update(ctx, x)
		}))
		got, err = e.Repos.Sessions.Get(ctx, s.ID)
		require.NoError(t, err)
		require.Equal(t, "Committed", got.Title)
	})

	t.Run("returned aggregates are copies", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ctx := context.Background()
		s, _ := domain.NewSession("u1", "Mine", nil, at(0))
		require.NoError(t, e.Repos.Sessions.Create(ctx, s))
		s.Title = "mutated after create"
		got, _ := e.Repos.Sessions.Get(ctx, s.ID)
		got.Title = "mutated after get"
		again, _ := e.Repos.Sessions.Get(ctx, s.ID)
		require.Equal(t, "Mine", again.Title)
	})
}
