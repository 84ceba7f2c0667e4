//go:build !linux

package bench

import (
	"context"
	"time"
)

// timerPacer ticks with a time.Timer (coarser when the process is idle).
type timerPacer struct {
	interval time.Duration
	start    time.Time
	timer    *time.Timer
	ticks    uint64
}

func newPacer(interval time.Duration) (pacer, error) {
	return &timerPacer{interval: interval, start: time.Now(), timer: time.NewTimer(time.Hour)}, nil
}

func (p *timerPacer) begin() time.Time { return p.start }

func (p *timerPacer) wait(ctx context.Context) (uint64, error) {
	next := p.start.Add(time.Duration(p.ticks+1) * p.interval)
	if d := time.Until(next); d > 0 {
		p.timer.Reset(d)
		select {
		case <-p.timer.C:
		case <-ctx.Done():
			return p.ticks, ctx.Err()
		}
	}
	p.ticks = uint64(time.Since(p.start) / p.interval)
	return p.ticks, nil
}

func (p *timerPacer) close() { p.timer.Stop() }
