package app_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/adapters/memory"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/ai"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/app"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/events"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/idempotency"
	"github.com/stretchr/testify/require"
)

type fixture struct {
	svc  *app.Service
	dash *app.DashboardCache
	bus  *eventbus.InMemoryBus
	ctx  context.Context
}

func setup(t *testing.T, provider ai.Provider) fixture {
	t.Helper()
	bus := eventbus.NewInMemoryBus(nil)
	t.Cleanup(func() { _ = bus.Close() })
	store := memory.NewStore()
	uow, err := memory.NewUnitOfWork(store, bus, nil)
	require.NoError(t, err)
	svc, err := app.NewService(app.Config{Repos: store.Repositories(), UnitOfWork: uow, AI: provider})
	require.NoError(t, err)
	dash := app.NewDashboardCache(store.Repositories(), nil)
	_, err = app.Subscribe(context.Background(), bus, svc, dash, app.Stores{Durable: idempotency.NewMemoryStore(nil), Dashboard: idempotency.NewMemoryStore(nil)})
	require.NoError(t, err)
	ctx := eventbus.WithMetadata(context.Background(), eventbus.Metadata{UserID: "u1"})
	return fixture{svc: svc, dash: dash, bus: bus, ctx: ctx}
}

func TestNewServiceValidates(t *testing.T) {
	t.Parallel()
	_, err := app.NewService(app.Config{})
	require.Error(t, err)
}

func TestEveryEventHasAnUpdateType(t *testing.T) {
	t.Parallel()
	for _, typ := range events.AllTypes {
		require.NotEmpty(t, app.UpdateTypeOf(typ), typ)
	}
}

func TestCommandGeneratesCorrelationWhenMissing(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	_, err := f.svc.CreateSession(f.ctx, app.CreateSession{Title: "x"})
	require.NoError(t, err)
	env := f.bus.EventsOfType(events.TypeSessionCreated)[0]
	require.NotEmpty(t, env.Metadata.CorrelationID)
	require.Equal(t, "u1", env.Metadata.UserID)
}

// A redelivered component.completed reaches the analysis handler again but
// raises no second analysis event (idempotency.Wrap keyed by name + id).
func TestAnalysisTriggerIsIdempotent(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	s, err := f.svc.CreateSession(f.ctx, app.CreateSession{Title: "x"})
	require.NoError(t, err)
	c, err := f.svc.CreateCycle(f.ctx, s.ID)
	require.NoError(t, err)
	for _, ct := range domain.ComponentOrder[:5] {
		_, err := f.svc.StartComponent(f.ctx, c.ID, ct)
		require.NoError(t, err)
	}
	outs := map[domain.ComponentType]string{
		domain.IssueRaising: `{}`, domain.ProblemFrame: `{}`,
		domain.Objectives:   `{"fundamental_objectives":[{"id":"o1","description":"x"}]}`,
		domain.Alternatives: `{"alternatives":[{"id":"a","name":"A","is_status_quo":true},{"id":"b","name":"B"}],"status_quo_id":"a"}`,
		domain.Consequences: `{"table":{"alternative_ids":["a","b"],"objective_ids":["o1"],"cells":{"a:o1":{"rating":0},"b:o1":{"rating":-1}}}}`,
	}
	for _, ct := range domain.ComponentOrder[:5] {
		_, err := f.svc.UpdateComponentOutput(f.ctx, c.ID, ct, []byte(outs[ct]))
		require.NoError(t, err)
		_, err = f.svc.CompleteComponent(f.ctx, c.ID, ct)
		require.NoError(t, err)
	}
	pugh := f.bus.EventsOfType(events.TypePughScoresComputed)
	require.Len(t, pugh, 1)
	require.Contains(t, string(pugh[0].Payload), `"best_alternative_id":"a"`)
	completed := f.bus.EventsOfType(events.TypeComponentCompleted)
	require.NoError(t, f.bus.Publish(context.Background(), completed[len(completed)-1]))
	require.Len(t, f.bus.EventsOfType(events.TypePughScoresComputed), 1)
	d, _ := f.dash.Get(s.ID)
	require.Equal(t, 5, d.Cycles[0].Progress.CompletedCount)
	require.Equal(t, 62, d.Cycles[0].Progress.PercentComplete)

	// Revising consequences clears the Pugh panel until it completes again.
	_, err = f.svc.MarkComponentForRevision(f.ctx, c.ID, domain.Consequences, "rethink")
	require.NoError(t, err)
	d, _ = f.dash.Get(s.ID)
	require.Nil(t, d.Cycles[0].Pugh)
	_, err = f.svc.CompleteComponent(f.ctx, c.ID, domain.Consequences)
	require.NoError(t, err)
	require.Len(t, f.bus.EventsOfType(events.TypePughScoresComputed), 2)
}

type failingAI struct{ err error }

func (f failingAI) Complete(context.Context, ai.Request) (ai.Response, error) {
	return ai.Response{}, f.err
}
func (f failingAI) Stream(context.Context, ai.Request, func(string) error) (ai.Response, error) {
	return ai.Response{}, f.err
}

func TestSendMessageRules(t *testing.T) {
	t.Parallel()
	f := setup(t, failingAI{&ai.RateLimitError{RetryAfter: 3}})
	s, err := f.svc.CreateSession(f.ctx, app.CreateSession{Title: "x"})
	require.NoError(t, err)
	c, err := f.svc.CreateCycle(f.ctx, s.ID)
	require.NoError(t, err)

	_, err = f.svc.SendMessage(f.ctx, app.SendMessage{CycleID: c.ID, ComponentType: domain.IssueRaising, Content: "hi"})
	require.Equal(t, "component_not_started", domain.CodeOf(err))
	_, err = f.svc.StartComponent(f.ctx, c.ID, domain.IssueRaising)
	require.NoError(t, err)
	_, err = f.svc.SendMessage(f.ctx, app.SendMessage{CycleID: c.ID, ComponentType: domain.IssueRaising, Content: strings.Repeat("x", 10_001)})
	require.ErrorIs(t, err, domain.ErrValidation)
	_, err = f.svc.SendMessage(f.ctx, app.SendMessage{CycleID: c.ID, ComponentType: domain.IssueRaising, Content: "  "})
	require.ErrorIs(t, err, domain.ErrValidation)
	_, err = f.svc.SendMessage(eventbus.WithMetadata(context.Background(), eventbus.Metadata{UserID: "u2"}),
		app.SendMessage{CycleID: c.ID, ComponentType: domain.IssueRaising, Content: "hi"})
	require.ErrorIs(t, err, domain.ErrForbidden)

	// The provider fails: its typed error comes back; the user's message stays.
	_, err = f.svc.SendMessage(f.ctx, app.SendMessage{CycleID: c.ID, ComponentType: domain.IssueRaising, Content: "hello there"})
	var rl *ai.RateLimitError
	require.True(t, errors.As(err, &rl), "%v", err)
	conv, err := f.svc.GetConversation(f.ctx, c.ID, domain.IssueRaising)
	require.NoError(t, err)
	require.Len(t, conv.Messages, 1)
	require.Len(t, f.bus.EventsOfType(events.TypeMessageSent), 1)
	require.Len(t, f.bus.EventsOfType(events.TypeConversationStarted), 1, "created once, by the init handler")
}
