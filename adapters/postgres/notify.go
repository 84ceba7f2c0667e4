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
// NotifyCoalesce window bounds the rate of such transactions.

// notifier coalesces Notify calls into at most one NOTIFY in flight and one
// scheduled, each sent on a pooled connection outside any business
// transaction. A signal is never answered only by a NOTIFY that started
// before it: scheduled is cleared by the sender just before it sends, so a
// signal that finds scheduled set is covered by a NOTIFY that has not yet
// started.
type notifier struct {
	o      *Outbox
	window time.Duration

	mu        sync.Mutex
	scheduled bool
	closed    bool
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
	n.mu.Unlock()
	if n.window <= 0 {
		go n.fire()
		return
	}
	time.AfterFunc(n.window, n.fire)
}

func (n *notifier) fire() {
	defer n.wg.Done()
	n.sendMu.Lock()
	defer n.sendMu.Unlock()
	n.mu.Lock()
	n.scheduled = false
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
	defer cancel()
	if _, err := n.o.pool.Exec(ctx, "SELECT pg_notify($1, '')", n.o.cfg.NotifyChannel); err != nil {
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
