package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Mode picks the problem sizes a case runs with.
type Mode int

const (
	// Full is `make bench`: the sizes BENCHMARKS.md's targets were set for.
	Full Mode = iota
	// Short is the CI smoke run: small sizes, loose floors (about half the
	// targets) so that noise never fails a build but a collapse does.
	Short
	// Tiny is for the package's own tests: just enough work to prove that
	// a case runs and checks correctness. Targets are not judged.
	Tiny
)

// String returns "full", "short" or "tiny".
func (m Mode) String() string {
	switch m {
	case Short:
		return "short"
	case Tiny:
		return "tiny"
	default:
		return "full"
	}
}

// Round counts.
const (
	// DefaultRounds is how many interleaved rounds (ours, peer, ours, peer
	// ...) a full run does.
	DefaultRounds = 5
	// DefaultShortRounds is the round count in Short mode.
	DefaultShortRounds = 3
	// DefaultTinyRounds is the round count in Tiny mode.
	DefaultTinyRounds = 1
	// DefaultRunTimeout bounds one contender's single run.
	DefaultRunTimeout = 60 * time.Second
)

// Config is what a case gets from the runner.
type Config struct {
	// Mode picks sizes and whether targets or floors are judged.
	// Defaults to Full.
	Mode Mode
	// KnownMisses matches rows ("ID name") whose missed bar is reported but
	// does not fail the run (see Report.FailedExcept). Defaults to none.
	KnownMisses *regexp.Regexp
	// Rounds is how many interleaved rounds to run. Defaults to
	// DefaultRounds (Full), DefaultShortRounds (Short) or DefaultTinyRounds
	// (Tiny).
	Rounds int
	// RunTimeout bounds each contender's single run. Defaults to
	// DefaultRunTimeout.
	RunTimeout time.Duration
	// Env describes the machine and the servers; cases that need Redis or
	// Postgres take their URLs from it. Defaults to the zero Env (no
	// servers known).
	Env Env
}

// WithDefaults returns cfg with every zero field set to its default.
func (cfg Config) WithDefaults() Config {
	if cfg.Rounds <= 0 {
		switch cfg.Mode {
		case Short:
			cfg.Rounds = DefaultShortRounds
		case Tiny:
			cfg.Rounds = DefaultTinyRounds
		default:
			cfg.Rounds = DefaultRounds
		}
	}
	if cfg.RunTimeout <= 0 {
		cfg.RunTimeout = DefaultRunTimeout
	}
	return cfg
}

// Size returns the size for the config's mode.
func (cfg Config) Size(full, short, tiny int) int {
	switch cfg.Mode {
	case Short:
		return short
	case Tiny:
		return tiny
	default:
		return full
	}
}

// Case is one numbered benchmark of BENCHMARKS.md. A case measures ours and
// its peers in the same run, interleaved (see Interleave), checks
// correctness on every run, and returns one Result per table row.
type Case struct {
	// ID is the number in BENCHMARKS.md ("B1"). Several cases may share an
	// ID's prefix ("B14-mem") but each ID is registered once.
	ID string
	// Name says what is measured, in a few words.
	Name string
	// Target restates the targets in prose, for -list.
	Target string
	// Needs lists the servers the case requires ("redis", "postgres");
	// the runner skips it (and says so) when one is not reachable.
	Needs []string
	// Run measures. It must bound every wait by ctx and cfg.RunTimeout,
	// stop every goroutine it started before returning, and report
	// correctness failures in Result.Failures rather than as an error; an
	// error means the case could not run at all.
	Run func(ctx context.Context, cfg Config) ([]Result, error)
}

var (
	regMu    sync.Mutex
	registry = map[string]Case{}
)

// Register adds c to the suite; call it from an init function in the
// case's own file (b1_memory.go, b4_redis.go, ...). It panics on a missing
// ID, Run or a duplicate ID: that is a programming error.
func Register(c Case) {
	if c.ID == "" || c.Run == nil {
		panic("bench: Register needs an ID and a Run func")
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[c.ID]; dup {
		panic("bench: duplicate case " + c.ID)
	}
	registry[c.ID] = c
}

// Cases returns the registered cases whose ID or Name matches re (all when
// re is nil), in numeric ID order (B1, B2, ..., B10, ...).
func Cases(re *regexp.Regexp) []Case {
	regMu.Lock()
	defer regMu.Unlock()
	var out []Case
	for _, c := range registry {
		if re == nil || re.MatchString(c.ID) || re.MatchString(c.Name) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b Case) int { return compareIDs(a.ID, b.ID) })
	return out
}

// compareIDs orders "B2" before "B10" and "B14" before "B14-mem".
func compareIDs(a, b string) int {
	na, ra := idNumber(a)
	nb, rb := idNumber(b)
	if na != nb {
		return na - nb
	}
	return strings.Compare(ra, rb)
}

func idNumber(id string) (int, string) {
	s := strings.TrimLeft(id, "BJbj")
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(s[:end])
	if err != nil {
		return math.MaxInt32, id
	}
	if strings.HasPrefix(id, "J") {
		n += 1000 // journeys after the numbered benchmarks
	}
	return n, s[end:]
}

