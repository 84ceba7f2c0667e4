package bench

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"testing"
	"time"
)

// Sample is one run of one contender.
type Sample struct {
	// Value is the figure in the result's unit (msg/s, ns/op, ...).
	Value float64
	// AllocsPerOp is heap allocations per message over the run, measured
	// with runtime.MemStats (0 when the runner did not measure it).
	AllocsPerOp float64
	// Check is the run's correctness verdict.
	Check Check
	// Extra holds further figures of the run by name ("p99_ms",
	// "p999_ms", "rss_kb_per_conn"); see Series.MedianExtra.
	Extra map[string]float64
}

// Contender is one side of a comparison: ours or a peer.
type Contender struct {
	// Name labels the contender in notes ("ours", "gochannel+router").
	Name string
	// Run measures once. It must honour ctx (which carries the run
	// timeout) and stop every goroutine it started before returning.
	Run func(ctx context.Context) (Sample, error)
}

// Series is every sample of one contender, in round order.
type Series struct {
	Name    string
	Samples []Sample
}

// Values returns the samples' figures.
func (s Series) Values() []float64 {
	out := make([]float64, len(s.Samples))
	for i, x := range s.Samples {
		out[i] = x.Value
	}
	return out
}

// Median is the median figure.
func (s Series) Median() float64 { return Median(s.Values()) }

// MedianAllocs is the median of the samples' allocations per op.
func (s Series) MedianAllocs() float64 {
	out := make([]float64, len(s.Samples))
	for i, x := range s.Samples {
		out[i] = x.AllocsPerOp
	}
	return Median(out)
}

// MedianExtra is the median of the samples' Extra[key] (NaN when no
// sample has it).
func (s Series) MedianExtra(key string) float64 {
	var out []float64
	for _, x := range s.Samples {
		if v, ok := x.Extra[key]; ok {
			out = append(out, v)
		}
	}
	return Median(out)
}

// ExtraSeries returns a copy of s whose Values are Extra[key], for
// Compare on a secondary figure (NaN where a sample lacks it).
func (s Series) ExtraSeries(key string) Series {
	out := Series{Name: s.Name, Samples: slices.Clone(s.Samples)}
	for i := range out.Samples {
		v, ok := out.Samples[i].Extra[key]
		if !ok {
			v = math.NaN()
		}
		out.Samples[i].Value = v
	}
	return out
}

// Failures lists every failed correctness check, labelled by contender and
// round.
func (s Series) Failures() []string {
	var out []string
	for i, x := range s.Samples {
		if err := x.Check.Err(); err != nil {
			out = append(out, fmt.Sprintf("%s round %d: %v", s.Name, i+1, err))
		}
	}
	return out
}

// Interleave runs the contenders round by round in the given order (ours,
// peer A, peer B, ours, peer A, peer B, ...), so that load from the rest of
// the machine hits every contender alike. Each run gets its own timeout.
// It stops at the first run error.
func Interleave(ctx context.Context, cfg Config, contenders ...Contender) ([]Series, error) {
	cfg = cfg.WithDefaults()
	series := make([]Series, len(contenders))
	for i, c := range contenders {
		series[i].Name = c.Name
	}
	for round := range cfg.Rounds {
		for i, c := range contenders {
			if err := ctx.Err(); err != nil {
				return series, err
			}
			runCtx, cancel := context.WithTimeout(ctx, cfg.RunTimeout)
			s, err := c.Run(runCtx)
			cancel()
			if err != nil {
				return series, fmt.Errorf("%s round %d: %w", c.Name, round+1, err)
			}
			series[i].Samples = append(series[i].Samples, s)
		}
	}
	return series, nil
}

// Median returns the median of xs (NaN for none). It does not modify xs.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// MedianRatio is the median over rounds of ours[i]/peer[i]: pairing each
// round's runs cancels drift that hits both.
func MedianRatio(ours, peer []float64) float64 {
	n := min(len(ours), len(peer))
	r := make([]float64, 0, n)
	for i := range n {
		if peer[i] == 0 {
			if ours[i] == 0 {
				r = append(r, 1)
			} else {
				r = append(r, math.Inf(1))
			}
			continue
		}
		r = append(r, ours[i]/peer[i])
	}
	return Median(r)
}

// Compare builds a table row comparing ours with peer on their Values.
// Correctness failures of both series are carried into the row.
func Compare(id, name, unit string, ours, peer Series, t Target) Result {
	return Result{
		ID:       id,
		Name:     name,
		Unit:     unit,
		Ours:     ours.Median(),
		Peer:     peer.Median(),
		Ratio:    MedianRatio(ours.Values(), peer.Values()),
		Target:   t,
		Rounds:   len(ours.Samples),
		Failures: append(ours.Failures(), peer.Failures()...),
	}
}

