package redisstream

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/choicesherpa/eventkit/eventbus"
)

var errClosed = eventbus.ErrClosed

// Stats is a snapshot of the bus: counters since New and gauges read from
// Redis.
type Stats struct {
	Published    int64 // entries Redis accepted
	Pipelines    int64 // publish round trips (Published/Pipelines = average coalescing)
	Delivered    int64 // handler invocations
	Acked        int64 // entries acknowledged (handled, skipped, dead-lettered or lost)
	Failed       int64 // handler failures (errors, panics, timeouts)
	DeadLettered int64 // records written to the dead-letter store
	// LostEntries counts pending entries whose stream entry had been
	// deleted or trimmed (XDEL, MAXLEN by someone else) before they were
	// handled. Safe trimming never causes this.
	LostEntries int64
	Skipped     int64 // entries of types a subscription does not want (shared stream)
	Streams     []StreamStats
}

// StreamStats are one stream's gauges.
type StreamStats struct {
	Stream string
	Length int64
	Groups []GroupStats
}

// GroupStats are one consumer group's gauges.
type GroupStats struct {
	Name            string
	Consumers       int64
	Pending         int64 // delivered, not yet acknowledged
	Lag             int64 // entries not yet delivered to the group (-1 when Redis cannot tell)
	LastDeliveredID string
}

// Stats returns the counters and, for every stream this bus knows, its
// length and its groups' pending counts and lag.
func (b *Bus) Stats(ctx context.Context) (Stats, error) {
	c := &b.counters
	st := Stats{
		Published: c.published.Load(), Pipelines: c.pipelines.Load(), Delivered: c.delivered.Load(), Acked: c.acked.Load(),
		Failed: c.failed.Load(), DeadLettered: c.deadLettered.Load(), LostEntries: c.lostEntries.Load(),
		Skipped: c.skipped.Load(),
	}
	b.mu.Lock()
	streams := slices.Sorted(maps.Keys(b.streams))
	b.mu.Unlock()
	var errs []error
	for _, s := range streams {
		ss := StreamStats{Stream: s}
		n, err := b.rdb.XLen(ctx, s).Result()
		if err != nil {
			errs = append(errs, fmt.Errorf("redisstream: stats %s: %w", s, err))
			continue
		}
		ss.Length = n
		groups, err := b.rdb.XInfoGroups(ctx, s).Result()
		if err != nil && !strings.Contains(err.Error(), "no such key") {
			errs = append(errs, fmt.Errorf("redisstream: stats %s: %w", s, err))
		}
		for _, g := range groups {
			ss.Groups = append(ss.Groups, GroupStats{Name: g.Name, Consumers: g.Consumers, Pending: g.Pending, Lag: g.Lag, LastDeliveredID: g.LastDeliveredID})
		}
		st.Streams = append(st.Streams, ss)
	}
	return st, errors.Join(errs...)
}
