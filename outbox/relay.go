package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/choicesherpa/eventkit/deadletter"
	"github.com/choicesherpa/eventkit/eventbus"
)

// Relay defaults.
const (
	DefaultBatchSize      = 100
	DefaultPollInterval   = time.Second
	DefaultMaxAttempts    = 10
	DefaultPublishTimeout = 10 * time.Second
	DefaultBatchTimeout   = 30 * time.Second
	DefaultLagInterval    = time.Second
)

// DefaultRetryBackoff is the backoff of failed rows when
// RelayConfig.RetryBackoff is zero: 1s doubling up to 5 minutes, 20% jitter.
var DefaultRetryBackoff = eventbus.Backoff{Initial: time.Second, Max: 5 * time.Minute, Multiplier: 2, Jitter: 0.2}

// DefaultErrorBackoff is the wait after a store error (database down).
var DefaultErrorBackoff = eventbus.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: 0.2}

// RelayConfig configures a Relay.
type RelayConfig struct {
	// Store is the outbox. Required.
	Store Store
	// Publisher receives the events. Required.
	Publisher eventbus.Publisher
	// BatchSize is how many rows one claim takes. Defaults to DefaultBatchSize.
	BatchSize int
	// PollInterval is the longest wait between two claims when no wake-up
	// arrives; it bounds the delay a lost notification costs. Defaults to
	// DefaultPollInterval.
	PollInterval time.Duration
	// DisableWake turns off the store's wake-ups (use it behind a
	// transaction-pooling PgBouncer, where LISTEN does not work). Defaults to
	// false: a Store that implements WakeSource wakes the relay.
	DisableWake bool
	// MaxAttempts is how many failed publishes quarantine a row. Defaults to
	// DefaultMaxAttempts.
	MaxAttempts int
	// RetryBackoff spaces the attempts of a failing row. Defaults to
	// DefaultRetryBackoff.
	RetryBackoff eventbus.Backoff
	// ErrorBackoff spaces claims after store errors. Defaults to
	// DefaultErrorBackoff.
	ErrorBackoff eventbus.Backoff
	// PublishTimeout bounds one Publish call. Defaults to DefaultPublishTimeout.
	PublishTimeout time.Duration
	// BatchTimeout bounds one claim-publish-mark cycle, which is allowed to
	// finish after the relay is stopped. Defaults to DefaultBatchTimeout.
	BatchTimeout time.Duration
	// LagInterval is how often the lag is measured and reported through
	// Hooks.OnLag. Defaults to DefaultLagInterval; negative disables it.
	LagInterval time.Duration
	// DeadLetters, when set, gets a record for each row the relay
	// quarantines (Handler QuarantineHandler, Source "outbox", SourceID the
	// row id), so quarantined rows show in the dead-letter admin API next to
	// the bus's dead letters; replay them with RearmReplayer. Defaults to
	// nil: quarantined rows are listed by Store.Quarantined only.
	DeadLetters deadletter.Store
	// Hooks observe the relay. Defaults to none.
	Hooks *RelayHooks
	// Logger logs store errors and quarantined rows (event type and id
	// only). Defaults to slog.Default().
	Logger *slog.Logger
}

// RelayHooks observe a relay. Every field is optional; hooks run on the
// relay's goroutine and must not block.
type RelayHooks struct {
	// OnBatch runs after each claim that found rows.
	OnBatch func(ctx context.Context, s BatchStats)
	// OnPublishError runs for each row whose publish failed.
	OnPublishError func(ctx context.Context, env eventbus.Envelope, attempt int, err error)
	// OnQuarantine runs for each row that was quarantined.
	OnQuarantine func(ctx context.Context, env eventbus.Envelope, err error)
	// OnLag reports the lag: the age of the oldest pending row in queue
	// order, the one the relay takes next (0 when none; see Relay.Lag).
	OnLag func(ctx context.Context, lag time.Duration)
	// OnStoreError runs when a claim or lag query failed.
	OnStoreError func(ctx context.Context, err error)
	// BeforeMark runs after publishing and before the outcome is stored.
	// It exists for fault-injection tests (crash between publish and mark).
	BeforeMark func(ctx context.Context, published []eventbus.Envelope)
}

