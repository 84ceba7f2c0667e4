package redisstream

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/choicesherpa/eventkit/deadletter"
	"github.com/choicesherpa/eventkit/eventbus"
)

// ErrShutdownTimeout is returned by Close when handlers were still running
// after ShutdownTimeout; their entries stay pending.
var ErrShutdownTimeout = errors.New("redisstream: handlers still running after the shutdown timeout")

type subscription struct {
	bus       *Bus
	name      string
	broadcast bool
	h         eventbus.Handler
	types     []string // nil = all
	streams   []string // streams read, replay stream last (group mode)

	stop       chan struct{} // closed when Close begins
	readCtx    context.Context
	readCancel context.CancelFunc
	hardCtx    context.Context // handler base context, cancelled after ShutdownTimeout
	hardCancel context.CancelFunc
	stopAfter  func() bool

	slots   chan struct{} // in-flight tokens: Concurrency + Buffer
	work    []chan *delivery
	acks    chan ackReq
	ackStop chan struct{}
	ackGone chan struct{}
	// ackBy (unix ns, 0 = unset) is set by Close: no acknowledgement is
	// attempted after it, so Close honours ShutdownTimeout whatever Redis
	// does. ackHurry is closed when it is first set, to wake a flush that
	// is backing off.
	ackBy    atomic.Int64
	ackHurry chan struct{}

	loops sync.WaitGroup // reader, claimer, retrier
	// workMu guards sending on work against Close closing it: Close stops
	// waiting for the loops at its deadline (a read blocked on a silent
	// Redis may return much later), so a loop may still dispatch after.
	workMu     sync.RWMutex
	workClosed bool
	workers    sync.WaitGroup

	claimMu sync.Mutex // serialises claimOnce and recoverUnheld (claim, then hold)

	heldMu sync.Mutex
	held   map[string]map[string]struct{} // stream -> entry ids this consumer holds
	// failedAt: stream -> entry id -> the first failure this consumer saw
	// while holding the entry (for the dead-letter record's FirstFailedAt).
	// Held entries only: dropped with the hold.
	failedAt map[string]map[string]time.Time

	retryMu   sync.Mutex
	retries   []*delivery // sorted by due
	retryWake chan struct{}

	nogroupLogged bool // reader goroutine only: one log line per NOGROUP incident

	// The acker goroutine's scratch (flushAcks): ids by stream, XACK args.
	ackIDs  map[string][]string
	ackArgs []any

	unstartedMu sync.Mutex
	unstarted   []*delivery // read but not started when Close began

	closeOnce sync.Once
	closeErr  error
	done      chan struct{}
}

type delivery struct {
	stream string
	entry
	fieldBuf [6]string // entry.fields' storage for up to three fields
	count    int64     // delivery count, from Redis
	env      *eventbus.Envelope
	decErr   error
	due      time.Time
	envBuf   eventbus.Envelope // env's storage
	// The handler's contexts (see handlerClock): each delivery is handled
	// once (a retry is a new delivery), so a handler may keep its context.
	hctx eventbus.EventContext
	dctx deadlineCtx
}

// decode sets env (and decErr) from the entry.
func (d *delivery) decode() {
	d.decErr = decodeInto(&d.entry, &d.envBuf)
	d.env = &d.envBuf
	if d.decErr == nil && d.raw != nil {
		// The payload shares the data value's bytes and a handler may
		// write into it: no string may keep seeing them.
		for i := 1; i < len(d.fields); i += 2 {
			if d.fields[i-1] == FieldData {
				d.fields[i] = ""
			}
		}
	}
}

type ackReq struct {
	stream string
	id     string
	env    *eventbus.Envelope // nil when no hook should run
}

// Subscribe registers h as consumer group name (see eventbus.Subscriber):
// every process that subscribes the same name competes for the entries of
// the group, and each name gets every event once. The group is created
// (MKSTREAM, at Config.StartID) when missing. The subscription first
// re-reads this consumer's own pending entries, then new ones; it claims
// entries other consumers left idle longer than MinIdle; failed entries are
// redelivered with backoff and dead-lettered after MaxDeliveries.
//
// With a shared stream, entries of types the subscription does not name are
// acknowledged without calling h. With StreamPerType, eventTypes is required.
func (b *Bus) Subscribe(ctx context.Context, name string, h eventbus.Handler, eventTypes ...string) (eventbus.Subscription, error) {
	return b.subscribe(ctx, name, h, false, eventTypes)
}

// SubscribeBroadcast delivers every matching event to h in this process,
// whatever other processes do: each process reads the streams on its own
// with plain XREAD from the moment it subscribed (no consumer group, so
// nothing pins stream trimming when a process dies). Delivery is at most
// once per process: a failed handler call is reported to Hooks.OnFail and
// logged, not retried, and events published while the process was down are
// not replayed. Events of one aggregate are handled in stream order. Use it
// for live push (the WebSocket bridge), caches and other per-process views.
func (b *Bus) SubscribeBroadcast(ctx context.Context, name string, h eventbus.Handler, eventTypes ...string) (eventbus.Subscription, error) {
	return b.subscribe(ctx, name, h, true, eventTypes)
}