// Direction says which way a figure must go to meet a target.
type Direction int

const (
	// AtLeast: the figure must be >= the target value (throughput ratios).
	AtLeast Direction = iota + 1
	// AtMost: the figure must be <= the target value (cost ratios,
	// allocations, latency).
	AtMost
)

// Target is a bar a Result is judged against. The zero Target means
// "reported only".
type Target struct {
	// Dir is the direction; zero means no target.
	Dir Direction
	// Value is the bar: a ratio (10 for "10x"), or an absolute figure in
	// the result's unit when Absolute is set.
	Value float64
	// Absolute judges Result.Ours instead of Result.Ratio (for example
	// "<= 1 alloc per publish").
	Absolute bool
}

// AtLeastX is a ratio target "ours/peer >= v".
func AtLeastX(v float64) Target { return Target{Dir: AtLeast, Value: v} }

// AtMostX is a ratio target "ours/peer <= v".
func AtMostX(v float64) Target { return Target{Dir: AtMost, Value: v} }

// AtMostAbs is an absolute target "ours <= v" in the result's unit.
func AtMostAbs(v float64) Target { return Target{Dir: AtMost, Value: v, Absolute: true} }

// AtLeastAbs is an absolute target "ours >= v" in the result's unit.
func AtLeastAbs(v float64) Target { return Target{Dir: AtLeast, Value: v, Absolute: true} }

// IsZero reports whether t is "reported only".
func (t Target) IsZero() bool { return t.Dir == 0 }

// Met reports whether v meets t. A NaN never meets a target.
func (t Target) Met(v float64) bool {
	if math.IsNaN(v) {
		return false
	}
	switch t.Dir {
	case AtLeast:
		return v >= t.Value
	case AtMost:
		return v <= t.Value
	}
	return true
}

// Floor is the loose CI version of t: half a throughput bar, twice a cost
// bar. An absolute AtMost bar of 0 becomes 1.
func (t Target) Floor() Target {
	f := t
	switch t.Dir {
	case AtLeast:
		f.Value = t.Value / 2
	case AtMost:
		if t.Value == 0 {
			f.Value = 1
		} else {
			f.Value = t.Value * 2
		}
	}
	return f
}

// String renders t as ">= 10x", "<= 3x" or "<= 1".
func (t Target) String() string {
	if t.IsZero() {
		return "-"
	}
	op := ">="
	if t.Dir == AtMost {
		op = "<="
	}
	if t.Absolute {
		return op + " " + formatNumber(t.Value)
	}
	return op + " " + formatNumber(t.Value) + "x"
}

// Result is one row of the table.
type Result struct {
	// ID is the case ID ("B1").
	ID string
	// Name describes the row ("publish->handler vs gochannel+Router").
	Name string
	// Unit is the unit of Ours and Peer ("msg/s", "ns/op", "allocs/msg").
	Unit string
	// Ours and Peer are the medians of each side's per-round figures.
	// Peer is NaN when the row has no peer.
	Ours, Peer float64
	// Ratio is the median of the per-round ratios ours/peer (NaN without a
	// peer).
	Ratio float64
	// Target is the bar; zero for rows that are only reported.
	Target Target
	// Rounds is how many interleaved rounds produced the figures.
	Rounds int
	// Failures are correctness failures (ids lost, duplicated, a run that
	// errored). Any failure fails the suite.
	Failures []string
	// Notes record knobs and correctness summaries for the report.
	Notes []string
}

// Judged is the bar a result is held to in mode m: the target in Full, the
// floor in Short, none in Tiny.
func (r Result) Judged(m Mode) Target {
	switch m {
	case Short:
		return r.Target.Floor()
	case Tiny:
		return Target{}
	}
	return r.Target
}

// Holds reports whether the result meets the bar of mode m; ok is false
// when there is no bar.
func (r Result) Holds(m Mode) (holds, ok bool) {
	t := r.Judged(m)
	if t.IsZero() {
		return false, false
	}
	v := r.Ratio
	if t.Absolute {
		v = r.Ours
	}
	return t.Met(v), true
}

// Failed reports whether the result fails the suite in mode m: any
// correctness failure always, a missed floor only in Short mode (a missed
// full target is reported, not fatal, because this machine is shared).
func (r Result) Failed(m Mode) bool {
	if len(r.Failures) > 0 {
		return true
	}
	if m == Short {
		if holds, ok := r.Holds(m); ok && !holds {
			return true
		}
	}
	return false
}

// ErrCaseSkipped is returned (wrapped) by a case that cannot run here, for
// example because its server is not reachable. The runner reports it and
// does not fail.
var ErrCaseSkipped = errors.New("bench: case skipped")

// Skip returns an error wrapping ErrCaseSkipped with a reason.
func Skip(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCaseSkipped, fmt.Sprintf(format, args...))
}

func itoa(n int) string { return strconv.Itoa(n) }
