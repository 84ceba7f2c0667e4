package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of a suite run.
type Report struct {
	// Results are the table rows in case order.
	Results []Result
	// Skipped maps case IDs to why they did not run.
	Skipped map[string]string
	// Errors maps case IDs to the error that stopped them.
	Errors map[string]error
	// Started is when the run began.
	Started time.Time
	// Elapsed is the wall time of the whole run.
	Elapsed time.Duration
}

// Failed reports whether the run should exit non-zero in mode m: a case
// errored, a correctness check failed, or (Short only) a floor was missed.
func (r Report) Failed(m Mode) bool { return r.FailedExcept(m, nil) }

// FailedExcept is Failed, except that a missed bar on a row whose
// "ID name" matches known does not fail the run: targets known to be missed,
// listed where CI runs the suite so they stay visible. Correctness failures
// and case errors always fail.
func (r Report) FailedExcept(m Mode, known *regexp.Regexp) bool {
	if len(r.Errors) > 0 {
		return true
	}
	for _, res := range r.Results {
		if len(res.Failures) > 0 {
			return true
		}
		if res.Failed(m) && (known == nil || !known.MatchString(res.ID+" "+res.Name)) {
			return true
		}
	}
	return false
}

// RunSuite runs cases in order and returns their rows. Progress lines go
// to progress (may be nil).
func RunSuite(ctx context.Context, cfg Config, cases []Case, progress io.Writer) Report {
	cfg = cfg.WithDefaults()
	if progress == nil {
		progress = io.Discard
	}
	start := time.Now()
	rep := Report{Skipped: map[string]string{}, Errors: map[string]error{}, Started: start}
	for _, c := range cases {
		if missing := missingServers(cfg.Env, c.Needs); missing != "" {
			rep.Skipped[c.ID] = missing + " not reachable"
			fmt.Fprintf(progress, "# %s skipped: %s not reachable\n", c.ID, missing)
			continue
		}
		t0 := time.Now()
		fmt.Fprintf(progress, "# %s %s ...\n", c.ID, c.Name)
		res, err := c.Run(ctx, cfg)
		switch {
		case errors.Is(err, ErrCaseSkipped):
			rep.Skipped[c.ID] = err.Error()
			fmt.Fprintf(progress, "# %s skipped: %v\n", c.ID, err)
		case err != nil:
			rep.Errors[c.ID] = err
			fmt.Fprintf(progress, "# %s FAILED: %v\n", c.ID, err)
		default:
			fmt.Fprintf(progress, "# %s done in %s\n", c.ID, time.Since(t0).Round(time.Millisecond))
		}
		for i := range res {
			if res[i].ID == "" {
				res[i].ID = c.ID
			}
		}
		rep.Results = append(rep.Results, res...)
	}
	rep.Elapsed = time.Since(start)
	return rep
}

func missingServers(e Env, needs []string) string {
	var out []string
	for _, s := range needs {
		if !e.Has(s) {
			out = append(out, s)
		}
	}
	return strings.Join(out, ", ")
}

// WriteTable prints the header lines and the one table of the run:
// benchmark | ours | peer | ratio | target | holds?, then notes, skips,
// errors and correctness failures.
func WriteTable(w io.Writer, cfg Config, rep Report) {
	cfg = cfg.WithDefaults()
	fmt.Fprintf(w, "eventkit bench  %s  mode: %s  rounds: %d (interleaved, median of per-round ratios)\n",
		started(rep).UTC().Format(time.RFC3339), cfg.Mode, cfg.Rounds)
	cfg.Env.WriteHeader(w)
	if cfg.Mode == Short {
		fmt.Fprintln(w, "short mode: targets are judged at their CI floors (half a throughput bar, twice a cost bar)")
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| benchmark\t| ours\t| peer\t| ratio\t| target\t| holds?\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|---\t|")
	for _, r := range rep.Results {
		holds := "-"
		if h, ok := r.Holds(cfg.Mode); ok {
			holds = "yes"
			if !h {
				holds = "NO"
			}
		}
		if len(r.Failures) > 0 {
			holds = "INCORRECT"
		}
		fmt.Fprintf(tw, "| %s %s\t| %s\t| %s\t| %s\t| %s\t| %s\t|\n",
			r.ID, r.Name, withUnit(r.Ours, r.Unit), withUnit(r.Peer, r.Unit), formatRatio(r.Ratio), targetCell(r, cfg.Mode), holds)
	}
	tw.Flush()

	var notes []string
	for _, r := range rep.Results {
		for _, n := range r.Notes {
			notes = append(notes, r.ID+" "+n)
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range dedupe(notes) {
			fmt.Fprintln(w, "  "+n)
		}
	}
	for id, why := range rep.Skipped {
		fmt.Fprintf(w, "skipped %s: %s\n", id, why)
	}
	for id, err := range rep.Errors {
		fmt.Fprintf(w, "ERROR %s: %v\n", id, err)
	}
	for _, r := range rep.Results {
		for _, f := range r.Failures {
			fmt.Fprintf(w, "INCORRECT %s %s: %s\n", r.ID, r.Name, f)
		}
	}
	verdict := "ok"
	if rep.FailedExcept(cfg.Mode, cfg.KnownMisses) {
		verdict = "FAILED"
	} else if rep.Failed(cfg.Mode) {
		verdict = "ok (only listed known misses)"
	}
	fmt.Fprintf(w, "\n%s in %s\n", verdict, rep.Elapsed.Round(time.Millisecond))
}

func started(rep Report) time.Time {
	if rep.Started.IsZero() {
		return time.Now()
	}
	return rep.Started
}

func dedupe(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func targetCell(r Result, m Mode) string {
	switch {
	case r.Target.IsZero():
		return "-"
	case m == Short:
		return r.Judged(m).String() + " (floor of " + r.Target.String() + ")"
	case m == Tiny:
		return "(" + r.Target.String() + ")"
	}
	return r.Target.String()
}

func withUnit(v float64, unit string) string {
	if math.IsNaN(v) {
		return "-"
	}
	return formatNumber(v) + " " + unit
}

func formatRatio(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return formatNumber(v) + "x"
}

// formatNumber prints 3 significant digits, with k/M suffixes for large
// values: 1.23M, 45.6k, 312, 2.5, 0.031.
func formatNumber(v float64) string {
	switch {
	case math.IsInf(v, 0) || math.IsNaN(v):
		return strconv.FormatFloat(v, 'f', -1, 64)
	case math.Abs(v) >= 1e6:
		return trimZeros(strconv.FormatFloat(v/1e6, 'f', 2, 64)) + "M"
	case math.Abs(v) >= 1e4:
		return trimZeros(strconv.FormatFloat(v/1e3, 'f', 1, 64)) + "k"
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 1:
		return trimZeros(strconv.FormatFloat(v, 'f', 2, 64))
	case v == 0:
		return "0"
	}
	return strconv.FormatFloat(v, 'g', 2, 64)
}

func trimZeros(s string) string {
	if !strings.Contains(s, ".") {
		return s
	}
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