func (b *Bus) subscribe(ctx context.Context, name string, h eventbus.Handler, broadcast bool, eventTypes []string) (*subscription, error) {
	if name == "" || strings.ContainsAny(name, " \r\n") {
		return nil, fmt.Errorf("redisstream: subscription name %q must be non-empty without spaces", name)
	}
	if h == nil {
		return nil, fmt.Errorf("redisstream: nil handler for %q", name)
	}
	for _, t := range eventTypes {
		if _, err := eventbus.ParseSchemaVersion(t); err != nil {
			return nil, err
		}
	}
	if b.cfg.StreamPerType && len(eventTypes) == 0 {
		return nil, fmt.Errorf("%w: subscription %q must name its event types when StreamPerType is set", ErrConfig, name)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &subscription{
		bus:       b,
		name:      name,
		broadcast: broadcast,
		h:         h,
		stop:      make(chan struct{}),
		acks:      make(chan ackReq, b.cfg.Count+b.cfg.Concurrency),
		ackStop:   make(chan struct{}),
		ackGone:   make(chan struct{}),
		ackHurry:  make(chan struct{}),
		held:      make(map[string]map[string]struct{}),
		failedAt:  make(map[string]map[string]time.Time),
		ackIDs:    make(map[string][]string, 1),
		retryWake: make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	if len(eventTypes) > 0 {
		s.types = slices.Clone(eventTypes)
		slices.Sort(s.types)
		s.types = slices.Compact(s.types)
	}
	if b.cfg.StreamPerType {
		for _, t := range s.types {
			s.streams = append(s.streams, b.StreamFor(t))
		}
	} else {
		s.streams = []string{b.cfg.Stream}
	}
	for _, st := range s.streams {
		b.noteStream(st)
	}
	if !broadcast {
		s.streams = append(s.streams, b.ReplayStream(name))
		b.noteStream(b.ReplayStream(name))
	}

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, eventbus.ErrClosed
	}
	if !broadcast {
		if b.names[name] {
			b.mu.Unlock()
			return nil, fmt.Errorf("%w: %q", eventbus.ErrDuplicateSubscription, name)
		}
		b.names[name] = true
	}
	// Registered with the bus only once started (below): Bus.Close waits
	// for subscriptions still starting instead of closing half-built ones.
	b.starting.Add(1)
	b.mu.Unlock()
	defer b.starting.Done()

	if !broadcast {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.WriteTimeout)
		err := s.createGroups(cctx)
		cancel()
		if err != nil {
			b.removeSub(s)
			return nil, err
		}
	}
	var startIDs []string
	if broadcast {
		var err error
		lctx, cancel := context.WithTimeout(ctx, b.cfg.WriteTimeout)
		startIDs, err = s.lastIDs(lctx)
		cancel()
		if err != nil {
			b.removeSub(s)
			return nil, err
		}
	}

	s.readCtx, s.readCancel = context.WithCancel(context.Background())
	s.hardCtx, s.hardCancel = context.WithCancel(context.Background())
	s.slots = make(chan struct{}, b.cfg.Concurrency+max(b.cfg.Buffer, 0))
	nWork := 1
	if b.cfg.OrderByAggregate || broadcast {
		nWork = b.cfg.Concurrency
	}
	s.work = make([]chan *delivery, nWork)
	for i := range s.work {
		s.work[i] = make(chan *delivery, cap(s.slots))
	}
	for i := 0; i < b.cfg.Concurrency; i++ {
		ch := s.work[i%nWork]
		s.workers.Add(1)
		go s.worker(ch)
	}
	if broadcast {
		close(s.ackGone)
		s.loops.Add(1)
		go s.broadcastLoop(startIDs)
	} else {
		go s.acker()
		s.loops.Add(3)
		go s.readLoop()
		go s.claimLoop()
		go s.retryLoop()
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = s.Close() // Bus.Close began meanwhile, and waits for this
		return nil, eventbus.ErrClosed
	}
	b.subs[s] = struct{}{}
	s.stopAfter = context.AfterFunc(ctx, func() { _ = s.Close() })
	b.mu.Unlock()
	return s, nil
}

// Name returns the subscription (consumer group) name.
func (s *subscription) Name() string { return s.name }

// closeLastAck is how long Close still tries to acknowledge handlers that
// finished only after ShutdownTimeout (cancelled, within their grace).
const closeLastAck = 200 * time.Millisecond

// Close stops reading, lets handlers in flight finish within
// ShutdownTimeout, acknowledges what finished (on a detached context, by
// the same deadline) and leaves the rest pending. Entries read but not
// started stay pending for this consumer (re-read first on the next
// Subscribe of the same name) or for other consumers to claim after
// MinIdle. Acknowledgements Redis has not taken by the deadline are
// abandoned (their entries are redelivered), and a read or claim blocked
// on a silent Redis is not waited for: Close returns within
// ShutdownTimeout, plus, when handlers overran it, up to a second for them
// to return and closeLastAck, plus the Redis client's own I/O timeout for
// an acknowledgement in flight. Idempotent.
func (s *subscription) Close() error {
	return s.closeBy(time.Now().Add(s.bus.cfg.ShutdownTimeout))
}

// closeBy is Close with the deadline given: Bus.Close's own, so waiting for
// subscriptions still starting does not add a ShutdownTimeout of its own.
func (s *subscription) closeBy(deadline time.Time) error {
	s.closeOnce.Do(func() {
		defer close(s.done)
		if !s.broadcast {
			s.ackBy.Store(deadline.UnixNano())
			close(s.ackHurry)
		}
		s.bus.mu.Lock()
		stopAfter := s.stopAfter // set by subscribe under the bus lock
		s.bus.mu.Unlock()
		if stopAfter != nil {
			stopAfter()
		}
		close(s.stop)
		s.readCancel()
		// A loop blocked on a silent Redis returns within Block or
		// WriteTimeout and the client's timeouts; it is not waited for past
		// the deadline (it exits on its own, dispatching nothing).
		waitUntil(&s.loops, deadline)
		s.workMu.Lock()
		s.workClosed = true
		for _, ch := range s.work {
			close(ch)
		}
		s.workMu.Unlock()
		if !waitUntil(&s.workers, deadline) {
			// Handlers overran: cancelled, they get a second to return, and
			// what they finish is still acknowledged (closeLastAck below);
			// the ack deadline covers that second meanwhile.
			if !s.broadcast {
				s.ackBy.Store(time.Now().Add(time.Second + closeLastAck).UnixNano())
			}
			s.hardCancel()
			if !waitUntil(&s.workers, time.Now().Add(time.Second)) {
				s.closeErr = fmt.Errorf("%w: %q", ErrShutdownTimeout, s.name)
			}
		}
		s.hardCancel()
		if !s.broadcast {
			if last := time.Now().Add(closeLastAck); last.After(deadline) {
				// Handlers overran: one short last try for those that
				// returned when cancelled.
				deadline = last
				s.ackBy.Store(last.UnixNano())
			}
			close(s.ackStop)
			<-s.ackGone
			// Best-effort tidying, not waited for past the deadline: on a
			// silent Redis go-redis would wait out its read timeout on each
			// call (contexts do not cut socket reads). The calls then end
			// on their own within the client's timeouts; unstarted entries
			// keep the delivery, and another consumer deletes this one
			// later (ConsumerIdleTTL).
			tidied := make(chan struct{})
			go func() {
				defer close(tidied)
				// The name is free again only once its consumer is
				// tidied: a new subscription of it must not be given
				// back deliveries or deleted by this one.
				defer s.bus.removeSub(s)
				ctx, cancel := context.WithDeadline(context.Background(), deadline)
				defer cancel()
				s.giveBack(ctx)
				for _, st := range s.streams {
					if _, err := deleteConsumerIfIdle(ctx, s.bus.rdb, st, s.name, s.bus.cfg.Consumer, 0); err != nil && !isNoGroup(err) {
						s.bus.log.Debug("redisstream: delete consumer", "group", s.name, "stream", st, "err", err)
					}
				}
			}()
			t := time.NewTimer(time.Until(deadline))
			select {
			case <-tidied:
			case <-t.C:
				s.bus.log.Warn("redisstream: consumer not tidied by the close deadline; left for later cleanup", "group", s.name)
			}
			t.Stop()
		} else {
			s.bus.removeSub(s)
		}
	})
	<-s.done
	return s.closeErr
}

