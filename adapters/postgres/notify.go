package postgres

import (
	"context"
	"sync"
	"time"
)

// Why the wake-up is sent after COMMIT and not from the writing
// transaction: PostgreSQL (up to at least 17) serialises every committing
// transaction that has queued a NOTIFY on one database-wide lock, held
// from before the commit record is written until after it is flushed. With
// a pg_notify in each business transaction, concurrent business commits
// therefore stop sharing WAL flushes (group commit) and queue behind each
// other's fsync; on this project's machine that cost 16 connections more
// than half their throughput. A NOTIFY sent by a transaction of its own
// that writes nothing needs no WAL flush, so it holds that lock only
// briefly, and coalescing the signals of many commits into one NOTIFY per
// NotifyCoalesce window bounds the rate of such transactions (each still
// costs both sides a round trip and a transaction: at 1 per millisecond
// under 16 busy writers, about a tenth of the CPU per business commit).

// notifier turns Notify calls into NOTIFYs sent on a pooled connection
// outside any business transaction: at most one in flight and one
// scheduled, and NOTIFYs start at least window apart. A signal after a
// quiet spell is sent at once (no added latency); signals during a burst
// are covered by one NOTIFY at the end of the window, so under load the
// cost is one tiny transaction per window instead of one per commit. A
// signal is never answered only by a NOTIFY that started before it:
// scheduled is cleared by the sender just before it sends, so a signal
// that finds scheduled set is covered by a NOTIFY that has not yet
// started.
type notifier struct {
	o      *Outbox
	window time.Duration

	mu        sync.Mutex
	scheduled bool
	closed    bool
	lastSent  time.Time // when the latest NOTIFY started
	wg        sync.WaitGroup
	sendMu    sync.Mutex // one NOTIFY in flight

	wakeMu sync.Mutex
	wakes  map[int]func()
	nextID int
}

const notifyTimeout = 5 * time.Second

func (n *notifier) signal() {
	n.wakeLocal()
	if n.o.cfg.DisableNotify {
		return
	}
	n.mu.Lock()
	if n.scheduled || n.closed {
		n.mu.Unlock()
		return
	}
	n.scheduled = true
	n.wg.Add(1)
	wait := n.window - time.Since(n.lastSent)
	n.mu.Unlock()
	if wait <= 0 {
		go n.fire()
		return
	}
	time.AfterFunc(wait, n.fire)
}

func (n *notifier) fire() {
	defer n.wg.Done()
	n.sendMu.Lock()
	defer n.sendMu.Unlock()
	n.mu.Lock()
	n.scheduled = false
	n.lastSent = time.Now()
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
	defer cancel()
	if _, err := n.o.pool.Exec(ctx, n.o.notifySQL); err != nil {
		// Polling is the ground truth: a lost wake-up costs at most one
		// poll interval.
		n.o.log.Debug("outbox notify failed; relays will find the rows at their next poll", "channel", n.o.cfg.NotifyChannel, "err", err)
	}
}

// close stops scheduling NOTIFYs and waits for the scheduled ones.
func (n *notifier) close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.wg.Wait()
}

// addLocal registers wake, called by signal in this process, and returns
// its removal.
func (n *notifier) addLocal(wake func()) (remove func()) {
	n.wakeMu.Lock()
	defer n.wakeMu.Unlock()
	if n.wakes == nil {
		n.wakes = map[int]func(){}
	}
	id := n.nextID
	n.nextID++
	n.wakes[id] = wake
	return func() {
		n.wakeMu.Lock()
		delete(n.wakes, id)
		n.wakeMu.Unlock()
	}
}

func (n *notifier) wakeLocal() {
	n.wakeMu.Lock()
	defer n.wakeMu.Unlock()
	for _, w := range n.wakes {
		w()
	}
}
