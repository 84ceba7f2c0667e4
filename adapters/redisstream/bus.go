package redisstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/choicesherpa/eventkit/deadletter"
	"github.com/choicesherpa/eventkit/eventbus"
)

// Bus is the Redis Streams event bus. It is safe for concurrent use.
type Bus struct {
	rdb  redis.UniversalClient
	cfg  Config
	log  *slog.Logger
	tags string // key prefix of derived keys: "{Stream}" or Stream when it holds a tag

	streamBox any      // cfg.Stream as a command argument, boxed once
	writes    *opBound // WriteTimeout for publishes and acks

	// publishing: flat combining (see Publish)
	pubMu      sync.Mutex
	pubQueue   []*pubReq
	pubActive  int // pipelines in flight
	pubClosed  bool
	pubCallers atomic.Int64 // Publish calls in progress
	pubWake    chan struct{}

	mu   sync.Mutex
	subs map[*subscription]struct{}
	// starting counts Subscribe calls between reserving their name and
	// registering in subs (Add only under mu, while not closed).
	starting sync.WaitGroup
	names    map[string]bool // consumer-group subscriptions of this bus, by name
	streams  map[string]struct{}
	closed   bool

	closing   chan struct{} // closed once every subscription has stopped
	bg        sync.WaitGroup
	closeDone chan struct{} // closed when Close finished; closeErr is set
	closeErr  error
	counters  counters
}

type counters struct {
	published    atomic.Int64
	pipelines    atomic.Int64
	delivered    atomic.Int64
	acked        atomic.Int64
	failed       atomic.Int64
	deadLettered atomic.Int64
	lostEntries  atomic.Int64
	skipped      atomic.Int64
	groupsMade   atomic.Int64
}

var (
	_ eventbus.Bus        = (*Bus)(nil)
	_ deadletter.Replayer = (*Bus)(nil)
)