// BatchStats describes one claimed batch.
type BatchStats struct {
	Claimed, Published, Failed, Quarantined, Released int
	// Duration is the time from claim to mark.
	Duration time.Duration
	// OldestAge is the age of the oldest claimed row when it was claimed
	// (by the relay's clock against the row's creation time).
	OldestAge time.Duration
}

// RelayStats are cumulative counters of a relay.
type RelayStats struct {
	Batches, Claimed, Published, Failed, Quarantined, StoreErrors int64
	// Lag is the last measured lag (see Relay.Lag).
	Lag time.Duration
}

// Relay moves outbox rows to a publisher (see the package documentation).
// Run it with Run, or with Start and Stop. Several relays, in one process or
// many, may work on one store.
type Relay struct {
	cfg    RelayConfig
	log    *slog.Logger
	wakeCh chan struct{}

	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	running bool

	batches, claimed, published, failed, quarantined, storeErrors atomic.Int64
	lag                                                           atomic.Int64
}

// NewRelay validates cfg and returns a relay.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if cfg.Store == nil || cfg.Publisher == nil {
		return nil, fmt.Errorf("%w: relay needs a Store and a Publisher", ErrConfig)
	}
	if cfg.BatchSize < 0 || cfg.PollInterval < 0 || cfg.MaxAttempts < 0 || cfg.PublishTimeout < 0 || cfg.BatchTimeout < 0 {
		return nil, fmt.Errorf("%w: negative relay setting", ErrConfig)
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.RetryBackoff == (eventbus.Backoff{}) {
		cfg.RetryBackoff = DefaultRetryBackoff
	}
	if cfg.ErrorBackoff == (eventbus.Backoff{}) {
		cfg.ErrorBackoff = DefaultErrorBackoff
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = DefaultPublishTimeout
	}
	if cfg.BatchTimeout == 0 {
		cfg.BatchTimeout = DefaultBatchTimeout
	}
	if cfg.LagInterval == 0 {
		cfg.LagInterval = DefaultLagInterval
	}
	if cfg.Hooks == nil {
		cfg.Hooks = &RelayHooks{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Relay{cfg: cfg, log: log, wakeCh: make(chan struct{}, 1)}, nil
}

// Wake asks the relay to claim now instead of at the next poll. It never
// blocks; wake-ups coalesce.
func (r *Relay) Wake() {
	select {
	case r.wakeCh <- struct{}{}:
	default:
	}
}

// Stats returns the cumulative counters.
func (r *Relay) Stats() RelayStats {
	return RelayStats{
		Batches: r.batches.Load(), Claimed: r.claimed.Load(), Published: r.published.Load(),
		Failed: r.failed.Load(), Quarantined: r.quarantined.Load(), StoreErrors: r.storeErrors.Load(),
		Lag: time.Duration(r.lag.Load()),
	}
}

// Lag measures the age of the oldest pending row in queue order, the one
// the relay takes next (0 when none), by its creation time. A row that a
// long transaction wrote and committed late is queued behind rows
// committed before it, and is counted once it reaches the head.
func (r *Relay) Lag(ctx context.Context) (time.Duration, error) {
	created, now, ok, err := r.cfg.Store.OldestPending(ctx)
	if err != nil || !ok {
		return 0, err
	}
	lag := now.Sub(created)
	if lag < 0 {
		lag = 0
	}
	return lag, nil
}

// ErrRunning is returned by Start and Run on a relay that is already running.
var ErrRunning = errors.New("outbox: relay already running")

// Start runs the relay in the background until Stop. ctx carries values
// only: cancelling it stops the relay like Stop, but without waiting.
func (r *Relay) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running {
		return ErrRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	r.running, r.cancel, r.done = true, cancel, make(chan struct{})
	done := r.done
	go func() {
		defer close(done)
		r.loop(ctx)
		r.mu.Lock()
		r.running = false
		r.mu.Unlock()
	}()
	return nil
}

// Stop stops a relay started with Start: the batch in hand is finished
// (bounded by BatchTimeout), then Stop returns. It gives up waiting when ctx
// is done and returns ctx's error. Stop on a stopped relay returns nil.
func (r *Relay) Stop(ctx context.Context) error {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("outbox: relay stop: %w", ctx.Err())
	}
}

// Run runs the relay until ctx is done, then finishes the batch in hand and
// returns nil.
func (r *Relay) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return ErrRunning
	}
	r.running = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running = false
		r.mu.Unlock()
	}()
	r.loop(ctx)
	return nil
}

