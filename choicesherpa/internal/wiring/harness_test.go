package wiring

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// harness runs a scenario against one wiring mode.
type harness struct {
	t     *testing.T
	app   *App
	bus   *eventbus.InMemoryBus
	user  string
	async bool // events reach handlers through the outbox relay
	// pub publishes to the bus the handlers listen on (defaults to bus).
	pub eventbus.Publisher
	// drained reports whether the bus has delivered everything (nil: it
	// is synchronous).
	drained func() bool
}

func (h *harness) publisher() eventbus.Publisher {
	if h.pub != nil {
		return h.pub
	}
	return h.bus
}

// modes lists the wiring modes every scenario runs on.
var modes = map[string]func(t *testing.T) *harness{
	"memory": newMemoryHarness,
}

func runModes(t *testing.T, scenario func(t *testing.T, h *harness)) {
	t.Helper()
	for name, mk := range modes {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			scenario(t, mk(t))
		})
	}
}

func newMemoryHarness(t *testing.T) *harness {
	bus := eventbus.NewInMemoryBus(nil)
	a, err := Build(context.Background(), Config{Bus: bus})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, a.Close())
		require.NoError(t, bus.Close())
	})
	return &harness{t: t, app: a, bus: bus, user: "user-" + uuid.NewString()[:8]}
}

// ctx returns a command context for the harness user with a fresh
// correlation id (returned too).
func (h *harness) ctx() (context.Context, string) {
	corr := uuid.NewString()
	return eventbus.WithMetadata(context.Background(), eventbus.Metadata{CorrelationID: corr, UserID: h.user}), corr
}

func (h *harness) userCtx(user string) context.Context {
	return eventbus.WithMetadata(context.Background(), eventbus.Metadata{UserID: user})
}

// waitEvents waits (bounded) until at least n events of typ that satisfy
// keep were published, and returns them.
func (h *harness) waitEvents(typ string, n int, keep func(eventbus.Envelope) bool) []eventbus.Envelope {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var got []eventbus.Envelope
	_, err := h.bus.WaitFor(ctx, func(es []eventbus.Envelope) bool {
		got = got[:0]
		for _, e := range es {
			if e.EventType == typ && (keep == nil || keep(e)) {
				got = append(got, e)
			}
		}
		return len(got) >= n
	})
	require.NoError(h.t, err, "waiting for %d %s, have %d", n, typ, len(got))
	return append([]eventbus.Envelope(nil), got...)
}

// forAgg keeps events of one aggregate.
func forAgg(id uuid.UUID) func(eventbus.Envelope) bool {
	return func(e eventbus.Envelope) bool { return e.AggregateID == id.String() }
}

// withField keeps events whose payload has field == value.
func withField(field, value string) func(eventbus.Envelope) bool {
	return func(e eventbus.Envelope) bool {
		var m map[string]any
		_ = json.Unmarshal(e.Payload, &m)
		v, _ := m[field].(string)
		return v == value
	}
}

func payload(t *testing.T, e eventbus.Envelope) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(e.Payload, &m))
	return m
}

// waitFor polls cond (bounded) for state that handlers produce.
func (h *harness) waitFor(msg string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settle waits (bounded) until the outbox is drained: every event was
// published and handled (a no-op in the embedded mode, which is synchronous).
func (h *harness) settle() {
	h.t.Helper()
	quiet := func() bool {
		n, err := h.app.PendingEvents(context.Background())
		require.NoError(h.t, err)
		return n == 0 && (h.drained == nil || h.drained())
	}
	h.waitFor("outbox and bus drained", func() bool { return quiet() && quiet() })
}

// answers is the offline facilitator script of a whole decision.
var answers = map[domain.ComponentType]string{
	domain.IssueRaising: "decision: Whether to accept the job offer in Berlin\nobjective: Grow my career\nuncertainty: Will the new team be good\nconsideration: Family is settled here",
	domain.ProblemFrame: "decision_maker: Alex (software engineer)\nfocal_decision: Decide whether to accept the Berlin offer by March\nscope: next three years\nconstraint: Partner's job\nparty: Sam (affected_party)",
	domain.Objectives:   "fundamental: Career growth | title level\nfundamental: Income | yearly salary\nfundamental: Family happiness | weekly check-in\nmeans: Learn new tech",
	domain.Alternatives: "status quo: Stay in current job | keep things as they are\nalternative: Accept Berlin offer | move the family\nalternative: Negotiate remote work | hybrid arrangement",
	domain.Consequences: "rating: Accept Berlin / Career = +2 | bigger role\nrating: Accept Berlin / Income = +1 | raise\nrating: Accept Berlin / Family = -2 | a hard move\n" +
		"rating: Negotiate / Career = +1 | some growth\nrating: Negotiate / Income = 0 | same pay\nrating: Negotiate / Family = +1 | more time at home",
	domain.Tradeoffs:      "note: Negotiating keeps the family happy at a small career cost",
	domain.Recommendation: "standout: Negotiate remote work | best balance\nsynthesis: Negotiating remote work keeps most of the career upside while protecting family life, and it dominates staying put.\ncaveat: The employer may refuse",
	domain.DecisionQuality: "Helpful Problem Frame: 85 | clear frame\nClear Objectives: 90 | explicit\nCreative Alternatives: 70 | could add more | Brainstorm two more options\n" +
		"Reliable Consequence Information: 60 | mostly guesses\nLogically Correct Reasoning: 88 | sound\nClear Tradeoffs: 82 | explicit\nCommitment to Follow Through: 95 | strong",
	domain.NotesNextSteps: "action: Ask the employer about remote work\nquestion: What if they refuse\nnote: Revisit in two weeks",
}

// runComponent starts t (when not started), talks it through with the
// offline facilitator and completes it.
func (h *harness) runComponent(cycleID uuid.UUID, t domain.ComponentType) {
	h.t.Helper()
	ctx, _ := h.ctx()
	c, err := h.app.Service.GetCycle(ctx, cycleID)
	require.NoError(h.t, err)
	if comp, _ := c.Component(t); comp.Status == domain.NotStarted {
		_, err = h.app.Service.StartComponent(ctx, cycleID, t)
		require.NoError(h.t, err, "start %s", t)
	}
	r1, err := h.app.Service.SendMessage(ctx, SendMessageCmd(cycleID, t, answers[t]))
	require.NoError(h.t, err, "first message of %s", t)
	require.Equal(h.t, domain.PhaseGather, r1.Phase)
	var streamed string
	cmd := SendMessageCmd(cycleID, t, "that's all")
	cmd.OnDelta = func(d string) error { streamed += d; return nil }
	r2, err := h.app.Service.SendMessage(ctx, cmd)
	require.NoError(h.t, err, "second message of %s", t)
	require.Equal(h.t, domain.PhaseExtract, r2.Phase, "%s", t)
	require.True(h.t, r2.OutputApplied, "%s output extracted and applied", t)
	require.Equal(h.t, r2.AssistantMessage.Content, streamed, "the reply streamed in full")
	_, err = h.app.Service.CompleteComponent(ctx, cycleID, t)
	require.NoError(h.t, err, "complete %s with output %s", t, r2.Extracted)
}
