package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"regexp"
	"strconv"
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
// merges their reports; the children's progress lines go to progress.
func runIsolated(ctx context.Context, cfg bench.Config, cases []bench.Case, progress io.Writer) bench.Report {
	rep := bench.Report{Skipped: map[string]string{}, Errors: map[string]error{}, Started: time.Now()}
	self, err := os.Executable()
	if err != nil {
		for _, c := range cases {
			rep.Errors[c.ID] = fmt.Errorf("benchsuite: cannot re-run itself: %w", err)
		}
		return rep
	}
	for _, c := range cases {
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
	}
	rep.Elapsed = time.Since(rep.Started)
	return rep
}