func (r *Relay) loop(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	if ws, ok := r.cfg.Store.(WakeSource); ok && !r.cfg.DisableWake {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ws.Listen(ctx, r.Wake); err != nil && ctx.Err() == nil {
				r.log.Error("outbox relay: wake-up listener stopped; polling only", "err", err)
			}
		}()
	}
	poll := time.NewTimer(r.cfg.PollInterval)
	defer poll.Stop()
	var lastLag time.Time
	errStreak := 0
	for ctx.Err() == nil {
		// Measure before claiming, so the lag includes what this claim is
		// about to take (a late commit shows up before it is drained).
		if r.cfg.LagInterval > 0 && time.Since(lastLag) >= r.cfg.LagInterval {
			lastLag = time.Now()
			r.reportLag(ctx)
		}
		n, progressed, err := r.RunOnce(ctx)
		var wait time.Duration
		switch {
		case err != nil:
			errStreak++
			wait = r.cfg.ErrorBackoff.Delay(errStreak)
		case n == r.cfg.BatchSize && progressed:
			errStreak = 0
			continue // more is waiting
		default:
			errStreak = 0
			wait = r.cfg.PollInterval
		}
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		case <-r.wakeCh:
			if err != nil {
				// After a store error wake-ups do not shorten the backoff.
				select {
				case <-ctx.Done():
					return
				case <-poll.C:
				}
			}
		}
	}
}

func (r *Relay) reportLag(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	lag, err := r.Lag(lctx)
	if err != nil {
		if ctx.Err() == nil {
			r.storeError(ctx, fmt.Errorf("outbox: measure lag: %w", err))
		}
		return
	}
	r.lag.Store(int64(lag))
	if r.cfg.Hooks.OnLag != nil {
		r.cfg.Hooks.OnLag(ctx, lag)
	}
}

func (r *Relay) storeError(ctx context.Context, err error) {
	r.storeErrors.Add(1)
	r.log.Warn("outbox relay: store error", "err", err)
	if r.cfg.Hooks.OnStoreError != nil {
		r.cfg.Hooks.OnStoreError(ctx, err)
	}
}

// RunOnce claims, publishes and marks one batch, and returns how many rows it
// claimed and whether any was published or failed (as opposed to released).
// The batch runs to its end even if ctx is cancelled meanwhile (bounded by
// BatchTimeout). Run calls it in a loop; tests and tools may call it directly.
func (r *Relay) RunOnce(ctx context.Context) (claimed int, progressed bool, err error) {
	if ctx.Err() != nil {
		return 0, false, ctx.Err()
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.BatchTimeout)
	defer cancel()
	start := time.Now()
	var stats BatchStats
	var setAside []quarantined
	outage := false
	n, err := r.cfg.Store.Claim(bctx, r.cfg.BatchSize, func(ctx context.Context, recs []Record) Outcome {
		var oldest time.Time
		for i := range recs {
			if oldest.IsZero() || recs[i].CreatedAt.Before(oldest) {
				oldest = recs[i].CreatedAt
			}
		}
		var out Outcome
		out, setAside, outage = r.process(ctx, recs)
		stats = BatchStats{Claimed: len(recs), Published: len(out.Published), Failed: len(out.Failed)}
		if !oldest.IsZero() {
			stats.OldestAge = max(start.Sub(oldest), 0)
		}
		stats.Quarantined = len(setAside)
		stats.Released = stats.Claimed - stats.Published - stats.Failed
		return out
	})
	if err != nil {
		r.storeError(ctx, fmt.Errorf("outbox: claim: %w", err))
		return n, false, err
	}
	if n == 0 {
		return 0, false, nil
	}
	stats.Duration = time.Since(start)
	r.recordQuarantined(ctx, setAside) // only now is the quarantine committed
	r.batches.Add(1)
	r.claimed.Add(int64(stats.Claimed))
	r.published.Add(int64(stats.Published))
	r.failed.Add(int64(stats.Failed))
	r.quarantined.Add(int64(stats.Quarantined))
	if r.cfg.Hooks.OnBatch != nil {
		r.cfg.Hooks.OnBatch(ctx, stats)
	}
	// The oldest claimed row was pending when claimed: the lag was at least
	// its age, even if it is drained before the next measurement.
	if stats.OldestAge > time.Duration(r.lag.Load()) {
		r.lag.Store(int64(stats.OldestAge))
		if r.cfg.Hooks.OnLag != nil {
			r.cfg.Hooks.OnLag(ctx, stats.OldestAge)
		}
	}
	if outage {
		return n, false, fmt.Errorf("%w: %d rows in a row failed", ErrPublisherUnavailable, stats.Failed)
	}
	return n, stats.Published+stats.Failed > 0, nil
}