func (s *subscription) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// giveBack lowers by one the delivery count of every entry read but never
// started before Close (still owned by this consumer): the read counted as
// a delivery in Redis, and without this a process restarted a few times
// could dead-letter an entry its handler saw fewer than MaxDeliveries
// times. Best effort: on failure the count just stays one higher.
func (s *subscription) giveBack(ctx context.Context) {
	s.unstartedMu.Lock()
	ds := s.unstarted
	s.unstarted = nil
	s.unstartedMu.Unlock()
	byStream := map[string][]any{}
	for _, d := range ds {
		if byStream[d.stream] == nil {
			byStream[d.stream] = []any{s.name, s.bus.cfg.Consumer}
		}
		byStream[d.stream] = append(byStream[d.stream], d.id)
	}
	for st, args := range byStream {
		if err := giveBackScript.Run(ctx, s.bus.rdb, []string{st}, args...).Err(); err != nil && !errors.Is(err, redis.Nil) {
			s.bus.log.Debug("redisstream: give back unstarted deliveries", "group", s.name, "stream", st, "err", err)
		}
	}
}

// leaveUnstarted records entries read but never dispatched for giveBack.
func (s *subscription) leaveUnstarted(stream string, msgs []entry) {
	s.unstartedMu.Lock()
	for i := range msgs {
		s.unstarted = append(s.unstarted, &delivery{stream: stream, entry: entry{id: msgs[i].id}})
	}
	s.unstartedMu.Unlock()
}

// giveBackScript decrements the delivery count of entries this consumer
// still owns (XCLAIM JUSTID RETRYCOUNT, which also keeps them ours),
// atomically with the ownership check.
var giveBackScript = redis.NewScript(`
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] and p[1][4] > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'RETRYCOUNT', p[1][4] - 1, 'JUSTID')
  end
end
return 0
`)

// ---- groups ----

func isNoGroup(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOGROUP")
}

func (s *subscription) createGroups(ctx context.Context) error {
	for i, st := range s.streams {
		start := s.bus.cfg.StartID
		if !s.broadcast && i == len(s.streams)-1 {
			start = "0" // the replay stream: everything replayed is for us
		}
		err := s.bus.rdb.XGroupCreateMkStream(ctx, st, s.name, start).Err()
		if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
			return fmt.Errorf("redisstream: create group %q on %s: %w", s.name, st, err)
		}
		if err == nil {
			s.bus.counters.groupsMade.Add(1)
		}
	}
	return nil
}

// ---- reading ----

// acquire takes 1..n in-flight slots (blocking for the first); 0 when stopping.
func (s *subscription) acquire(n int) int {
	select {
	case s.slots <- struct{}{}:
	case <-s.stop:
		return 0
	}
	return 1 + s.tryAcquire(n-1)
}

// tryAcquire takes up to n free slots without waiting.
func (s *subscription) tryAcquire(n int) int {
	got := 0
	for got < n {
		select {
		case s.slots <- struct{}{}:
			got++
		default:
			return got
		}
	}
	return got
}

func (s *subscription) release(n int) {
	for range n {
		<-s.slots
	}
}

// errorState rate-limits error handling: backoff per consecutive failure,
// one log line per streak.
type errorState struct {
	fails  int
	logged bool
}

func (s *subscription) onError(es *errorState, what string, err error) bool {
	es.fails++
	if !es.logged {
		es.logged = true
		s.bus.log.Warn("redisstream: "+what+" failed; retrying with backoff", "group", s.name, "err", err)
	}
	return sleepOrStop(s.bus.cfg.ReconnectBackoff.Delay(es.fails), s.stop)
}

// logFallback reports that a read reply had a shape the raw parser does
// not know, so that reader goes on with go-redis's parsing.
func (s *subscription) logFallback(err error) {
	s.bus.log.Warn("redisstream: reading with go-redis's reply parser from now on", "group", s.name, "err", err)
}

func (s *subscription) onSuccess(es *errorState, what string) {
	if es.logged {
		s.bus.log.Info("redisstream: "+what+" recovered", "group", s.name, "failures", es.fails)
	}
	*es = errorState{}
}

// recreateGroups handles NOGROUP (Redis restarted without persistence, or
// the stream was deleted): the groups are created again, with backoff.
func (s *subscription) recreateGroups(es *errorState) bool {
	if !s.nogroupLogged {
		s.bus.log.Warn("redisstream: consumer group missing (NOGROUP); re-creating it", "group", s.name)
		s.nogroupLogged = true
	}
	for {
		ctx, cancel := context.WithTimeout(s.readCtx, s.bus.cfg.WriteTimeout)
		err := s.createGroups(ctx)
		cancel()
		if err == nil {
			return true
		}
		es.fails++
		if !sleepOrStop(s.bus.cfg.ReconnectBackoff.Delay(es.fails), s.stop) {
			return false
		}
	}
}

