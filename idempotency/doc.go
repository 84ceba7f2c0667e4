// Package idempotency turns at-least-once delivery into exactly-once effects.
//
// Every bus in eventkit may deliver an event more than once (a crash between
// the effect and the acknowledgement, a reclaimed entry, a replay from the
// dead-letter queue). Wrap puts a handler behind a ProcessedEventStore keyed
// by (handler name, event id): the first delivery runs the handler and marks
// the pair processed, every later one is acknowledged and skipped.
//
// The guarantee comes from the store, not from a check in front of the
// handler. ProcessedEventStore.Process runs the handler's effect and the
// marker write as one unit: with the PostgreSQL store (adapters/postgres)
// they are one database transaction, which the handler joins for its own
// writes and for the events it raises (the transactional outbox), so marker,
// effect and follow-up events commit together or not at all. Concurrent
// duplicates are serialised by the store: one runs, the others wait for its
// outcome and are then skipped (or run, if it failed). A failed handler
// leaves no marker, so the redelivery runs it again.
//
// Markers are kept for a retention window (see Pruner); a redelivery that
// arrives after its marker was deleted runs the handler again. Choose a
// window longer than the longest redelivery path (dead-letter replay
// included); the PostgreSQL store defaults to 7 days.
package idempotency
