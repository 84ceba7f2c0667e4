package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// Latency tools for the open-loop cases (B7, B10, B12, J1): a fixed-rate
// sender that stamps each message with its intended send time, so a stall
// shows up in the tail instead of silently slowing the sender (coordinated
// omission), and a recorder that reports percentiles from raw samples.

// Quantiles summarises latency samples.
type Quantiles struct {
	N                   int
	P50, P99, P999, Max time.Duration
}

// String renders "n=5000 p50=1.2ms p99=3.4ms p99.9=5ms max=7ms".
func (q Quantiles) String() string {
	return fmt.Sprintf("n=%d p50=%s p99=%s p99.9=%s max=%s", q.N, q.P50, q.P99, q.P999, q.Max)
}

// LatencyRecorder collects latency samples; Add is safe for concurrent use.
type LatencyRecorder struct {
	mu sync.Mutex
	d  []time.Duration
}

// NewLatencyRecorder preallocates room for capacity samples.
func NewLatencyRecorder(capacity int) *LatencyRecorder {
	return &LatencyRecorder{d: make([]time.Duration, 0, capacity)}
}

// Add records one sample.
func (r *LatencyRecorder) Add(d time.Duration) {
	r.mu.Lock()
	r.d = append(r.d, d)
	r.mu.Unlock()
}

// Since records the time elapsed since intended (the send time OpenLoop
// handed out).
func (r *LatencyRecorder) Since(intended time.Time) { r.Add(time.Since(intended)) }

// Quantiles computes the percentiles of everything recorded so far.
func (r *LatencyRecorder) Quantiles() Quantiles {
	r.mu.Lock()
	s := slices.Clone(r.d)
	r.mu.Unlock()
	slices.Sort(s)
	if len(s) == 0 {
		return Quantiles{}
	}
	return Quantiles{
		N:    len(s),
		P50:  Percentile(s, 0.50),
		P99:  Percentile(s, 0.99),
		P999: Percentile(s, 0.999),
		Max:  s[len(s)-1],
	}
}

// Percentile returns the nearest-rank q-quantile (0 < q <= 1) of sorted.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q*float64(len(sorted)))) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

// pacer ticks every interval from begin(): wait blocks until at least one
// more tick has passed and returns how many have passed in all.
type pacer interface {
	begin() time.Time
	wait(ctx context.Context) (uint64, error)
	close()
}

// OpenLoop calls send for i = 0..n-1 at a fixed rate per second, each at
// its intended time start+i/rate, from one goroutine. It does not wait for
// deliveries; when send is slower than the schedule it falls behind and
// catches up without sleeping, and the intended times stay on schedule, so
// receivers measuring time.Since(intended) see the stall. It returns the
// first send error, or ctx's error.
func OpenLoop(ctx context.Context, rate float64, n int, send func(ctx context.Context, i int, intended time.Time) error) error {
	if rate <= 0 {
		return fmt.Errorf("bench: open loop rate must be positive, got %v", rate)
	}
	interval := time.Duration(float64(time.Second) / rate)
	if interval <= 0 {
		return fmt.Errorf("bench: open loop rate %v is above one per nanosecond", rate)
	}
	p, err := newPacer(interval)
	if err != nil {
		return err
	}
	defer p.close()
	start := p.begin()
	due := uint64(1) // message 0 is due at start
	for i := range n {
		for uint64(i) >= due {
			ticks, err := p.wait(ctx)
			if err != nil {
				return err
			}
			due = ticks + 1
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := send(ctx, i, start.Add(time.Duration(i)*interval)); err != nil {
			return fmt.Errorf("open loop send %d: %w", i, err)
		}
	}
	return nil
}
