// Command benchsuite runs eventkit's comparative benchmarks (BENCHMARKS.md)
// and prints one table: benchmark | ours | peer | ratio | target | holds?.
//
//	go run ./cmd/benchsuite            # full run (make bench)
//	go run ./cmd/benchsuite -short     # CI smoke: small sizes, loose floors
//	go run ./cmd/benchsuite -run 'B[12]$' -rounds 7
//
// Each case runs in a process of its own (this program, re-run for that
// case), so no case measures another's leftovers; -one-process runs them
// all here.
//
// It exits 1 when a correctness check fails or a case errors, and in -short
// mode also when a floor (about half a target) is missed, so CI catches a
// collapse without failing on noise. A case that only missed a floor runs
// again after a pause (-retry-misses, -retry-pause) and its last run stands,
// the table noting the earlier misses: a regression misses every run, a
// slow spell of a shared machine does not. A missed full target is reported in
// the table, not turned into a failure: the machine is shared.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"time"

	"github.com/choicesherpa/eventkit/bench"
)

func main() {
	os.Exit(run())
}

func run() int {
	short := flag.Bool("short", false, "CI sizes and loose floors (about half the targets); fails on a missed floor")
	runRE := flag.String("run", "", "run only cases whose ID or name matches this regexp")
	rounds := flag.Int("rounds", 0, fmt.Sprintf("interleaved rounds per case (default %d, %d with -short)", bench.DefaultRounds, bench.DefaultShortRounds))
	list := flag.Bool("list", false, "list the cases and their targets, run nothing")
	quiet := flag.Bool("q", false, "no progress lines on stderr")
	knownRE := flag.String("known-misses", "", `rows ("ID name") whose missed bar is reported but does not fail the run`)
	retries := flag.Int("retry-misses", 2, "run a case again, up to this many times, when it only missed a floor (-short); the last run stands and the table notes the earlier misses")
	pause := flag.Duration("retry-pause", 20*time.Second, "wait this long before running a case again, so a slow spell of the machine can pass")
	together := flag.Bool("one-process", false, "run every case in this process instead of one process per case")
	child := flag.Bool("child", false, "internal: run the cases here and print the report as JSON")
	flag.Parse()

	var re *regexp.Regexp
	if *runRE != "" {
		var err error
		if re, err = regexp.Compile(*runRE); err != nil {
			fmt.Fprintf(os.Stderr, "benchsuite: bad -run: %v\n", err)
			return 2
		}
	}
	var known *regexp.Regexp
	if *knownRE != "" {
		var err error
		if known, err = regexp.Compile(*knownRE); err != nil {
			fmt.Fprintf(os.Stderr, "benchsuite: bad -known-misses: %v\n", err)
			return 2
		}
	}
	cases := bench.Cases(re)
	if *list {
		for _, c := range cases {
			fmt.Printf("%-8s %s\n         target: %s\n", c.ID, c.Name, c.Target)
		}
		return 0
	}
	if len(cases) == 0 {
		fmt.Fprintln(os.Stderr, "benchsuite: no case matches -run")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg := bench.Config{Rounds: *rounds, Env: bench.DetectEnv(ctx), KnownMisses: known}
	if *short {
		cfg.Mode = bench.Short
	}
	var progress io.Writer = os.Stderr
	if *quiet {
		progress = io.Discard
	}
	if *child {
		rep := bench.RunSuite(ctx, cfg, cases, progress)
		if err := writeWire(os.Stdout, rep); err != nil {
			fmt.Fprintf(os.Stderr, "benchsuite: %v\n", err)
			return 2
		}
		if rep.FailedExcept(cfg.Mode, nil) {
			return 1
		}
		return 0
	}
	var rep bench.Report
	if *together {
		rep = bench.RunSuite(ctx, cfg, cases, progress)
	} else {
		rep = runIsolated(ctx, cfg.WithDefaults(), cases, *retries, *pause, progress)
	}
	bench.WriteTable(os.Stdout, cfg, rep)
	if rep.FailedExcept(cfg.Mode, cfg.KnownMisses) {
		return 1
	}
	return 0
}