// New returns a bus on rdb (a *redis.Client, *redis.ClusterClient or
// failover client). cfg may be nil. The bus never closes rdb.
func New(rdb redis.UniversalClient, cfg *Config) (*Bus, error) {
	if rdb == nil {
		return nil, fmt.Errorf("%w: nil redis client", ErrConfig)
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	c = c.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	b := &Bus{
		rdb:       rdb,
		cfg:       c,
		log:       c.Logger,
		pubWake:   make(chan struct{}, c.PublishPipelines),
		subs:      make(map[*subscription]struct{}),
		names:     make(map[string]bool),
		streams:   make(map[string]struct{}),
		closing:   make(chan struct{}),
		closeDone: make(chan struct{}),
	}
	b.streamBox = c.Stream
	b.writes = newOpBound(c.WriteTimeout)
	if hasHashTag(c.Stream) {
		b.tags = c.Stream
	} else {
		b.tags = "{" + c.Stream + "}"
	}
	if c.DeadLetters == nil {
		b.log.Warn("redisstream: no dead-letter store configured; entries that exhaust MaxDeliveries or cannot be decoded stay pending")
	}
	for range c.PublishPipelines {
		b.bg.Add(1)
		go b.publishLoop()
	}
	return b, nil
}

func hasHashTag(s string) bool {
	i := strings.IndexByte(s, '{')
	if i < 0 {
		return false
	}
	j := strings.IndexByte(s[i+1:], '}')
	return j > 0
}

// StreamFor returns the stream an event of type eventType is appended to.
func (b *Bus) StreamFor(eventType string) string {
	if !b.cfg.StreamPerType {
		return b.cfg.Stream
	}
	return b.tags + ":" + eventType
}

// ReplayStream returns the stream Replay appends to for the group group.
// Only that group reads it (see Replay).
func (b *Bus) ReplayStream(group string) string { return b.tags + ":replay:" + group }

// Consumer returns this process's consumer name.
func (b *Bus) Consumer() string { return b.cfg.Consumer }

func (b *Bus) noteStream(s string) {
	b.mu.Lock()
	b.streams[s] = struct{}{}
	b.mu.Unlock()
}

// ---- publishing ----

type pubReq struct {
	ctx     context.Context
	envs    []eventbus.Envelope // a copy: the caller's slice never escapes
	entries []pubEntry
	queued  bool       // the caller waits on done
	done    chan error // buffered; made once per pooled request
}

// pubReqs recycles requests, with their encoding buffers and done channel,
// so a steady publisher allocates little beyond what go-redis does. A
// request goes back only once no writer can touch it any more.
var pubReqs = sync.Pool{New: func() any { return &pubReq{done: make(chan error, 1)} }}

// maxKeptEntries is the most entries a recycled request keeps room for.
const maxKeptEntries = 64

func getPubReq(ctx context.Context, envs []eventbus.Envelope) *pubReq {
	r := pubReqs.Get().(*pubReq)
	r.ctx = ctx
	r.envs = append(r.envs[:0], envs...)
	if cap(r.entries) < len(envs) {
		r.entries = make([]pubEntry, len(envs))
	}
	r.entries = r.entries[:len(envs)]
	return r
}

func putPubReq(r *pubReq) {
	for i := range r.entries {
		e := &r.entries[i]
		if cap(e.buf) > maxKeptBuf {
			e.buf = nil
		}
		e.cmd = nil // it holds the caller's ctx
	}
	clear(r.envs) // payloads are the caller's memory
	if cap(r.envs) > maxKeptEntries {
		r.envs, r.entries = nil, nil
	}
	r.ctx, r.envs, r.entries, r.queued = nil, r.envs[:0], r.entries[:0], false
	pubReqs.Put(r)
}

// Publish appends envs (in order) and returns once Redis accepted all of
// them. Envelopes are validated first; an invalid or oversize one fails the
// whole call synchronously (nothing is written) with an error matching
// eventbus.ErrInvalidEnvelope (*PayloadTooLargeError for size).
//
// Concurrent calls are coalesced: a lone call that finds no pipeline in
// flight writes at once on its own goroutine; calls arriving while a
// pipeline is in flight are queued and written together in the next one
// (up to PublishPipelines at once), with no timer.
//
// A queued call returns ctx's error as soon as ctx ends. A call written on
// its own goroutine returns within WriteTimeout and the client's timeouts
// (go-redis does not interrupt a socket read when ctx is cancelled); a ctx
// whose deadline is closer than WriteTimeout always takes the queued path,
// so deadlines are honoured. After a ctx error the entries may still have
// been written (publishing is at least once: publish again, e.g. from an
// outbox, and let idempotent handlers drop duplicates).
func (b *Bus) Publish(ctx context.Context, envs ...eventbus.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	if b.isClosed() {
		return eventbus.ErrClosed
	}
	req := getPubReq(ctx, envs)
	for i := range req.envs {
		e, env := &req.entries[i], &req.envs[i]
		if err := e.encode(env, b.cfg.MaxPayloadBytes); err != nil {
			b.cfg.Hooks.Publish(ctx, *env, err)
			putPubReq(req)
			return err
		}
		e.stream = b.StreamFor(env.EventType)
	}
	if b.cfg.StreamPerType {
		for _, e := range req.entries {
			b.noteStream(e.stream)
		}
	}
	if err := ctx.Err(); err != nil {
		putPubReq(req)
		return err
	}
	b.pubCallers.Add(1)
	defer b.pubCallers.Add(-1)

	b.pubMu.Lock()
	if b.pubClosed {
		b.pubMu.Unlock()
		putPubReq(req)
		return eventbus.ErrClosed
	}
	if b.pubActive == 0 && len(b.pubQueue) == 0 && b.pubCallers.Load() == 1 && !b.tightDeadline(ctx) {
		// The line is idle: write on the caller's goroutine, no hand-off.
		b.pubActive++
		b.pubMu.Unlock()
		one := [1]*pubReq{req}
		err := b.writeBatch(ctx, one[:])
		putPubReq(req)
		b.pubMu.Lock()
		b.pubActive--
		kick := len(b.pubQueue) > 0
		b.pubMu.Unlock()
		if kick {
			b.wakeWriter()
		}
		return err
	}
	req.queued = true
	b.pubQueue = append(b.pubQueue, req)
	b.pubMu.Unlock()
	b.wakeWriter()
	select {
	case err := <-req.done:
		putPubReq(req) // the writer is done with it
		return err
	case <-ctx.Done():
		// A writer may still hold req: it is not recycled.
		return fmt.Errorf("redisstream: publish: %w", ctx.Err())
	}
}

// tightDeadline reports whether ctx's deadline is closer than WriteTimeout:
// such a publish waits on ctx in Publish (go-redis does not interrupt a
// socket read when ctx ends) instead of writing on the caller's goroutine.
func (b *Bus) tightDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < b.cfg.WriteTimeout
}

func (b *Bus) wakeWriter() {
	select {
	case b.pubWake <- struct{}{}:
	default:
	}
}

// publishLoop is one of PublishPipelines background writers: each takes
// everything queued (up to MaxPipeline entries) and writes it as one
// pipeline, so up to PublishPipelines pipelines are in flight while
// publishers keep queueing.
func (b *Bus) publishLoop() {
	defer b.bg.Done()
	for {
		select {
		case <-b.pubWake:
		case <-b.closing:
			return
		}
		for {
			b.pubMu.Lock()
			n, batch := 0, b.pubQueue[:0:0]
			for len(b.pubQueue) > 0 && (n == 0 || n+len(b.pubQueue[0].envs) <= b.cfg.MaxPipeline) {
				n += len(b.pubQueue[0].envs)
				batch = append(batch, b.pubQueue[0])
				b.pubQueue[0] = nil
				b.pubQueue = b.pubQueue[1:]
			}
			if len(batch) == 0 {
				b.pubQueue = nil
				b.pubMu.Unlock()
				break
			}
			b.pubActive++
			more := len(b.pubQueue) > 0
			b.pubMu.Unlock()
			if more {
				b.wakeWriter() // let another writer take the rest in parallel
			}
			_ = b.writeBatch(b.writes.shared(), batch)
			b.pubMu.Lock()
			b.pubActive--
			b.pubMu.Unlock()
			// Let the publishers just released queue their next entries
			// before taking the next batch: bigger pipelines, no timer.
			runtime.Gosched()
		}
	}
}