func (s *subscription) readLoop() {
	defer s.loops.Done()
	cfg := &s.bus.cfg
	var es errorState
	rd := newStreamReader(s.bus.rdb, s.streams, cfg.Block, s.logFallback)
	// Phase 1: this consumer's own pending entries, stream by stream.
	for _, st := range s.streams {
		cursor := "0"
		for !s.stopping() {
			n := s.acquire(cfg.Count)
			if n == 0 {
				return
			}
			// Under claimMu, as the claim loop: its first XAUTOCLAIM may take
			// the same own idle entries this re-read returns; whichever runs
			// second must see them held (notHeld), or both would run them.
			s.claimMu.Lock()
			res, err := rd.readGroup(s.readCtx, s.name, cfg.Consumer, []string{st}, []string{cursor}, n, -1)
			if err != nil {
				s.claimMu.Unlock()
				s.release(n)
				if isNoGroup(err) {
					s.onError(&es, "read pending", err)
					break // the group is gone, and with it our pending entries
				}
				if !s.onError(&es, "read pending", err) {
					return
				}
				continue
			}
			s.onSuccess(&es, "read pending")
			var msgs []entry
			if len(res) > 0 {
				msgs = res[0].entries
			}
			if len(msgs) == 0 {
				s.claimMu.Unlock()
				s.release(n)
				break
			}
			cursor = strings.Clone(msgs[len(msgs)-1].id) // not its slab
			msgs = s.notHeld(st, msgs)
			counts := s.pendingCounts(st, msgs)
			s.dispatch(st, msgs, counts, 0, n)
			s.claimMu.Unlock()
			rd.forget()
		}
	}
	// Phase 2: new entries.
	newIDs := make([]string, len(s.streams))
	for i := range newIDs {
		newIDs[i] = ">"
	}
	es = errorState{}
	for !s.stopping() {
		n := s.acquire(cfg.Count)
		if n == 0 {
			return
		}
		began := time.Now()
		res, err := rd.readGroup(s.readCtx, s.name, cfg.Consumer, s.streams, newIDs, n, cfg.Block)
		if err != nil {
			s.release(n)
			if s.stopping() {
				return
			}
			if isNoGroup(err) {
				if !s.recreateGroups(&es) {
					return
				}
				continue
			}
			if !s.onError(&es, "read", err) {
				return
			}
			continue
		}
		// After a failed read, or one go-redis may have retried after a
		// read timeout (the first attempt's entries would be ours, unheld).
		recoverLost := es.fails > 0 || rd.mayHaveRetried(time.Since(began))
		s.onSuccess(&es, "read")
		if s.nogroupLogged {
			s.nogroupLogged = false
			s.bus.log.Info("redisstream: consumer group re-created", "group", s.name)
		}
		// Read after Close began: pending for us, its delivery given back
		// like an unstarted one's.
		s.dispatchRead(res, n, s.leaveUnstarted)
		rd.forget()
		if recoverLost && !s.stopping() {
			// A read that failed on the wire may have been delivered by
			// Redis: its entries sit in our PEL without us holding them.
			// Only now, with this read's own entries held (dispatch), can
			// the unheld ones be told apart: before, they would be claimed
			// back and run a second time, concurrently.
			s.recoverUnheld()
		}
	}
}

// recoverUnheld claims back, at once, entries in this consumer's PEL that
// it does not hold: deliveries whose XREADGROUP reply was lost with a
// connection. Without it they would wait MinIdle for the claim loop. The
// XCLAIM's min-idle is the smallest idle time just observed, so an entry
// another consumer claimed in between (its idle reset) is not taken back.
func (s *subscription) recoverUnheld() {
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	cfg := &s.bus.cfg
	ctx, cancel := context.WithTimeout(context.Background(), cfg.WriteTimeout)
	defer cancel()
	for _, st := range s.streams {
		pend, err := s.bus.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: st, Group: s.name, Start: "-", End: "+", Count: 1000, Consumer: cfg.Consumer,
		}).Result()
		if err != nil {
			return
		}
		var ids []string
		counts := map[string]int64{}
		minIdle := time.Duration(-1)
		s.heldMu.Lock()
		for _, p := range pend {
			if _, held := s.held[st][p.ID]; held {
				continue
			}
			ids = append(ids, p.ID)
			counts[p.ID] = p.RetryCount + 1
			if minIdle < 0 || p.Idle < minIdle {
				minIdle = p.Idle
			}
		}
		s.heldMu.Unlock()
		for len(ids) > 0 && !s.stopping() {
			n := s.tryAcquire(len(ids))
			if n == 0 {
				return // the claim loop will get them after MinIdle
			}
			msgs, err := s.bus.rdb.XClaim(ctx, &redis.XClaimArgs{
				Stream: st, Group: s.name, Consumer: cfg.Consumer, MinIdle: minIdle, Messages: ids[:n],
			}).Result()
			if err != nil {
				s.release(n)
				return
			}
			if len(msgs) > 0 {
				s.bus.log.Info("redisstream: recovered entries whose read reply was lost", "group", s.name, "stream", st, "count", len(msgs))
			}
			s.dispatch(st, s.notHeld(st, entriesFromMessages(msgs)), counts, 2, n)
			ids = ids[n:]
		}
	}
}

// pendingCounts returns the delivery counts of msgs in this consumer's PEL.
func (s *subscription) pendingCounts(stream string, msgs []entry) map[string]int64 {
	if len(msgs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.bus.cfg.WriteTimeout)
	defer cancel()
	lo, hi := msgs[0].id, msgs[len(msgs)-1].id
	pend, err := s.bus.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: stream, Group: s.name, Start: lo, End: hi, Count: int64(len(msgs) + cap(s.slots) + 1000), Consumer: s.bus.cfg.Consumer,
	}).Result()
	if err != nil {
		return nil
	}
	out := make(map[string]int64, len(pend))
	for _, p := range pend {
		out[p.ID] = p.RetryCount
	}
	return out
}

// dispatchRead hands a read's entries to the workers, holding n slots.
// COUNT applies to each stream, so a read over several streams (the main and
// the replay stream, or one per event type) can return up to n entries per
// stream: past the n, it waits for slots as the workers free them and
// dispatches as it gets them, so deliveries never outnumber slots. Entries
// it cannot dispatch once the subscription is stopping go to left (nil:
// dropped, for broadcast reads, which leave nothing pending).
func (s *subscription) dispatchRead(res []streamEntries, n int, left func(stream string, msgs []entry)) {
	total := 0
	for _, xs := range res {
		total += len(xs.entries)
	}
	if total > n {
		// Held while they wait for slots: the heartbeat keeps them ours and
		// our claim loop leaves them alone.
		for _, xs := range res {
			s.hold(xs.stream, xs.entries)
		}
	}
	for _, xs := range res {
		msgs := xs.entries
		for len(msgs) > 0 {
			if n == 0 && !s.stopping() {
				n = s.acquire(len(msgs))
			}
			if n == 0 || s.stopping() {
				if left != nil {
					left(xs.stream, msgs)
				}
				break
			}
			k := min(len(msgs), n)
			s.dispatch(xs.stream, msgs[:k], nil, 1, k)
			n -= k
			msgs = msgs[k:]
		}
	}
	if n > 0 {
		s.release(n)
	}
}

// deliveryChunk is how many deliveries dispatch allocates at once.
const deliveryChunk = 16

// dispatch hands msgs (for which n slots are held) to the workers. A count
// from counts wins over def (0 = unknown, assume a redelivery).
func (s *subscription) dispatch(stream string, msgs []entry, counts map[string]int64, def int64, n int) {
	s.workMu.RLock()
	defer s.workMu.RUnlock()
	if s.workClosed {
		// Read after Close gave up waiting: left pending, as any entry
		// read but not started.
		s.release(n)
		return
	}
	s.hold(stream, msgs)
	var chunk []delivery
	for i := range msgs {
		if len(chunk) == 0 {
			// A few deliveries to an allocation: a handler that keeps its
			// context keeps at most a chunk alive.
			chunk = make([]delivery, min(len(msgs)-i, deliveryChunk))
		}
		d := &chunk[0]
		chunk = chunk[1:]
		*d = delivery{stream: stream, entry: msgs[i], count: def}
		d.own(d.fieldBuf[:])
		if c, ok := counts[d.id]; ok {
			d.count = c
		}
		if d.count <= 0 {
			d.count = 2
		}
		s.route(d)
	}
	if len(msgs) < n {
		s.release(n - len(msgs))
	}
}

