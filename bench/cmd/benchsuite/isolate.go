package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/choicesherpa/eventkit/bench"
)

// Each case runs in a process of its own: a case inherits nothing from the
// ones before it. In one process, B7's p99.9 measured 5.5-12.8 ms after
// B1 or B3 had run and 1.2-2.1 ms alone (both contenders alike), with no
// goroutine left behind and the heap back to a few MB.

// wireReport is a bench.Report as JSON: NaN figures (rows without a peer)
// travel as null and errors as their text.
type wireReport struct {
	Results []wireResult
	Skipped map[string]string
	Errors  map[string]string
}

type wireResult struct {
	bench.Result
	Ours, Peer, Ratio *float64
}

func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func orNaN(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

func writeWire(w io.Writer, rep bench.Report) error {
	out := wireReport{Skipped: rep.Skipped, Errors: map[string]string{}}
	for _, r := range rep.Results {
		out.Results = append(out.Results, wireResult{Result: r, Ours: finite(r.Ours), Peer: finite(r.Peer), Ratio: finite(r.Ratio)})
	}
	for id, err := range rep.Errors {
		out.Errors[id] = err.Error()
	}
	return json.NewEncoder(w).Encode(out)
}

func mergeWire(rep *bench.Report, data []byte) error {
	var in wireReport
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	for _, w := range in.Results {
		r := w.Result
		r.Ours, r.Peer, r.Ratio = orNaN(w.Ours), orNaN(w.Peer), orNaN(w.Ratio)
		rep.Results = append(rep.Results, r)
	}
	for id, why := range in.Skipped {
		rep.Skipped[id] = why
	}
	for id, msg := range in.Errors {
		rep.Errors[id] = errors.New(msg)
	}
	return nil
}

// runIsolated runs each case in a child process of this executable and
// merges their reports; the children's progress lines go to progress. A
// case that only missed a floor (no error, nothing incorrect, not a known
// miss) is run again after pause, up to retries times, and the last run's
// rows stand, with a note quoting what the earlier runs missed: one slow
// spell of a shared machine does not fail CI, a regression misses every run.
func runIsolated(ctx context.Context, cfg bench.Config, cases []bench.Case, retries int, pause time.Duration, progress io.Writer) bench.Report {
	rep := bench.Report{Skipped: map[string]string{}, Errors: map[string]error{}, Started: time.Now()}
	self, err := os.Executable()
	if err != nil {
		for _, c := range cases {
			rep.Errors[c.ID] = fmt.Errorf("benchsuite: cannot re-run itself: %w", err)
		}
		return rep
	}
	for _, c := range cases {
		var missed []string
		for attempt := 0; ; attempt++ {
			one := runChild(ctx, self, cfg, c, progress)
			if attempt < retries && onlyMissedFloors(one, cfg) && ctx.Err() == nil {
				missed = append(missed, missedRows(one, cfg)...)
				fmt.Fprintf(progress, "# %s missed a floor; running it again in %s\n", c.ID, pause)
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
				continue
			}
			if len(missed) > 0 && len(one.Results) > 0 {
				r := &one.Results[0]
				r.Notes = append(slices.Clip(r.Notes), fmt.Sprintf("run %d times: the earlier runs missed a floor (%s)", attempt+1, strings.Join(missed, "; ")))
			}
			rep.Results = append(rep.Results, one.Results...)
			maps.Copy(rep.Skipped, one.Skipped)
			maps.Copy(rep.Errors, one.Errors)
			break
		}
	}
	rep.Elapsed = time.Since(rep.Started)
	return rep
}

// runChild runs case c in a child process and returns its report.
func runChild(ctx context.Context, self string, cfg bench.Config, c bench.Case, progress io.Writer) bench.Report {
	rep := bench.Report{Skipped: map[string]string{}, Errors: map[string]error{}}
	args := []string{"-child", "-run", "^" + regexp.QuoteMeta(c.ID) + "$", "-rounds", strconv.Itoa(cfg.Rounds)}
	if cfg.Mode == bench.Short {
		args = append(args, "-short")
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Stdout, cmd.Stderr = &out, progress
	// On cancel, interrupt the child so it cleans up its keys and
	// schemas as this process would; kill it if it takes too long.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	err := cmd.Run()
	// A child exits 1 when its case failed; its report says why.
	if mErr := mergeWire(&rep, out.Bytes()); mErr != nil {
		if err == nil {
			err = mErr
		}
		rep.Errors[c.ID] = fmt.Errorf("benchsuite: case process: %w", err)
	}
	return rep
}

// onlyMissedFloors reports whether rep fails the run for missed floors
// alone: no case error and no correctness failure, which are never retried.
func onlyMissedFloors(rep bench.Report, cfg bench.Config) bool {
	if len(rep.Errors) > 0 {
		return false
	}
	for _, r := range rep.Results {
		if len(r.Failures) > 0 {
			return false
		}
	}
	return rep.FailedExcept(cfg.Mode, cfg.KnownMisses)
}

// missedRows describes the rows of rep that missed their bar and are not
// known misses.
func missedRows(rep bench.Report, cfg bench.Config) []string {
	var out []string
	for _, r := range rep.Results {
		if cfg.KnownMisses != nil && cfg.KnownMisses.MatchString(r.ID+" "+r.Name) {
			continue
		}
		if holds, ok := r.Holds(cfg.Mode); ok && !holds {
			v := r.Ratio
			unit := "x"
			if r.Judged(cfg.Mode).Absolute {
				v, unit = r.Ours, " "+r.Unit
			}
			out = append(out, fmt.Sprintf("%s: %.3g%s", r.Name, v, unit))
		}
	}
	return out
}
