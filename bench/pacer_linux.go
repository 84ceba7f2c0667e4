//go:build linux

package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// timerfdPacer ticks from a periodic timerfd read through the netpoller.
// A sub-millisecond time.Timer fires up to ~1 ms late whenever the process
// is idle (the runtime's epoll wait has millisecond resolution), which put
// the driver's own lateness into every open-loop latency; a timerfd makes
// the fd readable at the tick itself.
type timerfdPacer struct {
	f     *os.File
	start time.Time
	ticks uint64
	buf   [8]byte
}

func newPacer(interval time.Duration) (pacer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("bench: timerfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "pacer") // non-blocking: reads park in the netpoller
	spec := unix.NsecToTimespec(interval.Nanoseconds())
	p := &timerfdPacer{f: f, start: time.Now()}
	if err := unix.TimerfdSettime(fd, 0, &unix.ItimerSpec{Interval: spec, Value: spec}, nil); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("bench: timerfd settime: %w", err)
	}
	return p, nil
}

func (p *timerfdPacer) begin() time.Time { return p.start }

func (p *timerfdPacer) wait(ctx context.Context) (uint64, error) {
	stop := context.AfterFunc(ctx, func() { _ = p.f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := p.f.Read(p.buf[:]); err != nil {
		if ctx.Err() != nil {
			return p.ticks, ctx.Err()
		}
		return p.ticks, fmt.Errorf("bench: pacer: %w", err)
	}
	p.ticks += binary.NativeEndian.Uint64(p.buf[:])
	return p.ticks, nil
}

func (p *timerfdPacer) close() { _ = p.f.Close() }