func (s *subscription) route(d *delivery) {
	idx := 0
	if len(s.work) > 1 {
		if d.env == nil && d.decErr == nil && d.fields != nil {
			d.decode()
		}
		if d.env != nil && d.decErr == nil {
			h := fnv.New32a()
			_, _ = h.Write([]byte(d.env.AggregateType))
			_, _ = h.Write([]byte{0})
			_, _ = h.Write([]byte(d.env.AggregateID))
			idx = int(h.Sum32() % uint32(len(s.work)))
		}
	}
	s.work[idx] <- d // never blocks: capacity equals the slot count
}

func (s *subscription) hold(stream string, msgs []entry) {
	if s.broadcast {
		return
	}
	s.heldMu.Lock()
	m := s.held[stream]
	if m == nil {
		m = make(map[string]struct{})
		s.held[stream] = m
	}
	for i := range msgs {
		m[msgs[i].id] = struct{}{}
	}
	s.heldMu.Unlock()
}

// notHeld drops entries this consumer already holds (possible only when
// heartbeats failed for longer than MinIdle) so one process never runs an
// entry twice at once.
func (s *subscription) notHeld(stream string, msgs []entry) []entry {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	m := s.held[stream]
	if len(m) == 0 {
		return msgs
	}
	out := msgs[:0]
	for _, x := range msgs {
		if _, ok := m[x.id]; !ok {
			out = append(out, x)
		}
	}
	return out
}

func (s *subscription) unhold(stream, id string) {
	s.heldMu.Lock()
	delete(s.held[stream], id)
	s.forgetFailure(stream, id)
	s.heldMu.Unlock()
}

// firstFailure returns the first failure this consumer saw of a held entry,
// recording now when it is the first.
func (s *subscription) firstFailure(stream, id string, now time.Time) time.Time {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	m := s.failedAt[stream]
	if m == nil {
		m = make(map[string]time.Time)
		s.failedAt[stream] = m
	}
	if t, ok := m[id]; ok {
		return t
	}
	m[id] = now
	return now
}

// forgetFailure drops an entry's failure time; heldMu is held. Free when
// nothing has failed, so acks of healthy entries pay nothing.
func (s *subscription) forgetFailure(stream, id string) {
	if len(s.failedAt[stream]) > 0 {
		delete(s.failedAt[stream], id)
	}
}

// ---- handling ----

func (s *subscription) worker(ch chan *delivery) {
	defer s.workers.Done()
	clock := newHandlerClock(s.bus.cfg.HandlerTimeout)
	defer clock.stop()
	for d := range ch {
		if s.stopping() {
			// Not started: leave it pending, and give its delivery back
			// at Close (giveBack) so it does not count toward MaxDeliveries.
			if !s.broadcast {
				s.unstartedMu.Lock()
				s.unstarted = append(s.unstarted, d)
				s.unstartedMu.Unlock()
			}
			s.release(1)
			continue
		}
		if !s.process(d, clock) {
			s.release(1)
		}
	}
}

func (s *subscription) wants(typ string) bool {
	if s.types == nil {
		return true
	}
	_, ok := slices.BinarySearch(s.types, typ)
	return ok
}

// process handles one delivery. It reports whether the delivery's in-flight
// slot went with it to the retry queue (entries waiting for a retry count
// against Concurrency+Buffer, which bounds memory and applies backpressure).
func (s *subscription) process(d *delivery, clock *handlerClock) (keepSlot bool) {
	b := s.bus
	if d.fields == nil {
		// The entry was deleted or trimmed while pending.
		b.counters.lostEntries.Add(1)
		b.log.Warn("redisstream: pending entry no longer exists; counted as lost", "group", s.name, "stream", d.stream, "entry", d.id)
		s.ack(d, nil)
		return false
	}
	if s.types != nil && !s.wants(d.entryType()) {
		if _, hasType := d.field(FieldType); hasType {
			b.counters.skipped.Add(1)
			s.ack(d, nil)
			return false
		}
	}
	if d.env == nil && d.decErr == nil {
		d.decode()
	}
	if d.decErr != nil {
		if s.broadcast {
			b.log.Warn("redisstream: skipping malformed entry", "subscription", s.name, "entry", d.id, "err", d.decErr)
			return false
		}
		// Undecodable is permanent (RELIABILITY.md B1): the record's
		// LastError (a *MalformedEntryError) says what was wrong.
		return s.deadLetter(d, deadletter.ReasonPermanent, d.decErr)
	}
	env := d.env
	if !s.broadcast && d.count > int64(b.cfg.MaxDeliveries) {
		// Out of deliveries already (e.g. an earlier dead-letter write failed).
		return s.deadLetter(d, deadletter.ReasonMaxDeliveries, fmt.Errorf("delivered %d times, limit %d", d.count, b.cfg.MaxDeliveries))
	}
	b.counters.delivered.Add(1)
	err := s.invoke(d, clock)
	if err == nil {
		if s.broadcast {
			b.cfg.Hooks.Ack(s.hardCtx, s.name, *env)
			return false
		}
		s.ack(d, env)
		return false
	}
	b.counters.failed.Add(1)
	b.cfg.Hooks.Fail(s.hardCtx, s.name, *env, err)
	if s.broadcast {
		b.log.Warn("redisstream: broadcast handler failed", "subscription", s.name, "event_type", env.EventType, "event_id", env.EventID, "err", err)
		return false
	}
	switch {
	case eventbus.IsPermanent(err):
		return s.deadLetter(d, deadletter.ReasonPermanent, err)
	case d.count >= int64(b.cfg.MaxDeliveries):
		return s.deadLetter(d, deadletter.ReasonMaxDeliveries, err)
	default:
		s.firstFailure(d.stream, d.id, time.Now().UTC())
		delay := b.cfg.Retry.Delay(int(d.count))
		b.cfg.Hooks.Retry(s.hardCtx, s.name, *env, int(d.count), delay, err)
		return s.scheduleRetry(d, delay)
	}
}

