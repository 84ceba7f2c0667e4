// Package deadlettertest is the conformance suite for deadletter.Store
// implementations. Run it from a test of the implementation:
//
//	func TestStoreConformance(t *testing.T) {
//		deadlettertest.RunStore(t, func(t *testing.T) deadletter.Store { return newIsolatedStore(t) })
//	}
//
// The factory must return an empty store isolated from every other call
// (own key prefix, schema, ...); subtests run in parallel. Times used by
// the suite are whole milliseconds in UTC, so stores may keep microsecond
// precision.
package deadlettertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/deadletter"
	"github.com/choicesherpa/eventkit/eventbus"
)

// Factory returns a fresh, empty, isolated store for one test.
type Factory func(t *testing.T) deadletter.Store

// base is the suite's reference time.
var base = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

func at(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Envelope returns a valid envelope of type typ with a small JSON payload.
func Envelope(typ string) *eventbus.Envelope {
	version, err := eventbus.ParseSchemaVersion(typ)
	if err != nil {
		version = 1
	}
	return &eventbus.Envelope{
		EventID:       eventbus.NewEventID(),
		EventType:     typ,
		SchemaVersion: version,
		AggregateID:   "agg-1",
		AggregateType: "session",
		OccurredAt:    base.Add(-time.Hour),
		Payload:       json.RawMessage(`{"secret":"s3cr3t-payload","n":1}`),
		Metadata:      eventbus.Metadata{CorrelationID: "corr-1", UserID: "user-1"},
	}
}

// NewRecord returns a dead record for handler with a fresh envelope of typ
// that failed last at ms milliseconds after the suite's base time.
func NewRecord(handler, typ string, ms int) deadletter.Record {
	env := Envelope(typ)
	return deadletter.Record{
		ID:            deadletter.RecordID(handler, env.EventID.String()),
		Envelope:      env,
		EventID:       env.EventID.String(),
		EventType:     typ,
		Handler:       handler,
		Source:        "stream:test",
		SourceID:      fmt.Sprintf("%d-0", ms),
		Reason:        deadletter.ReasonMaxDeliveries,
		Attempts:      5,
		LastError:     "boom",
		FirstFailedAt: at(ms - 10),
		LastFailedAt:  at(ms),
	}
}

// RunStore runs the conformance suite against stores made by newStore.
func RunStore(t *testing.T, newStore Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s deadletter.Store)
	}{
		{"PutGetRoundTrip", testPutGet},
		{"PutRawRecord", testRaw},
		{"PutDerivesID", testDerivesID},
		{"PutRejectsInvalid", testInvalid},
		{"PutMerges", testMerge},
		{"NotFound", testNotFound},
		{"MarkReplayed", testMarkReplayed},
		{"ListOrderAndPaging", testPaging},
		{"ListFilters", testFilters},
		{"ListInvalidCursor", testBadCursor},
		{"DeleteAndCount", testDelete},
		{"Purge", testPurge},
		{"ConcurrentPutSameRecord", testConcurrentPut},
		{"ConcurrentPutDistinct", testConcurrentDistinct},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// Equal reports the first difference between two records ("" if none),
// comparing times by instant and envelopes by content.
func Equal(want, got deadletter.Record) string {
	var diffs []string
	check := func(name string, ok bool, w, g any) {
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s: want %v, got %v", name, w, g))
		}
	}
	check("ID", want.ID == got.ID, want.ID, got.ID)
	check("EventID", want.EventID == got.EventID, want.EventID, got.EventID)
	check("EventType", want.EventType == got.EventType, want.EventType, got.EventType)
	check("Handler", want.Handler == got.Handler, want.Handler, got.Handler)
	check("Source", want.Source == got.Source, want.Source, got.Source)
	check("SourceID", want.SourceID == got.SourceID, want.SourceID, got.SourceID)
	check("Reason", want.Reason == got.Reason, want.Reason, got.Reason)
	check("Attempts", want.Attempts == got.Attempts, want.Attempts, got.Attempts)
	check("LastError", want.LastError == got.LastError, want.LastError, got.LastError)
	check("FirstFailedAt", want.FirstFailedAt.Equal(got.FirstFailedAt), want.FirstFailedAt, got.FirstFailedAt)
	check("LastFailedAt", want.LastFailedAt.Equal(got.LastFailedAt), want.LastFailedAt, got.LastFailedAt)
	check("Status", want.Status == got.Status, want.Status, got.Status)
	check("ReplayCount", want.ReplayCount == got.ReplayCount, want.ReplayCount, got.ReplayCount)
	check("ReplayedAt", (want.ReplayedAt == nil) == (got.ReplayedAt == nil) &&
		(want.ReplayedAt == nil || want.ReplayedAt.Equal(*got.ReplayedAt)), want.ReplayedAt, got.ReplayedAt)
	check("Raw", fmt.Sprint(want.Raw) == fmt.Sprint(got.Raw), want.Raw, got.Raw)
	switch {
	case (want.Envelope == nil) != (got.Envelope == nil):
		check("Envelope", false, want.Envelope, got.Envelope)
	case want.Envelope != nil:
		w, g := *want.Envelope, *got.Envelope
		check("Envelope.EventID", w.EventID == g.EventID, w.EventID, g.EventID)
		check("Envelope.EventType", w.EventType == g.EventType, w.EventType, g.EventType)
		check("Envelope.SchemaVersion", w.SchemaVersion == g.SchemaVersion, w.SchemaVersion, g.SchemaVersion)
		check("Envelope.Aggregate", w.AggregateID == g.AggregateID && w.AggregateType == g.AggregateType,
			w.AggregateType+"/"+w.AggregateID, g.AggregateType+"/"+g.AggregateID)
		check("Envelope.OccurredAt", w.OccurredAt.Equal(g.OccurredAt), w.OccurredAt, g.OccurredAt)
		check("Envelope.Payload", jsonEqual(w.Payload, g.Payload), string(w.Payload), string(g.Payload))
		check("Envelope.Metadata", w.Metadata == g.Metadata, w.Metadata, g.Metadata)
	}
	return strings.Join(diffs, "; ")
}

