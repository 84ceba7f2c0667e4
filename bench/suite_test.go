package bench

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestCasesTiny runs every registered case at the tiny size: each must
// run, verify its deliveries and produce rows. It catches a broken harness
// or case in CI without measuring anything.
func TestCasesTiny(t *testing.T) {
	env := DetectEnv(context.Background())
	for _, c := range Cases(nil) {
		t.Run(c.ID, func(t *testing.T) {
			if m := missingServers(env, c.Needs); m != "" {
				if os.Getenv("CI") == "true" {
					t.Fatalf("%s not reachable; CI must run every case", m)
				}
				t.Skipf("%s not reachable", m)
			}
			before := runtime.NumGoroutine()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			defer func() {
				// Every goroutine a case starts must be gone when Run returns
				// (allowing the runtime a moment to reap exited ones).
				deadline := time.Now().Add(5 * time.Second)
				for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if n := runtime.NumGoroutine(); n > before {
					t.Errorf("%d goroutines left running (before: %d)", n-before, before)
				}
			}()
			cfg := Config{Mode: Tiny, Env: env, RunTimeout: time.Minute}
			res, err := c.Run(ctx, cfg)
			if errors.Is(err, ErrCaseSkipped) {
				t.Skip(err)
			}
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if len(res) == 0 {
				t.Fatal("no rows")
			}
			for _, r := range res {
				if len(r.Failures) > 0 {
					t.Errorf("%s %s: %v", r.ID, r.Name, r.Failures)
				}
				if math.IsNaN(r.Ours) {
					t.Errorf("%s %s: no figure for ours", r.ID, r.Name)
				}
			}
		})
	}
}

func TestTargetAndFloor(t *testing.T) {
	t.Parallel()
	cases := []struct {
		t     Target
		v     float64
		met   bool
		floor float64
		str   string
	}{
		{AtLeastX(10), 10, true, 5, ">= 10x"},
		{AtLeastX(10), 9.9, false, 5, ">= 10x"},
		{AtMostX(3), 2.9, true, 6, "<= 3x"},
		{AtMostX(3), 3.1, false, 6, "<= 3x"},
		{AtMostAbs(1), 1, true, 2, "<= 1"},
		{AtMostAbs(0), 0, true, 1, "<= 0"},
		{AtLeastX(2), math.NaN(), false, 1, ">= 2x"},
	}
	for _, c := range cases {
		if got := c.t.Met(c.v); got != c.met {
			t.Errorf("%s met(%v) = %v", c.t, c.v, got)
		}
		if got := c.t.Floor().Value; got != c.floor {
			t.Errorf("%s floor = %v, want %v", c.t, got, c.floor)
		}
		if got := c.t.String(); got != c.str {
			t.Errorf("String = %q, want %q", got, c.str)
		}
	}
}

func TestResultFailsOnlyOnCorrectnessOrShortFloor(t *testing.T) {
	t.Parallel()
	r := Result{ID: "BX", Ratio: 6, Target: AtLeastX(10)}
	if r.Failed(Full) {
		t.Error("a missed full target must not fail the run")
	}
	if r.Failed(Short) {
		t.Error("6x meets the 5x floor")
	}
	r.Ratio = 4
	if !r.Failed(Short) {
		t.Error("4x misses the 5x floor in short mode")
	}
	if r.Failed(Tiny) {
		t.Error("tiny mode judges no target")
	}
	r = Result{ID: "BX", Ratio: 100, Target: AtLeastX(10), Failures: []string{"lost 1"}}
	if !r.Failed(Full) {
		t.Error("a correctness failure fails the run")
	}
}

func TestMedianRatioPairsRounds(t *testing.T) {
	t.Parallel()
	// Round 2 is slow for both sides: pairing cancels it.
	ours := []float64{100, 10, 100}
	peer := []float64{10, 1, 20}
	if got := MedianRatio(ours, peer); got != 10 {
		t.Errorf("MedianRatio = %v, want 10", got)
	}
	if got := Median([]float64{3, 1, 2, 4}); got != 2.5 {
		t.Errorf("Median = %v", got)
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) must be NaN")
	}
}

func TestTallyCountsLostDuplicatesUnexpected(t *testing.T) {
	t.Parallel()
	tl := NewTally(4, 2)
	for seq := range 4 {
		tl.Mark(0, seq)
	}
	tl.Mark(1, 0)
	tl.Mark(1, 1)
	tl.Mark(1, 1)
	tl.Mark(1, 9)
	c := tl.Check()
	if c.Lost != 2 || c.Duplicates != 1 || c.Unexpected != 1 || c.Delivered != 7 {
		t.Fatalf("check = %+v", c)
	}
	if err := c.Err(); !errors.Is(err, ErrIncorrect) {
		t.Fatalf("Err = %v", err)
	}
	ok := NewTally(2, 1)
	ok.Mark(0, 0)
	ok.Mark(0, 1)
	ok.Mark(0, 1)
	c = ok.Check()
	c.AllowDuplicates = true
	if err := c.Err(); err != nil {
		t.Fatalf("duplicates allowed: %v", err)
	}
	if err := (Check{}).Err(); err == nil {
		t.Fatal("an empty check must fail")
	}
}