func (s *subscription) invoke(d *delivery, clock *handlerClock) (err error) {
	env := d.env
	ctx := clock.start(s.hardCtx, d)
	defer clock.finish()
	defer func() {
		if r := recover(); r != nil {
			err = &eventbus.PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	s.bus.cfg.Hooks.Deliver(ctx, s.name, *env)
	err = s.h.Handle(ctx, *env)
	if err != nil && errors.Is(context.Cause(ctx), eventbus.ErrHandlerTimeout) {
		err = fmt.Errorf("%w after %s: %w", eventbus.ErrHandlerTimeout, s.bus.cfg.HandlerTimeout, err)
	}
	return err
}

// deadLetter writes the record and only then acknowledges the entry; when
// the write fails the entry stays pending and is retried later (keepSlot as
// for process).
func (s *subscription) deadLetter(d *delivery, reason string, cause error) (keepSlot bool) {
	b := s.bus
	now := time.Now().UTC()
	rec := deadletter.Record{
		Handler:       s.name,
		Source:        d.stream,
		SourceID:      d.id,
		Reason:        reason,
		Attempts:      int(d.count),
		LastError:     errorText(cause),
		FirstFailedAt: s.firstFailure(d.stream, d.id, now),
		LastFailedAt:  now,
		Status:        deadletter.StatusDead,
	}
	if d.decErr == nil && d.env != nil {
		env := *d.env // the store may keep it: not the delivery's storage
		rec.Envelope = &env
		rec.EventID = d.env.EventID.String()
		rec.EventType = d.env.EventType
	} else {
		rec.Raw = d.rawFields()
		rec.EventID, _ = d.field(FieldID)
		rec.EventType = d.entryType()
	}
	if rec.EventID != "" {
		rec.ID = deadletter.RecordID(s.name, rec.EventID)
	} else {
		rec.ID = deadletter.RecordID(s.name, d.stream+"@"+d.id)
	}
	var err error
	if b.cfg.DeadLetters == nil {
		err = errors.New("no dead-letter store configured")
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.WriteTimeout)
		err = b.cfg.DeadLetters.Put(ctx, rec)
		cancel()
	}
	if err != nil {
		// Left pending without its in-flight slot: entries waiting for a
		// store that is down (or missing) must not fill the slots and stall
		// the subscription. The claim loop brings it back after MinIdle.
		b.log.Error("redisstream: dead-letter write failed; entry stays pending, claimed again after MinIdle", "group", s.name, "event_type", rec.EventType, "event_id", rec.EventID, "entry", d.id, "err", err)
		s.unhold(d.stream, d.id)
		return false
	}
	b.counters.deadLettered.Add(1)
	b.log.Warn("redisstream: event dead-lettered", "group", s.name, "event_type", rec.EventType, "event_id", rec.EventID, "reason", reason, "attempts", rec.Attempts)
	if d.env != nil && d.decErr == nil {
		b.cfg.Hooks.DeadLetter(s.hardCtx, s.name, *d.env, cause)
	}
	s.ack(d, nil)
	return false
}

// errorText is the error message without payload content, stack included
// for panics.
func errorText(err error) string {
	var pe *eventbus.PanicError
	if errors.As(err, &pe) {
		return err.Error() + "\n" + string(pe.Stack)
	}
	return err.Error()
}

func (s *subscription) ack(d *delivery, env *eventbus.Envelope) {
	select {
	case s.acks <- ackReq{stream: d.stream, id: d.id, env: env}:
	case <-s.ackGone:
	}
}

// ---- acknowledging ----

func (s *subscription) acker() {
	defer close(s.ackGone)
	var batch []ackReq
	for {
		select {
		case r := <-s.acks:
			batch = append(batch[:0], r)
		case <-s.ackStop:
			for {
				select {
				case r := <-s.acks:
					batch = append(batch, r)
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				s.flushAcks(batch)
			}
			return
		}
	drain:
		for len(batch) < 10*s.bus.cfg.Count {
			select {
			case r := <-s.acks:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.flushAcks(batch)
		clear(batch) // keep no envelope alive
		batch = batch[:0]
	}
}

// ackDeadline returns d, or Close's acknowledgement deadline if earlier.
func (s *subscription) ackDeadline(d time.Time) time.Time {
	if by := s.ackBy.Load(); by != 0 && by < d.UnixNano() {
		return time.Unix(0, by)
	}
	return d
}

// ackPause waits d between ack attempts; Close cuts it short once, to
// apply its deadline.
func (s *subscription) ackPause(d time.Duration) {
	var hurry <-chan struct{}
	if s.ackBy.Load() == 0 {
		hurry = s.ackHurry
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-hurry:
	}
}

// flushAcks sends one XACK per stream, retrying on a detached context with
// backoff for a bounded time (never past Close's deadline); an ack that
// never lands leaves the entry pending (it is redelivered: at least once,
// never lost).
func (s *subscription) flushAcks(batch []ackReq) {
	b := s.bus
	// The acker's own scratch, reused (at low rates there is a flush per
	// entry) and cleared after: ids share reply buffers, keep none alive.
	byStream := s.ackIDs
	for _, r := range batch {
		byStream[r.stream] = append(byStream[r.stream], r.id)
	}
	deadline := time.Now().Add(max(3*b.cfg.WriteTimeout, 10*time.Second))
	var es errorState
	abandoned := map[string]bool{}
	args := s.ackArgs
	for st, ids := range byStream {
		if len(ids) == 0 {
			continue
		}
		// XACK's ids as pointers: boxing a pointer allocates nothing, a
		// string costs one allocation per entry (go-redis's XAck).
		args = append(args[:0], "xack", st, s.name)
		for i := range ids {
			args = append(args, &ids[i])
		}
		for {
			deadline = s.ackDeadline(deadline)
			ctx, cancel := b.writes.shared(), context.CancelFunc(func() {})
			if time.Until(deadline) < b.cfg.WriteTimeout {
				ctx, cancel = context.WithDeadline(context.Background(), deadline)
			}
			cmd := redis.NewIntCmd(ctx, args...)
			err := b.rdb.Process(ctx, cmd)
			cancel()
			if err == nil || isNoGroup(err) {
				break
			}
			es.fails++
			if !es.logged {
				es.logged = true
				b.log.Warn("redisstream: ack failed; retrying", "group", s.name, "entries", len(ids), "err", err)
			}
			deadline = s.ackDeadline(deadline)
			if !time.Now().Before(deadline) {
				b.log.Error("redisstream: ack abandoned; entries stay pending and will be redelivered", "group", s.name, "entries", len(ids), "err", err)
				abandoned[st] = true
				break
			}
			s.ackPause(min(b.cfg.ReconnectBackoff.Delay(es.fails), time.Second, time.Until(deadline)))
		}
	}
	for st, ids := range byStream {
		clear(ids)
		byStream[st] = ids[:0]
	}
	clear(args)
	s.ackArgs = args[:0]
	// Either way the entries are no longer ours to keep claimed: acked, or
	// left for the claim loop to redeliver after MinIdle. Unheld under
	// claimMu: a PEL read (phase 1, XAUTOCLAIM, recoverUnheld) that Redis
	// answered before this XACK still lists them, and must find them held
	// when it filters (notHeld), or it would run them a second time.
	s.claimMu.Lock()
	s.heldMu.Lock()
	for _, r := range batch {
		delete(s.held[r.stream], r.id)
		s.forgetFailure(r.stream, r.id)
	}
	s.heldMu.Unlock()
	s.claimMu.Unlock()
	for _, r := range batch {
		if abandoned[r.stream] {
			continue
		}
		b.counters.acked.Add(1)
		if r.env != nil {
			b.cfg.Hooks.Ack(s.hardCtx, s.name, *r.env)
		}
	}
}

// ---- retries ----

// scheduleRetry queues d for a re-claim after delay, keeping its slot; false
// when closing (the entry just stays pending).
func (s *subscription) scheduleRetry(d *delivery, delay time.Duration) bool {
	if s.stopping() {
		return false
	}
	// A record of its own, not d: d shares its allocation with up to 15
	// other deliveries (dispatch), and its id shares a slab with other
	// entries' bytes, all long handled; a waiting retry must not keep them.
	r := &delivery{stream: d.stream, entry: entry{id: strings.Clone(d.id)}, count: d.count, due: time.Now().Add(delay)}
	// The hold and the failure time are keyed by d's id too: re-key them
	// with the clone (a map keeps the key string of the last assignment).
	s.heldMu.Lock()
	if m := s.held[d.stream]; m != nil {
		if _, ok := m[r.id]; ok {
			m[r.id] = struct{}{}
		}
	}
	if m := s.failedAt[d.stream]; m != nil {
		if at, ok := m[r.id]; ok {
			m[r.id] = at
		}
	}
	s.heldMu.Unlock()
	s.retryMu.Lock()
	i := sort.Search(len(s.retries), func(i int) bool { return s.retries[i].due.After(r.due) })
	s.retries = slices.Insert(s.retries, i, r)
	s.retryMu.Unlock()
	select {
	case s.retryWake <- struct{}{}:
	default:
	}
	return true
}

// retryLoop re-claims failed entries when their backoff ends. XCLAIM (not
// JUSTID) increments the delivery count in Redis, so the count survives a
// crash, and returns the entry's fields; a missing entry was deleted.
func (s *subscription) retryLoop() {
	defer s.loops.Done()
	var es errorState
	for {
		s.retryMu.Lock()
		var wait time.Duration = time.Hour
		var due []*delivery
		now := time.Now()
		for len(s.retries) > 0 && !s.retries[0].due.After(now) && len(due) < s.bus.cfg.Count {
			due = append(due, s.retries[0])
			s.retries[0] = nil // the array outlives the pop
			s.retries = s.retries[1:]
		}
		if len(s.retries) > 0 {
			wait = time.Until(s.retries[0].due)
		}
		s.retryMu.Unlock()
		if len(due) == 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-s.retryWake:
			case <-s.stop:
				t.Stop()
				return
			}
			t.Stop()
			continue
		}
		byStream := map[string][]*delivery{}
		for _, d := range due {
			byStream[d.stream] = append(byStream[d.stream], d)
		}
		for st, ds := range byStream {
			ids := make([]string, len(ds))
			for i, d := range ds {
				ids[i] = d.id
			}
			n := len(ds) // their slots are still held
			ctx, cancel := context.WithTimeout(context.Background(), s.bus.cfg.WriteTimeout)
			msgs, err := s.bus.rdb.XClaim(ctx, &redis.XClaimArgs{Stream: st, Group: s.name, Consumer: s.bus.cfg.Consumer, MinIdle: 0, Messages: ids}).Result()
			cancel()
			if err != nil && !errors.Is(err, redis.Nil) {
				if isNoGroup(err) {
					s.release(n) // the group and its PEL are gone
					for _, d := range ds {
						s.unhold(st, d.id)
					}
					continue
				}
				s.retryMu.Lock()
				s.retries = append(slices.Clone(ds), s.retries...)
				s.retryMu.Unlock()
				if !s.onError(&es, "retry claim", err) {
					return
				}
				continue
			}
			s.onSuccess(&es, "retry claim")
			got := make(map[string]bool, len(msgs))
			counts := make(map[string]int64, len(msgs))
			for _, m := range msgs {
				got[m.ID] = true
			}
			for _, d := range ds {
				counts[d.id] = d.count + 1
				if !got[d.id] {
					// Deleted or trimmed while pending (Redis 7 drops it from the PEL).
					s.unhold(st, d.id)
					s.bus.counters.lostEntries.Add(1)
				}
			}
			s.dispatch(st, entriesFromMessages(msgs), counts, 2, n)
		}
	}
}

// ---- claiming idle entries, keeping our own claimed ----

func (s *subscription) claimLoop() {
	defer s.loops.Done()
	cfg := &s.bus.cfg
	claimT := time.NewTicker(cfg.ClaimInterval)
	defer claimT.Stop()
	beat := time.NewTicker(max(cfg.MinIdle/4, 10*time.Millisecond))
	defer beat.Stop()
	var es errorState
	s.claimOnce(&es)
	for {
		select {
		case <-s.stop:
			return
		case <-claimT.C:
			s.claimOnce(&es)
			if cfg.ConsumerIdleTTL > 0 {
				s.cleanupConsumers()
			}
		case <-beat.C:
			s.heartbeat()
		}
	}
}

// heartbeat resets the idle time of every entry this consumer holds (read
// and not yet acknowledged, or waiting for a retry), so no other consumer
// claims them while they wait in the buffer or run.
func (s *subscription) heartbeat() {
	s.heldMu.Lock()
	var streams []string
	var idss [][]string
	for st, m := range s.held {
		if len(m) == 0 {
			continue
		}
		ids := make([]string, 0, len(m))
		for id := range m {
			ids = append(ids, id)
		}
		streams = append(streams, st)
		idss = append(idss, ids)
	}
	s.heldMu.Unlock()
	if len(streams) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.bus.cfg.WriteTimeout)
	defer cancel()
	for i, st := range streams {
		for ids := idss[i]; len(ids) > 0; {
			n := min(len(ids), 200)
			args := make([]any, 0, n+2)
			args = append(args, s.name, s.bus.cfg.Consumer)
			for _, id := range ids[:n] {
				args = append(args, id)
			}
			lost, err := heartbeatScript.Run(ctx, s.bus.rdb, []string{st}, args...).StringSlice()
			if err != nil && !errors.Is(err, redis.Nil) {
				s.bus.log.Debug("redisstream: heartbeat failed", "group", s.name, "err", err)
				return
			}
			for _, id := range lost {
				// Another consumer claimed it (our heartbeat lapsed past
				// MinIdle): stop keeping it.
				s.unhold(st, id)
				s.bus.log.Warn("redisstream: held entry no longer ours; another consumer may run it too", "group", s.name, "stream", st, "entry", id)
			}
			ids = ids[n:]
		}
	}
}

// heartbeatScript resets the idle time of the entries this consumer still
// owns (XCLAIM JUSTID, which keeps the delivery count) and returns the ids
// another consumer owns now, atomically: a plain XCLAIM would silently take
// an entry back from a consumer that had legitimately claimed it. Entries no
// longer pending at all (just acknowledged) are skipped.
var heartbeatScript = redis.NewScript(`
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 then
    if p[1][2] == ARGV[2] then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    else
      table.insert(lost, ARGV[i])
    end
  end
end
return lost
`)

func (s *subscription) claimOnce(es *errorState) {
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	cfg := &s.bus.cfg
	for _, st := range s.streams {
		cursor := "0-0"
		for !s.stopping() {
			// Never wait for a slot here: this goroutine also runs the
			// heartbeat that keeps held entries claimed.
			n := s.tryAcquire(cfg.Count)
			if n == 0 {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), cfg.WriteTimeout)
			msgs, next, deleted, err := s.bus.rdb.XAutoClaimWithDeleted(ctx, &redis.XAutoClaimArgs{
				Stream: st, Group: s.name, Consumer: cfg.Consumer, MinIdle: cfg.MinIdle, Start: cursor, Count: int64(n),
			}).Result()
			cancel()
			if err != nil && !errors.Is(err, redis.Nil) {
				s.release(n)
				if isNoGroup(err) {
					break // the reader re-creates groups
				}
				s.onError(es, "claim", err)
				return
			}
			s.onSuccess(es, "claim")
			if len(deleted) > 0 {
				s.bus.counters.lostEntries.Add(int64(len(deleted)))
				s.bus.log.Warn("redisstream: pending entries were deleted or trimmed; counted as lost", "group", s.name, "stream", st, "count", len(deleted))
			}
			claimed := s.notHeld(st, entriesFromMessages(msgs))
			var counts map[string]int64
			if len(claimed) > 0 {
				counts = s.pendingCounts(st, claimed)
				s.bus.log.Info("redisstream: claimed idle entries", "group", s.name, "stream", st, "count", len(claimed))
			}
			s.dispatch(st, claimed, counts, 2, n)
			if next == "0-0" || next == "" {
				break
			}
			cursor = next
		}
	}
}