// ErrPublisherUnavailable is returned by RunOnce when a batch failed and the
// first rows retried one by one all failed too: the publisher is taken to be
// down, the rest of the batch is released untouched and Run waits
// ErrorBackoff before the next claim, instead of trying every row.
var ErrPublisherUnavailable = errors.New("outbox: publisher unavailable")

// outageProbe is how many rows, tried one by one after a failed batch, must
// all fail for the publisher to be taken as down.
const outageProbe = 3

type aggKey struct{ typ, id string }

// process publishes recs (in store order) and decides each row's outcome.
// The whole batch goes to Publish in one call; if that fails, rows are
// published one by one so that a poison row only fails itself, and a failed
// row holds back the later rows of its aggregate.
func (r *Relay) process(ctx context.Context, recs []Record) (out Outcome, setAside []quarantined, outage bool) {
	if len(recs) == 0 {
		return out, nil, false
	}
	envs := make([]eventbus.Envelope, len(recs))
	for i := range recs {
		envs[i] = recs[i].Envelope
	}
	if err := r.publish(ctx, envs...); err == nil {
		out.Published = make([]int64, len(recs))
		for i := range recs {
			out.Published[i] = recs[i].ID
		}
		r.beforeMark(ctx, envs)
		return out, nil, false
	}
	blocked := map[aggKey]bool{}
	var ok []eventbus.Envelope
	for i := range recs {
		if ctx.Err() != nil {
			break // BatchTimeout: the rest is released untouched
		}
		rec := &recs[i]
		k := aggKey{rec.Envelope.AggregateType, rec.Envelope.AggregateID}
		if blocked[k] {
			continue // released: retried after the row it waits for
		}
		if len(out.Published) == 0 && len(out.Failed) >= outageProbe {
			r.beforeMark(ctx, ok)
			return out, setAside, true // the rest is released untouched
		}
		err := r.publish(ctx, rec.Envelope)
		if err == nil {
			out.Published = append(out.Published, rec.ID)
			ok = append(ok, rec.Envelope)
			continue
		}
		if ctx.Err() != nil {
			break // cut off by BatchTimeout, not the row's failure: released
		}
		blocked[k] = true
		attempt := rec.Attempts + 1
		f := Failure{ID: rec.ID, Err: truncate(err.Error(), 2000), RetryAfter: r.cfg.RetryBackoff.Delay(attempt)}
		reason := deadletter.ReasonMaxDeliveries
		if eventbus.IsPermanent(err) {
			f.Quarantine, reason = true, deadletter.ReasonPermanent
		} else if attempt >= r.cfg.MaxAttempts {
			f.Quarantine = true
		}
		out.Failed = append(out.Failed, f)
		if r.cfg.Hooks.OnPublishError != nil {
			r.cfg.Hooks.OnPublishError(ctx, rec.Envelope, attempt, err)
		}
		if f.Quarantine {
			setAside = append(setAside, quarantined{rec: *rec, failure: f, reason: reason})
			r.log.Error("outbox relay: row quarantined", "event_type", rec.Envelope.EventType, "event_id", rec.Envelope.EventID.String(), "attempts", attempt, "err", err)
			if r.cfg.Hooks.OnQuarantine != nil {
				r.cfg.Hooks.OnQuarantine(ctx, rec.Envelope, err)
			}
		} else {
			r.log.Warn("outbox relay: publish failed", "event_type", rec.Envelope.EventType, "event_id", rec.Envelope.EventID.String(), "attempt", attempt, "retry_after", f.RetryAfter, "err", err)
		}
	}
	r.beforeMark(ctx, ok)
	return out, setAside, false
}

func (r *Relay) beforeMark(ctx context.Context, envs []eventbus.Envelope) {
	if r.cfg.Hooks.BeforeMark != nil {
		r.cfg.Hooks.BeforeMark(ctx, envs)
	}
}

func (r *Relay) publish(ctx context.Context, envs ...eventbus.Envelope) error {
	pctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	return r.cfg.Publisher.Publish(pctx, envs...)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
