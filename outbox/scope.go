package outbox

import "context"

// WithNewCollector returns ctx carrying a fresh collector, even when ctx
// already carries one. A unit of work that opens its own transaction uses it
// so the events raised inside go to that transaction, not to an enclosing
// unit of another kind.
func WithNewCollector(ctx context.Context) (context.Context, *Collector) {
	c := &Collector{}
	return context.WithValue(ctx, collectorKey{}, c), c
}