func TestInterleaveOrderAndTable(t *testing.T) {
	t.Parallel()
	var order []string
	mk := func(name string, v float64) Contender {
		return Contender{Name: name, Run: func(ctx context.Context) (Sample, error) {
			order = append(order, name)
			tl := NewTally(1, 1)
			tl.Mark(0, 0)
			return Sample{Value: v, Check: tl.Check()}, nil
		}}
	}
	cfg := Config{Mode: Short, Rounds: 3}
	s, err := Interleave(context.Background(), cfg, mk("a", 20), mk("b", 2))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, ""); got != "ababab" {
		t.Fatalf("order %q", got)
	}
	row := Compare("B99", "a vs b", "msg/s", s[0], s[1], AtLeastX(10))
	if row.Ratio != 10 || len(row.Failures) != 0 {
		t.Fatalf("row %+v", row)
	}
	var buf bytes.Buffer
	WriteTable(&buf, cfg, Report{Results: []Result{row}})
	out := buf.String()
	for _, want := range []string{"B99 a vs b", "20 msg/s", "10x", ">= 5x (floor of >= 10x)", "yes", "nproc:", "redis:"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestCasesOrderAndFilter(t *testing.T) {
	t.Parallel()
	ids := []string{"B10", "B2", "J1", "B14-mem", "B14", "B1"}
	want := []string{"B1", "B2", "B10", "B14", "B14-mem", "J1"}
	got := append([]string(nil), ids...)
	for i := range got {
		for j := i + 1; j < len(got); j++ {
			if compareIDs(got[j], got[i]) < 0 {
				got[i], got[j] = got[j], got[i]
			}
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("order %v", got)
	}
	if n := len(Cases(regexp.MustCompile(`^NOPE$`))); n != 0 {
		t.Fatalf("filter matched %d", n)
	}
}

func TestRunSuiteVerdicts(t *testing.T) {
	t.Parallel()
	lost := NewTally(2, 1)
	lost.Mark(0, 0)
	mkCase := func(id string, needs []string, res []Result, err error) Case {
		return Case{ID: id, Name: id, Needs: needs, Run: func(context.Context, Config) ([]Result, error) { return res, err }}
	}
	good := Result{ID: "B90", Name: "good", Unit: "msg/s", Ours: 10, Peer: 1, Ratio: 10, Target: AtLeastX(10)}
	incorrect := Result{ID: "B91", Name: "incorrect", Unit: "msg/s", Ours: 10, Peer: 1, Ratio: 10,
		Failures: Series{Name: "ours", Samples: []Sample{{Check: lost.Check()}}}.Failures()}
	cfg := Config{Mode: Full, Env: Env{}} // no servers
	cases := []Case{
		mkCase("B90", nil, []Result{good}, nil),
		mkCase("B92", []string{"redis"}, nil, nil),
		mkCase("B93", nil, nil, Skip("not here")),
	}
	rep := RunSuite(context.Background(), cfg, cases, nil)
	if rep.Failed(Full) {
		t.Fatalf("a good run with skips failed: %+v", rep)
	}
	if len(rep.Skipped) != 2 || len(rep.Results) != 1 {
		t.Fatalf("report %+v", rep)
	}
	rep = RunSuite(context.Background(), cfg, []Case{mkCase("B91", nil, []Result{incorrect}, nil)}, nil)
	if !rep.Failed(Full) {
		t.Fatal("a lost id must fail the run")
	}
	var buf bytes.Buffer
	WriteTable(&buf, cfg, rep)
	if !strings.Contains(buf.String(), "INCORRECT") || !strings.Contains(buf.String(), "lost 1") {
		t.Fatalf("table does not show the failure:\n%s", buf.String())
	}
	rep = RunSuite(context.Background(), cfg, []Case{mkCase("B94", nil, nil, errors.New("boom"))}, nil)
	if !rep.Failed(Full) || rep.Errors["B94"] == nil {
		t.Fatal("a case error must fail the run")
	}
}

func TestFailedExceptKnownMisses(t *testing.T) {
	t.Parallel()
	miss := Result{ID: "B7", Name: "Redis pub->handler p99 (ours)", Ours: 6, Ratio: 0.2, Target: AtLeastX(1)}
	other := Result{ID: "B4", Name: "publish vs peer", Ratio: 0.1, Target: AtLeastX(1)}
	wrong := Result{ID: "B7", Name: "Redis pub->handler p99 (ours)", Failures: []string{"lost 3 ids"}}
	known := regexp.MustCompile(`^B7 Redis pub->handler p99 \(ours\)$`)

	if (Report{Results: []Result{miss}}).FailedExcept(Short, known) {
		t.Fatal("a listed known miss failed the run")
	}
	if !(Report{Results: []Result{miss}}).FailedExcept(Short, nil) {
		t.Fatal("without the list the miss must fail the run")
	}
	if !(Report{Results: []Result{miss, other}}).FailedExcept(Short, known) {
		t.Fatal("an unlisted miss must still fail the run")
	}
	if !(Report{Results: []Result{wrong}}).FailedExcept(Short, known) {
		t.Fatal("a correctness failure must fail the run even on a listed row")
	}
}
