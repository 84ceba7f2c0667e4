package eventbus

import (
	"math"
	"math/rand/v2"
	"time"
)

// Backoff computes retry delays: exponential growth from Initial by
// Multiplier, capped at Max, with random jitter. The zero value uses the
// documented defaults.
type Backoff struct {
	// Initial is the delay before the first retry. Defaults to 100ms.
	Initial time.Duration
	// Max caps every delay. Defaults to 30s.
	Max time.Duration
	// Multiplier grows the delay per attempt. Defaults to 2.
	Multiplier float64
	// Jitter is the fraction of the delay that is randomised: 0.2 draws the
	// delay from [0.8d, 1.2d]; 1 is "full jitter" [0, 2d], capped at Max.
	// Defaults to 0.2; a negative value disables jitter.
	Jitter float64
}

// Default backoff settings.
const (
	DefaultBackoffInitial    = 100 * time.Millisecond
	DefaultBackoffMax        = 30 * time.Second
	DefaultBackoffMultiplier = 2.0
	DefaultBackoffJitter     = 0.2
)

// Delay returns the delay before retry number attempt (1 = first retry).
func (b Backoff) Delay(attempt int) time.Duration {
	initial, maxD, mult, jitter := b.Initial, b.Max, b.Multiplier, b.Jitter
	if initial <= 0 {
		initial = DefaultBackoffInitial
	}
	if maxD <= 0 {
		maxD = DefaultBackoffMax
	}
	if mult < 1 {
		mult = DefaultBackoffMultiplier
	}
	if jitter == 0 {
		jitter = DefaultBackoffJitter
	}
	if attempt < 1 {
		attempt = 1
	}
	d := float64(initial) * math.Pow(mult, float64(attempt-1))
	if d > float64(maxD) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(maxD)
	}
	if jitter > 0 {
		d += d * jitter * (2*rand.Float64() - 1)
	}
	if d > float64(maxD) {
		d = float64(maxD)
	}
	if d < 0 {
		d = 0
	}
	// float64(maxD) rounds up for caps near math.MaxInt64, and converting
	// 2^63 back would wrap to a negative Duration: compare in float, return
	// the cap itself.
	if d >= float64(maxD) {
		return maxD
	}
	return time.Duration(d)
}
