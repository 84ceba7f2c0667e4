package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		"[trace] #1 order.placed.v1",
		"[trace] #2 payment.captured.v1",
		"caused by #1",
		"[trace] #3 order.shipped.v1",
		"caused by #2",
		"shipping: duplicate of #2 skipped (already processed)",
		"causation chain: #1 order.placed.v1 -> #2 payment.captured.v1 -> #3 order.shipped.v1",
		"shipments: 1, duplicates skipped: 1",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if n := strings.Count(s, "parcel"); n != 1 {
		t.Errorf("%d parcels shipped, want 1:\n%s", n, s)
	}

	// Deterministic: a second run prints the same text.
	var again bytes.Buffer
	if err := run(&again); err != nil {
		t.Fatal(err)
	}
	if again.String() != s {
		t.Errorf("output differs between runs:\n%s\n---\n%s", s, again.String())
	}
}