// deleteConsumerScript deletes a consumer only if it holds no pending entry
// and has been idle at least ARGV[2] ms, atomically (a check followed by a
// separate XGROUP DELCONSUMER could drop an entry read in between).
var deleteConsumerScript = redis.NewScript(`
local ok, info = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return redis.error_reply(info.err or tostring(info)) end
for _, c in ipairs(info) do
  local name, pending, idle
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i+1]
    elseif c[i] == 'pending' then pending = c[i+1]
    elseif c[i] == 'idle' then idle = c[i+1] end
  end
  if name == ARGV[3] then
    if pending == 0 and idle >= tonumber(ARGV[2]) then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
      return 1
    end
    return 0
  end
end
return -1
`)

// deleteConsumerIfIdle deletes consumer from group on stream when it has no
// pending entries and has been idle for minIdle; 1 = deleted, 0 = kept,
// -1 = no such consumer.
func deleteConsumerIfIdle(ctx context.Context, rdb redis.UniversalClient, stream, group, consumer string, minIdle time.Duration) (int64, error) {
	return deleteConsumerScript.Run(ctx, rdb, []string{stream}, group, minIdle.Milliseconds(), consumer).Int64()
}

// cleanupConsumers deletes other consumers that are idle and hold nothing.
func (s *subscription) cleanupConsumers() {
	ctx, cancel := context.WithTimeout(context.Background(), s.bus.cfg.WriteTimeout)
	defer cancel()
	for _, st := range s.streams {
		cs, err := s.bus.rdb.XInfoConsumers(ctx, st, s.name).Result()
		if err != nil {
			continue
		}
		for _, c := range cs {
			if c.Name == s.bus.cfg.Consumer || c.Pending != 0 || c.Idle < s.bus.cfg.ConsumerIdleTTL {
				continue
			}
			if n, err := deleteConsumerIfIdle(ctx, s.bus.rdb, st, s.name, c.Name, s.bus.cfg.ConsumerIdleTTL); err == nil && n == 1 {
				s.bus.log.Info("redisstream: deleted idle consumer with no pending entries", "group", s.name, "stream", st, "consumer", c.Name)
			}
		}
	}
}