func (b *Bus) failQueued() {
	b.pubMu.Lock()
	q := b.pubQueue
	b.pubQueue = nil
	b.pubClosed = true
	b.pubMu.Unlock()
	for _, r := range q {
		r.done <- eventbus.ErrClosed // only queued requests are in the queue
	}
}

// writeBatch pipelines every request's XADDs and reports to each request.
// Once it has sent a queued request its result it no longer touches it
// (the caller recycles it).
func (b *Bus) writeBatch(ctx context.Context, batch []*pubReq) error {
	live := batch
	for i, r := range batch {
		if r.ctx.Err() != nil && r.queued {
			// Drop requests whose caller gave up (copying only then).
			live = slices.Clone(batch[:i])
			for _, r := range batch[i:] {
				if r.ctx.Err() != nil && r.queued {
					r.done <- fmt.Errorf("redisstream: publish: %w", r.ctx.Err())
					continue
				}
				live = append(live, r)
			}
			break
		}
	}
	if len(live) == 0 {
		return nil
	}
	ctx, cancel := b.writes.bound(ctx)
	defer cancel()
	b.counters.pipelines.Add(1)
	if len(live) == 1 && len(live[0].entries) == 1 {
		e := &live[0].entries[0]
		_ = b.rdb.Process(ctx, e.command(ctx, b.streamArg(e.stream))) // the command carries its error
	} else {
		pipe := b.rdb.Pipeline()
		for _, r := range live {
			for i := range r.entries {
				e := &r.entries[i]
				_ = pipe.Process(ctx, e.command(ctx, b.streamArg(e.stream)))
			}
		}
		_, _ = pipe.Exec(ctx) // each command carries its own error
	}
	var last error
	for _, r := range live {
		var errs []error
		for i := range r.entries {
			err := r.entries[i].cmd.Err()
			if err != nil {
				err = fmt.Errorf("redisstream: publish %s %s: %w", r.envs[i].EventType, r.envs[i].EventID, err)
				errs = append(errs, err)
			} else {
				b.counters.published.Add(1)
			}
			b.cfg.Hooks.Publish(r.ctx, r.envs[i], err)
		}
		err := errors.Join(errs...)
		last = err
		if r.queued {
			r.done <- err
		}
	}
	return last
}

// streamArg returns stream boxed for a command's argument list: the shared
// stream is boxed once, in New.
func (b *Bus) streamArg(stream string) any {
	if stream == b.cfg.Stream {
		return b.streamBox
	}
	return stream
}

// ---- lifecycle ----

func (b *Bus) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Close stops every subscription (each finishes its handlers in flight
// within ShutdownTimeout, acknowledges what finished and leaves the rest
// pending), fails queued publishes with eventbus.ErrClosed and stops the
// background goroutines. It returns within ShutdownTimeout (with the
// allowances of a subscription's Close) even when Redis is unreachable: a
// publish pipeline still in flight then finishes on its own, within
// WriteTimeout, and reports to its callers. It never closes the Redis
// client. Close is idempotent and safe to call concurrently.
func (b *Bus) Close() error {
	deadline := time.Now().Add(b.cfg.ShutdownTimeout)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		// Wait for the first Close to finish and report its outcome.
		<-b.closeDone
		return b.closeErr
	}
	b.closed = true
	// Every subscription is registered by now: one still starting sees
	// closed when it registers, and closes itself.
	subs := make([]*subscription, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()

	// The running subscriptions stop at once, with the whole
	// ShutdownTimeout for their handlers, while the ones still starting
	// finish or give up; one stuck on a silent Redis is not waited for
	// past the deadline (it closes itself when its start gives up).
	var wg sync.WaitGroup
	errs := make([]error, len(subs))
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.closeBy(deadline)
		}()
	}
	waitUntil(&b.starting, deadline)
	wg.Wait()
	close(b.closing)
	waitUntil(&b.bg, deadline)
	b.failQueued()
	b.closeErr = errors.Join(errs...)
	close(b.closeDone)
	return b.closeErr
}

func (b *Bus) removeSub(s *subscription) {
	b.mu.Lock()
	delete(b.subs, s)
	if !s.broadcast {
		delete(b.names, s.name)
	}
	b.mu.Unlock()
}

// waitUntil waits for wg until deadline and reports whether wg finished
// first (if not, its waiting goroutine ends when wg does).
func waitUntil(wg *sync.WaitGroup, deadline time.Time) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// sleepOrStop waits d or until stop closes; false when stopped.
func sleepOrStop(d time.Duration, stop <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}
