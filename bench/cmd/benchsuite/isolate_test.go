package main

import (
	"bytes"
	"errors"
	"math"
	"regexp"
	"testing"

	"github.com/choicesherpa/eventkit/bench"
)

// A child's report comes back whole: figures, NaN for rows without a peer,
// targets, failures, notes, skips and errors.
func TestWireRoundTrip(t *testing.T) {
	in := bench.Report{
		Results: []bench.Result{
			{ID: "B7", Name: "p99 (ours)", Unit: "ms", Ours: 0.5, Peer: math.NaN(), Ratio: math.NaN(), Target: bench.Target{Dir: bench.AtMost, Value: 2, Absolute: true}, Rounds: 3, Notes: []string{"n"}},
			{ID: "B4", Name: "vs raw", Unit: "msg/s", Ours: 100, Peer: 200, Ratio: 0.5, Target: bench.AtLeastX(0.5), Failures: []string{"lost 1"}},
		},
		Skipped: map[string]string{"B12": "not built"},
		Errors:  map[string]error{"B9": errors.New("boom")},
	}
	var buf bytes.Buffer
	if err := writeWire(&buf, in); err != nil {
		t.Fatal(err)
	}
	out := bench.Report{Skipped: map[string]string{}, Errors: map[string]error{}}
	if err := mergeWire(&out, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if len(out.Results) != 2 {
		t.Fatalf("got %d results", len(out.Results))
	}
	a, b := out.Results[0], out.Results[1]
	if a.Ours != 0.5 || !math.IsNaN(a.Peer) || !math.IsNaN(a.Ratio) || a.Target != in.Results[0].Target || a.Rounds != 3 || a.Notes[0] != "n" {
		t.Fatalf("first result came back as %+v", a)
	}
	if b.Ratio != 0.5 || b.Peer != 200 || len(b.Failures) != 1 || b.Target != bench.AtLeastX(0.5) {
		t.Fatalf("second result came back as %+v", b)
	}
	if out.Skipped["B12"] != "not built" || out.Errors["B9"] == nil || out.Errors["B9"].Error() != "boom" {
		t.Fatalf("skips %v errors %v", out.Skipped, out.Errors)
	}
	if err := mergeWire(&out, []byte("not json")); err == nil {
		t.Fatal("a child that printed no report must be an error")
	}
}

// Only a missed floor is run again: never a correctness failure, a case
// error or a known miss, and never a full-mode miss (which does not fail).
func TestOnlyMissedFloorsIsRetried(t *testing.T) {
	short := bench.Config{Mode: bench.Short, KnownMisses: regexp.MustCompile(`^B4 vs watermill`)}
	p99 := func(ms float64) bench.Result {
		return bench.Result{ID: "B7", Name: "p99 (ours)", Unit: "ms", Ours: ms, Peer: math.NaN(), Ratio: math.NaN(), Target: bench.AtMostAbs(2)}
	}
	knownMiss := bench.Result{ID: "B4", Name: "vs watermill", Unit: "msg/s", Ours: 1, Peer: 1, Ratio: 1, Target: bench.AtLeastX(3)}
	rep := func(rs ...bench.Result) bench.Report { return bench.Report{Results: rs, Errors: map[string]error{}} }

	slow := rep(p99(4.5), knownMiss)
	if !onlyMissedFloors(slow, short) {
		t.Fatal("a missed latency floor must be run again")
	}
	if got := missedRows(slow, short); len(got) != 1 || got[0] != "p99 (ours): 4.5 ms" {
		t.Fatalf("missed rows %q: want the p99 row alone, with its figure", got)
	}
	if onlyMissedFloors(rep(p99(3), knownMiss), short) {
		t.Fatal("nothing but a known miss: nothing to run again")
	}
	incorrect := p99(4.5)
	incorrect.Failures = []string{"lost 1"}
	if onlyMissedFloors(rep(incorrect), short) {
		t.Fatal("a correctness failure must never be run again")
	}
	errored := rep(p99(4.5))
	errored.Errors["B7"] = errors.New("boom")
	if onlyMissedFloors(errored, short) {
		t.Fatal("a case error must never be run again")
	}
	if onlyMissedFloors(slow, bench.Config{Mode: bench.Full}) {
		t.Fatal("a full-mode miss does not fail the run, so it is not run again")
	}
}