// CompareAllocs builds a row comparing allocations per message.
func CompareAllocs(id, name string, ours, peer Series, t Target) Result {
	oa := make([]float64, len(ours.Samples))
	for i, s := range ours.Samples {
		oa[i] = s.AllocsPerOp
	}
	pa := make([]float64, len(peer.Samples))
	for i, s := range peer.Samples {
		pa[i] = s.AllocsPerOp
	}
	return Result{
		ID:       id,
		Name:     name,
		Unit:     "allocs/msg",
		Ours:     Median(oa),
		Peer:     Median(pa),
		Ratio:    MedianRatio(oa, pa),
		Target:   t,
		Rounds:   len(ours.Samples),
		Failures: append(ours.Failures(), peer.Failures()...),
	}
}

// Map returns a copy of s with every sample's Value replaced by f(Value),
// for example to turn ns/msg into msg/s.
func (s Series) Map(f func(float64) float64) Series {
	out := Series{Name: s.Name, Samples: slices.Clone(s.Samples)}
	for i := range out.Samples {
		out.Samples[i].Value = f(out.Samples[i].Value)
	}
	return out
}

// PerSecond converts ns per message into messages per second.
func PerSecond(nsPerMsg float64) float64 { return 1e9 / nsPerMsg }

// Only builds a row with no peer (an absolute figure such as allocs per
// publish).
func Only(id, name, unit string, ours float64, t Target) Result {
	return Result{ID: id, Name: name, Unit: unit, Ours: ours, Peer: math.NaN(), Ratio: math.NaN(), Target: t}
}

// Timed runs fn once and returns its wall time and the heap allocations
// made meanwhile (by every goroutine: run nothing else concurrently).
func Timed(fn func() error) (time.Duration, uint64, error) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	err := fn()
	d := time.Since(start)
	runtime.ReadMemStats(&after)
	return d, after.Mallocs - before.Mallocs, err
}

// Rate turns n messages in d into messages per second.
func Rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return math.Inf(1)
	}
	return float64(n) / d.Seconds()
}

// NsPerOp turns n operations in d into nanoseconds per operation.
func NsPerOp(n int, d time.Duration) float64 {
	if n == 0 {
		return math.NaN()
	}
	return float64(d.Nanoseconds()) / float64(n)
}

// Metric says how Measure turns a timed run into a figure.
type Metric int

const (
	// MsgPerSec reports messages per second (higher is better).
	MsgPerSec Metric = iota + 1
	// NsPerMsg reports nanoseconds per message (lower is better).
	NsPerMsg
)

// Unit is the table unit of m.
func (m Metric) Unit() string {
	if m == NsPerMsg {
		return "ns/msg"
	}
	return "msg/s"
}

// Trial is one prepared run of one contender: Setup work (subscribing,
// starting consumers) is done before it is returned; only Run is timed.
type Trial struct {
	// Run publishes the trial's messages and returns once every one has been
	// delivered (or ctx is done: then it returns an error).
	Run func(ctx context.Context) error
	// Tally is checked after Run.
	Tally *Tally
	// Close stops everything the trial started. Optional.
	Close func()
}

// SetupFunc prepares a trial of n messages.
type SetupFunc func(ctx context.Context, n int) (*Trial, error)

// Measure makes a contender that, per round, sets up a trial of n
// messages, times its Run (with allocation counting) and checks its tally.
func Measure(name string, n int, m Metric, setup SetupFunc) Contender {
	return Contender{Name: name, Run: func(ctx context.Context) (Sample, error) {
		tr, err := setup(ctx, n)
		if err != nil {
			return Sample{}, fmt.Errorf("setup: %w", err)
		}
		if tr.Close != nil {
			defer tr.Close()
		}
		d, allocs, err := Timed(func() error { return tr.Run(ctx) })
		if err != nil {
			return Sample{}, err
		}
		// Truncated to 2 decimals, as the testing package truncates
		// allocs/op: a stray runtime allocation during a million publishes
		// must not turn "1 alloc per publish" into 1.000002.
		perOp := math.Floor(float64(allocs)/float64(n)*100) / 100
		s := Sample{AllocsPerOp: perOp, Check: tr.Tally.Check()}
		if m == NsPerMsg {
			s.Value = NsPerOp(n, d)
		} else {
			s.Value = Rate(n, d)
		}
		return s, nil
	}}
}

// BenchTrial runs setup's trial as a testing benchmark of b.N messages, so
// `go test -bench -benchmem` reports ns/op and allocs/op per message. It
// fails the benchmark when the tally is incorrect.
func BenchTrial(b *testing.B, setup SetupFunc) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), DefaultRunTimeout)
	defer cancel()
	tr, err := setup(ctx, b.N)
	if err != nil {
		b.Fatal(err)
	}
	if tr.Close != nil {
		defer tr.Close()
	}
	b.ReportAllocs()
	b.ResetTimer()
	err = tr.Run(ctx)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if err := tr.Tally.Check().Err(); err != nil {
		b.Fatal(err)
	}
}
