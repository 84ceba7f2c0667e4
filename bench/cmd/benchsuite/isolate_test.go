package main

import (
	"bytes"
	"errors"
	"math"
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