// ---- broadcast ----

func (s *subscription) lastIDs(ctx context.Context) ([]string, error) {
	ids := make([]string, len(s.streams))
	for i, st := range s.streams {
		msgs, err := s.bus.rdb.XRevRangeN(ctx, st, "+", "-", 1).Result()
		if err != nil {
			return nil, fmt.Errorf("redisstream: broadcast start of %s: %w", st, err)
		}
		ids[i] = "0-0"
		if len(msgs) > 0 {
			ids[i] = msgs[0].ID
		}
	}
	return ids, nil
}

func (s *subscription) broadcastLoop(last []string) {
	defer s.loops.Done()
	cfg := &s.bus.cfg
	var es errorState
	rd := newStreamReader(s.bus.rdb, s.streams, cfg.Block, s.logFallback)
	idx := make(map[string]int, len(s.streams))
	for i, st := range s.streams {
		idx[st] = i
	}
	for !s.stopping() {
		n := s.acquire(cfg.Count)
		if n == 0 {
			return
		}
		res, err := rd.read(s.readCtx, s.streams, last, n, cfg.Block)
		if err != nil {
			s.release(n)
			if s.stopping() || !s.onError(&es, "broadcast read", err) {
				return
			}
			continue
		}
		s.onSuccess(&es, "broadcast read")
		for _, xs := range res {
			if len(xs.entries) > 0 {
				last[idx[xs.stream]] = strings.Clone(xs.entries[len(xs.entries)-1].id) // not its slab
			}
		}
		s.dispatchRead(res, n, nil)
		rd.forget()
	}
}
