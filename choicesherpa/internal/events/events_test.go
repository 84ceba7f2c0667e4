package events

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files")

var (
	ts   = time.Date(2026, 1, 11, 9, 30, 0, 0, time.UTC)
	sid  = uuid.MustParse("0194f000-0000-7000-8000-000000000001")
	cid  = uuid.MustParse("0194f000-0000-7000-8000-000000000002")
	pid  = uuid.MustParse("0194f000-0000-7000-8000-000000000003")
	coid = uuid.MustParse("0194f000-0000-7000-8000-000000000004")
	vid  = uuid.MustParse("0194f000-0000-7000-8000-000000000005")
	mid  = uuid.MustParse("0194f000-0000-7000-8000-000000000006")
)

func key() ComponentKey {
	return ComponentKey{SessionID: sid, CycleID: cid, ComponentID: coid, ComponentType: domain.Consequences}
}

func convKey() ConversationKey {
	return ConversationKey{SessionID: sid, CycleID: cid, ComponentID: coid, ComponentType: domain.Objectives, ConversationID: vid}
}

// samples has one value of every event type.
func samples() []eventbus.DomainEvent {
	best := "a2"
	score := 60
	desc := "Stay or go"
	return []eventbus.DomainEvent{
		SessionCreated{SessionID: sid, UserID: "user-1", Title: "Job offer", Description: &desc, CreatedAt: ts},
		SessionRenamed{SessionID: sid, UserID: "user-1", OldTitle: "Job offer", NewTitle: "New job?", RenamedAt: ts},
		SessionArchived{SessionID: sid, UserID: "user-1", ArchivedAt: ts},
		SessionCycleAdded{SessionID: sid, CycleID: cid, IsRootCycle: true, AddedAt: ts},
		CycleCreated{CycleID: cid, SessionID: sid, Components: []ComponentRef{{coid, domain.IssueRaising, domain.NotStarted}}, CreatedAt: ts},
		CycleBranched{CycleID: cid, SessionID: sid, ParentCycleID: pid, BranchPoint: domain.Alternatives,
			InheritedComponents: []domain.ComponentType{domain.IssueRaising}, Components: []ComponentRef{}, CreatedAt: ts},
		ComponentStarted{ComponentKey: key(), StartedAt: ts},
		ComponentOutputUpdated{ComponentKey: key(), ChangeSummary: "output replaced", UpdatedAt: ts},
		ComponentCompleted{ComponentKey: key(), Progress: domain.Progress{CompletedCount: 5, TotalCount: 8, PercentComplete: 62, CurrentStep: domain.Consequences}, CompletedAt: ts},
		ComponentMarkedForRevision{ComponentKey: key(), Reason: "new facts", MarkedAt: ts},
		CycleCompleted{CycleID: cid, SessionID: sid, DQOverallScore: &score, CompletedAt: ts},
		CycleArchived{CycleID: cid, SessionID: sid, ArchivedAt: ts},
		ConversationStarted{ConversationKey: convKey(), StartedAt: ts},
		MessageSent{ConversationKey: convKey(), MessageID: mid, Role: domain.RoleUser, ContentPreview: "hello", SentAt: ts},
		ConversationDataExtracted{ConversationKey: convKey(), ExtractionSummary: "2 fundamental objectives", ItemCount: 2, ExtractedAt: ts},
		PughScoresComputed{SessionID: sid, CycleID: cid, AlternativeScores: map[string]int{"a1": 0, "a2": 3},
			DominatedAlternatives: []DominatedRef{{"a1", "a2"}}, IrrelevantObjectives: []string{}, BestAlternativeID: &best, ComputedAt: ts},
		TradeoffsAnalyzed{SessionID: sid, CycleID: cid, Tensions: []TensionSummary{}, AnalyzedAt: ts},
		DQScoresComputed{SessionID: sid, CycleID: cid, ElementScores: []DQElementScore{{"Clear Objectives", 60, "medium"}},
			OverallScore: 60, WeakestElement: "Clear Objectives", ImprovementSuggestions: []string{"Improve Clear Objectives (currently at 60%)"}, ComputedAt: ts},
	}
}

func TestEveryTypeRegisteredVersionedAndRoutable(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, ev := range samples() {
		typ := ev.EventType()
		seen[typ] = true
		v, err := eventbus.ParseSchemaVersion(typ)
		require.NoError(t, err)
		require.Equal(t, 1, v)
		require.True(t, Registry.Known(typ), typ)
		require.True(t, eventbus.DefaultRegistry.Known(typ), typ)

		env := eventbus.MustEnvelope(context.Background(), ev)
		var p map[string]any
		require.NoError(t, json.Unmarshal(env.Payload, &p))
		require.Equal(t, sid.String(), p["session_id"], "%s carries session_id", typ)
		if strings.HasPrefix(typ, "component.") || strings.HasPrefix(typ, "conversation.") || strings.HasPrefix(typ, "message.") {
			for _, f := range []string{"cycle_id", "component_id", "component_type"} {
				require.NotEmpty(t, p[f], "%s carries %s", typ, f)
			}
		}
		if _, ok := p["content"]; ok {
			t.Fatalf("%s carries full content", typ)
		}
		decoded, err := Registry.Decode(env)
		require.NoError(t, err)
		require.Equal(t, typ, decoded.EventType())
		require.Equal(t, ev.AggregateID(), decoded.AggregateID())
	}
	require.Len(t, seen, len(AllTypes))
	for _, typ := range AllTypes {
		require.True(t, seen[typ], typ)
	}
}

func TestMessageSentCarriesOnlyAPreview(t *testing.T) {
	t.Parallel()
	conv, err := domain.NewConversation(sid, cid, coid, domain.Objectives, "p", ts)
	require.NoError(t, err)
	for _, content := range []string{"short", strings.Repeat("x", 100), strings.Repeat("ß", 101), strings.Repeat("secret ", 1000) + "TAIL"} {
		m, err := conv.AddMessage(domain.RoleUser, content, ts)
		require.NoError(t, err)
		ev := NewMessageSent(conv, m)
		require.LessOrEqual(t, utf8.RuneCountInString(ev.ContentPreview), PreviewLength)
		require.True(t, strings.HasPrefix(content, ev.ContentPreview))
		payload, err := json.Marshal(ev)
		require.NoError(t, err)
		if utf8.RuneCountInString(content) > PreviewLength {
			require.NotContains(t, string(payload), "TAIL")
			require.NotContains(t, string(payload), content)
		}
	}
}

func TestGoldenPayloads(t *testing.T) {
	t.Parallel()
	for _, ev := range samples() {
		switch ev.EventType() {
		case TypeSessionCreated, TypeComponentCompleted, TypeCycleBranched, TypeMessageSent, TypePughScoresComputed, TypeDQScoresComputed:
		default:
			continue
		}
		got, err := json.MarshalIndent(ev, "", "  ")
		require.NoError(t, err)
		path := filepath.Join("testdata", ev.EventType()+".golden.json")
		if *update {
			require.NoError(t, os.WriteFile(path, append(got, '\n'), 0o644))
		}
		want, err := os.ReadFile(path)
		require.NoError(t, err)
		require.JSONEq(t, string(want), string(got), ev.EventType())
		require.Equal(t, strings.TrimSpace(string(want)), string(got), "byte-for-byte %s", ev.EventType())
	}
}