func jsonEqual(a, b []byte) bool {
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

func mustPut(t *testing.T, s deadletter.Store, rec deadletter.Record) {
	t.Helper()
	if err := s.Put(ctxFor(t), rec); err != nil {
		t.Fatalf("Put(%s): %v", rec.ID, err)
	}
}

func mustGet(t *testing.T, s deadletter.Store, id string) deadletter.Record {
	t.Helper()
	rec, err := s.Get(ctxFor(t), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return rec
}

func dead(r deadletter.Record) deadletter.Record {
	r.Status = deadletter.StatusDead
	return r
}

func testPutGet(t *testing.T, s deadletter.Store) {
	rec := NewRecord("dashboard", "session.created.v1", 100)
	mustPut(t, s, rec)
	if d := Equal(dead(rec), mustGet(t, s, rec.ID)); d != "" {
		t.Fatalf("round trip: %s", d)
	}
}

func testRaw(t *testing.T, s deadletter.Store) {
	rec := deadletter.Record{
		ID:           "tracker/1700000000000-0",
		Raw:          map[string]string{"type": "session.created.v1", "data": "{not json", "id": "nope"},
		EventType:    "session.created.v1",
		Handler:      "tracker",
		Source:       "stream:test",
		SourceID:     "1700000000000-0",
		Reason:       deadletter.ReasonPermanent,
		Attempts:     1,
		LastError:    "decode: invalid character",
		LastFailedAt: at(5),
	}
	mustPut(t, s, rec)
	want := dead(rec)
	want.FirstFailedAt = rec.LastFailedAt // defaulted by Put
	got := mustGet(t, s, rec.ID)
	if d := Equal(want, got); d != "" {
		t.Fatalf("raw round trip: %s", d)
	}
	if got.Envelope != nil {
		t.Fatalf("raw record got an envelope: %+v", got.Envelope)
	}
}

func testDerivesID(t *testing.T, s deadletter.Store) {
	rec := NewRecord("h", "session.created.v1", 1)
	rec.ID, rec.EventID, rec.EventType = "", "", ""
	mustPut(t, s, rec)
	id := deadletter.RecordID("h", rec.Envelope.EventID.String())
	got := mustGet(t, s, id)
	if got.ID != id || got.EventID != rec.Envelope.EventID.String() || got.EventType != "session.created.v1" {
		t.Fatalf("derived fields: id %q event id %q type %q", got.ID, got.EventID, got.EventType)
	}
}

func testInvalid(t *testing.T, s deadletter.Store) {
	ctx := ctxFor(t)
	noHandler := NewRecord("", "a.b.v1", 1)
	if err := s.Put(ctx, noHandler); !errors.Is(err, deadletter.ErrInvalidRecord) {
		t.Fatalf("Put without handler: %v, want ErrInvalidRecord", err)
	}
	noID := deadletter.Record{Handler: "h", Raw: map[string]string{"x": "y"}}
	if err := s.Put(ctx, noID); !errors.Is(err, deadletter.ErrInvalidRecord) {
		t.Fatalf("Put without any id: %v, want ErrInvalidRecord", err)
	}
	if n, err := s.Count(ctx, deadletter.Filter{}); err != nil || n != 0 {
		t.Fatalf("Count after rejected puts = %d, %v; want 0", n, err)
	}
}

func testMerge(t *testing.T, s deadletter.Store) {
	ctx := ctxFor(t)
	first := NewRecord("dashboard", "session.created.v1", 100)
	mustPut(t, s, first)
	replayedAt := at(150)
	if err := s.MarkReplayed(ctx, first.ID, replayedAt); err != nil {
		t.Fatal(err)
	}
	again := first
	again.Envelope = nil // a later failure may come without the envelope; it is kept
	again.Attempts = 2
	again.LastError = "still failing"
	again.Reason = deadletter.ReasonPermanent
	again.SourceID = "200-0"
	again.FirstFailedAt = at(190)
	again.LastFailedAt = at(200)
	again.ReplayCount = 0 // ignored: kept from the stored record
	mustPut(t, s, again)

	want := first
	want.Attempts, want.LastError, want.Reason, want.SourceID, want.LastFailedAt = 2, "still failing", deadletter.ReasonPermanent, "200-0", at(200)
	want.Status = deadletter.StatusDead
	want.ReplayCount = 1
	want.ReplayedAt = &replayedAt
	got := mustGet(t, s, first.ID)
	if d := Equal(want, got); d != "" {
		t.Fatalf("merge: %s", d)
	}
	if n, _ := s.Count(ctx, deadletter.Filter{}); n != 1 {
		t.Fatalf("Count = %d after merging puts, want 1", n)
	}
	// The merged record moved in the time order and the status indexes.
	assertIDs(t, s, deadletter.Filter{Status: deadletter.StatusDead, FailedAfter: at(200)}, 10, first.ID)
	assertIDs(t, s, deadletter.Filter{Status: deadletter.StatusReplayed}, 10)
	assertIDs(t, s, deadletter.Filter{FailedBefore: at(200)}, 10)
}

func testNotFound(t *testing.T, s deadletter.Store) {
	ctx := ctxFor(t)
	if _, err := s.Get(ctx, "nope/1"); !errors.Is(err, deadletter.ErrNotFound) {
		t.Fatalf("Get: %v, want ErrNotFound", err)
	}
	if err := s.MarkReplayed(ctx, "nope/1", at(1)); !errors.Is(err, deadletter.ErrNotFound) {
		t.Fatalf("MarkReplayed: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "nope/1"); !errors.Is(err, deadletter.ErrNotFound) {
		t.Fatalf("Delete: %v, want ErrNotFound", err)
	}
	if n, err := s.Count(ctx, deadletter.Filter{}); err != nil || n != 0 {
		t.Fatalf("Count = %d, %v; want 0 (MarkReplayed must not create records)", n, err)
	}
}

func testMarkReplayed(t *testing.T, s deadletter.Store) {
	ctx := ctxFor(t)
	rec := NewRecord("h", "a.b.v1", 10)
	other := NewRecord("h", "a.b.v1", 20)
	mustPut(t, s, rec)
	mustPut(t, s, other)
	for i, ts := range []time.Time{at(30), at(40)} {
		if err := s.MarkReplayed(ctx, rec.ID, ts); err != nil {
			t.Fatal(err)
		}
		got := mustGet(t, s, rec.ID)
		if got.Status != deadletter.StatusReplayed || got.ReplayCount != i+1 || got.ReplayedAt == nil || !got.ReplayedAt.Equal(ts) {
			t.Fatalf("after replay %d: status %q count %d at %v", i+1, got.Status, got.ReplayCount, got.ReplayedAt)
		}
		if !got.LastFailedAt.Equal(rec.LastFailedAt) || got.Attempts != rec.Attempts {
			t.Fatalf("MarkReplayed changed failure fields: %+v", got)
		}
	}
	assertIDs(t, s, deadletter.Filter{Status: deadletter.StatusReplayed}, 10, rec.ID)
	assertIDs(t, s, deadletter.Filter{Status: deadletter.StatusDead}, 10, other.ID)
	if n, err := s.Count(ctx, deadletter.Filter{Status: deadletter.StatusDead}); err != nil || n != 1 {
		t.Fatalf("dead Count = %d, %v; want 1", n, err)
	}
	// Failing again brings it back as dead with the count kept.
	back := rec
	back.LastFailedAt, back.Attempts = at(50), 1
	mustPut(t, s, back)
	got := mustGet(t, s, rec.ID)
	if got.Status != deadletter.StatusDead || got.ReplayCount != 2 {
		t.Fatalf("after re-failure: status %q count %d, want dead 2", got.Status, got.ReplayCount)
	}
	assertIDs(t, s, deadletter.Filter{Status: deadletter.StatusDead}, 10, rec.ID, other.ID)
}

// sortNewest orders records like Store.List: newest failure, then ID, descending.
func sortNewest(recs []deadletter.Record) {
	slices.SortFunc(recs, func(a, b deadletter.Record) int {
		if c := b.LastFailedAt.Compare(a.LastFailedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
}

// listAll pages through f with the given page size and returns the ids.
func listAll(t *testing.T, s deadletter.Store, f deadletter.Filter, limit int) []string {
	t.Helper()
	var (
		ids    []string
		cursor string
	)
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatalf("List did not terminate")
		}
		recs, next, err := s.List(ctxFor(t), f, deadletter.Page{Cursor: cursor, Limit: limit})
		if err != nil {
			t.Fatalf("List(%+v): %v", f, err)
		}
		if len(recs) > limit {
			t.Fatalf("List returned %d records for limit %d", len(recs), limit)
		}
		if next != "" && len(recs) < limit {
			t.Fatalf("List returned a short page (%d < %d) with a next cursor", len(recs), limit)
		}
		for _, r := range recs {
			if !f.Match(r) {
				t.Fatalf("List(%+v) returned a non-matching record %+v", f, r)
			}
			ids = append(ids, r.ID)
		}
		if next == "" {
			return ids
		}
		cursor = next
	}
}

func assertIDs(t *testing.T, s deadletter.Store, f deadletter.Filter, limit int, want ...string) {
	t.Helper()
	got := listAll(t, s, f, limit)
	if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Fatalf("List(%+v, limit %d):\n got %v\nwant %v", f, limit, got, want)
	}
	n, err := s.Count(ctxFor(t), f)
	if err != nil || n != len(want) {
		t.Fatalf("Count(%+v) = %d, %v; want %d", f, n, err, len(want))
	}
}

func ids(recs []deadletter.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func testPaging(t *testing.T, s deadletter.Store) {
	var all []deadletter.Record
	for i := range 25 {
		ms := i * 10
		if i%5 == 0 {
			ms = 1000 // several records share one failure time: ties are broken by ID
		}
		r := NewRecord(fmt.Sprintf("h%02d", i), "a.b.v1", ms)
		mustPut(t, s, r)
		all = append(all, dead(r))
	}
	sortNewest(all)
	want := ids(all)
	for _, limit := range []int{1, 3, 7, 25, 100} {
		assertIDs(t, s, deadletter.Filter{}, limit, want...)
	}
	recs, next, err := s.List(ctxFor(t), deadletter.Filter{}, deadletter.Page{Limit: 25})
	if err != nil || len(recs) != 25 || next != "" {
		t.Fatalf("exact-size page: %d records, next %q, %v; want 25 and no cursor", len(recs), next, err)
	}
	if d := Equal(all[0], recs[0]); d != "" {
		t.Fatalf("listed record differs from stored: %s", d)
	}
}

func testFilters(t *testing.T, s deadletter.Store) {
	ctx := ctxFor(t)
	var all []deadletter.Record
	handlers := []string{"dashboard", "tracker", "dashboard:v2"}
	types := []string{"session.created.v1", "cycle.completed.v1", "session.created.v2"}
	for i := range 30 {
		r := NewRecord(handlers[i%3], types[(i/3)%3], 100+i*10)
		mustPut(t, s, r)
		r.Status = deadletter.StatusDead
		if i%4 == 0 {
			if err := s.MarkReplayed(ctx, r.ID, at(5000)); err != nil {
				t.Fatal(err)
			}
			r.Status = deadletter.StatusReplayed
		}
		all = append(all, r)
	}
	sortNewest(all)
	filters := []deadletter.Filter{
		{},
		{Handler: "dashboard"},
		{Handler: "dashboard:v2"},
		{EventType: "session.created.v1"},
		{Status: deadletter.StatusDead},
		{Status: deadletter.StatusReplayed},
		{Handler: "tracker", EventType: "cycle.completed.v1"},
		{Handler: "tracker", Status: deadletter.StatusReplayed},
		{FailedAfter: at(200)},
		{FailedBefore: at(200)},
		{FailedAfter: at(150), FailedBefore: at(250)},
		{EventType: "session.created.v2", FailedAfter: at(150), FailedBefore: at(390)},
		{Handler: "nobody"},
		{EventType: "session.created.v1", Status: deadletter.StatusDead, FailedBefore: at(300)},
	}
	for _, f := range filters {
		var want []string
		for _, r := range all {
			if f.Match(r) {
				want = append(want, r.ID)
			}
		}
		assertIDs(t, s, f, 4, want...)
	}
}

func testBadCursor(t *testing.T, s deadletter.Store) {
	mustPut(t, s, NewRecord("h", "a.b.v1", 1))
	for _, c := range []string{"%%%", "bm90LWEtY3Vyc29y"} {
		if _, _, err := s.List(ctxFor(t), deadletter.Filter{}, deadletter.Page{Cursor: c, Limit: 5}); !errors.Is(err, deadletter.ErrInvalidCursor) {
			t.Fatalf("List(cursor %q): %v, want ErrInvalidCursor", c, err)
		}
	}
}

func testDelete(t *testing.T, s deadletter.Store) {
	ctx := ctxFor(t)
	a, b := NewRecord("h", "a.b.v1", 1), NewRecord("h", "a.b.v1", 2)
	mustPut(t, s, a)
	mustPut(t, s, b)
	if err := s.MarkReplayed(ctx, a.ID, at(3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, a.ID); !errors.Is(err, deadletter.ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if err := s.Delete(ctx, a.ID); !errors.Is(err, deadletter.ErrNotFound) {
		t.Fatalf("second Delete: %v, want ErrNotFound", err)
	}
	assertIDs(t, s, deadletter.Filter{}, 10, b.ID)
	assertIDs(t, s, deadletter.Filter{Handler: "h"}, 10, b.ID)
	assertIDs(t, s, deadletter.Filter{EventType: "a.b.v1"}, 10, b.ID)
	assertIDs(t, s, deadletter.Filter{Status: deadletter.StatusReplayed}, 10)
	// A deleted record can come back.
	mustPut(t, s, a)
	assertIDs(t, s, deadletter.Filter{}, 10, b.ID, a.ID)
}

func testPurge(t *testing.T, s deadletter.Store) {
	ctx := ctxFor(t)
	var keep []deadletter.Record
	for i := range 12 {
		h := "keep"
		if i%3 == 0 {
			h = "drop"
		}
		r := NewRecord(h, "a.b.v1", i)
		mustPut(t, s, r)
		if h == "keep" {
			keep = append(keep, dead(r))
		}
	}
	n, err := s.Purge(ctx, deadletter.Filter{Handler: "drop"})
	if err != nil || n != 4 {
		t.Fatalf("Purge(drop) = %d, %v; want 4", n, err)
	}
	sortNewest(keep)
	assertIDs(t, s, deadletter.Filter{}, 5, ids(keep)...)
	assertIDs(t, s, deadletter.Filter{Handler: "drop"}, 5)
	n, err = s.Purge(ctx, deadletter.Filter{FailedBefore: at(5)})
	if err != nil || n != 3 { // keep records at 1, 2, 4
		t.Fatalf("Purge(before 5ms) = %d, %v; want 3", n, err)
	}
	n, err = s.Purge(ctx, deadletter.Filter{})
	if err != nil || n != 5 {
		t.Fatalf("Purge(all) = %d, %v; want 5", n, err)
	}
	assertIDs(t, s, deadletter.Filter{}, 5)
}

func testConcurrentPut(t *testing.T, s deadletter.Store) {
	ctx := ctxFor(t)
	rec := NewRecord("h", "a.b.v1", 100)
	const writers = 16
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			r := rec
			r.Attempts = i + 1
			r.LastFailedAt = at(100 + i)
			errs <- s.Put(ctx, r)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Put: %v", err)
		}
	}
	assertIDs(t, s, deadletter.Filter{}, 10, rec.ID)
	got := mustGet(t, s, rec.ID)
	if got.Attempts < 1 || got.Attempts > writers || !got.LastFailedAt.Equal(at(100+got.Attempts-1)) {
		t.Fatalf("merged record mixes writes: attempts %d last failed %v", got.Attempts, got.LastFailedAt)
	}
	if !got.FirstFailedAt.Equal(rec.FirstFailedAt) {
		t.Fatalf("FirstFailedAt = %v, want %v", got.FirstFailedAt, rec.FirstFailedAt)
	}
}

func testConcurrentDistinct(t *testing.T, s deadletter.Store) {
	ctx := ctxFor(t)
	const writers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				errs <- s.Put(ctx, NewRecord(fmt.Sprintf("h%d", w), "a.b.v1", w*each+i))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Put: %v", err)
		}
	}
	if got := listAll(t, s, deadletter.Filter{}, 13); len(got) != writers*each {
		t.Fatalf("listed %d records, want %d", len(got), writers*each)
	}
	if n, err := s.Count(ctx, deadletter.Filter{Handler: "h3"}); err != nil || n != each {
		t.Fatalf("Count(h3) = %d, %v; want %d", n, err, each)
	}
}
