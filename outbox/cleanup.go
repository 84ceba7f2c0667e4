package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Cleanup defaults.
const (
	DefaultRetention       = 24 * time.Hour
	DefaultMarkerRetention = 7 * 24 * time.Hour
	DefaultCleanupBatch    = 1000
	DefaultCleanupInterval = time.Minute
	DefaultCleanupMaxBatch = 1000 // batches per run and table
)

// CleanupConfig configures a Cleanup.
type CleanupConfig struct {
	// Store is the outbox. Required.
	Store CleanupStore
	// Markers, if set, also has its idempotency markers pruned. Defaults to
	// none.
	Markers MarkerPruner
	// Retention is how long published rows are kept (for inspection and
	// replay). Defaults to DefaultRetention.
	Retention time.Duration
	// MarkerRetention is how long idempotency markers are kept: a redelivery
	// older than this runs its handler again. Defaults to
	// DefaultMarkerRetention.
	MarkerRetention time.Duration
	// BatchSize bounds each DELETE. Defaults to DefaultCleanupBatch.
	BatchSize int
	// MaxBatches bounds the batches per table in one run, so one run never
	// holds the lock for long. Defaults to DefaultCleanupMaxBatch.
	MaxBatches int
	// Interval is the wait between runs under Run. Defaults to
	// DefaultCleanupInterval.
	Interval time.Duration
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
	// Logger logs failed runs. Defaults to slog.Default().
	Logger *slog.Logger
}

// CleanupResult reports one run.
type CleanupResult struct {
	// Ran is false when another instance held the lock.
	Ran bool
	// Outbox and Markers count the deleted rows.
	Outbox, Markers int64
	// Batches counts the DELETE statements issued.
	Batches int
}

// Cleanup deletes published outbox rows and idempotency markers past their
// retention, in bounded batches, one instance at a time (the store's lock);
// pending and quarantined rows are never touched.
type Cleanup struct {
	cfg CleanupConfig
	log *slog.Logger
}

// NewCleanup validates cfg and returns a cleanup job.
func NewCleanup(cfg CleanupConfig) (*Cleanup, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: cleanup needs a Store", ErrConfig)
	}
	if cfg.Retention < 0 || cfg.MarkerRetention < 0 || cfg.BatchSize < 0 || cfg.MaxBatches < 0 || cfg.Interval < 0 {
		return nil, fmt.Errorf("%w: negative cleanup setting", ErrConfig)
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.MarkerRetention == 0 {
		cfg.MarkerRetention = DefaultMarkerRetention
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultCleanupBatch
	}
	if cfg.MaxBatches == 0 {
		cfg.MaxBatches = DefaultCleanupMaxBatch
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultCleanupInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Cleanup{cfg: cfg, log: log}, nil
}

// RunOnce runs one cleanup pass if no other instance is running one.
func (c *Cleanup) RunOnce(ctx context.Context) (CleanupResult, error) {
	var res CleanupResult
	release, ok, err := c.cfg.Store.TryLock(ctx)
	if err != nil {
		return res, fmt.Errorf("outbox: cleanup lock: %w", err)
	}
	if !ok {
		return res, nil
	}
	defer release()
	res.Ran = true
	now := c.cfg.Now()
	cutoff := now.Add(-c.cfg.Retention)
	for i := 0; i < c.cfg.MaxBatches; i++ {
		n, err := c.cfg.Store.DeletePublishedBefore(ctx, cutoff, c.cfg.BatchSize)
		res.Batches++
		res.Outbox += n
		if err != nil {
			return res, fmt.Errorf("outbox: cleanup published rows: %w", err)
		}
		if n < int64(c.cfg.BatchSize) {
			break
		}
	}
	if c.cfg.Markers != nil {
		mcut := now.Add(-c.cfg.MarkerRetention)
		for i := 0; i < c.cfg.MaxBatches; i++ {
			n, err := c.cfg.Markers.DeleteProcessedBefore(ctx, mcut, c.cfg.BatchSize)
			res.Batches++
			res.Markers += n
			if err != nil {
				return res, fmt.Errorf("outbox: cleanup markers: %w", err)
			}
			if n < int64(c.cfg.BatchSize) {
				break
			}
		}
	}
	return res, nil
}

// Run runs a pass every Interval until ctx is done; failed passes are
// logged and retried at the next interval. It returns nil when ctx is done.
func (c *Cleanup) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := c.RunOnce(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("outbox cleanup failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
