// Package outbox implements the transactional outbox, storage-neutrally.
//
// A business change and the events it causes are stored in one database
// transaction: a UnitOfWork runs the change, collects what it raises (Raise)
// and writes the envelopes to an outbox table before COMMIT, so a rollback
// leaves no event and a commit leaves the event durably queued. A Relay then
// claims pending rows from a Store, publishes them to any eventbus.Publisher
// and marks them published; a Cleanup deletes published rows (and old
// idempotency markers) after a retention window. The PostgreSQL
// implementation of Store, Writer and UnitOfWork is in adapters/postgres.
//
// # Guarantees
//
//   - At least once: a row is marked published only after Publish returned
//     nil for it. A relay that dies between the two publishes that row again
//     (at most one batch of duplicates per crash); consumers deduplicate by
//     event id (package idempotency).
//   - Nothing is skipped: the relay never reads "rows after the last id I
//     saw", so a transaction that commits late (with a lower id) is still
//     found by the next claim. Polling is the ground truth; a store wake-up
//     (LISTEN/NOTIFY) only shortens the wait.
//   - Per-aggregate order: rows of one aggregate (aggregate type + id) are
//     published in insertion order, also with several relays running,
//     provided the writes to one aggregate are serialised (which a unit of
//     work that loads and saves the aggregate does). A row that fails blocks
//     the later rows of its aggregate while it backs off; once quarantined it
//     is set aside and they proceed. There is no order across aggregates.
//   - Poison rows: a row whose publish fails is retried with exponential
//     backoff and jitter, and after MaxAttempts (or at once for a permanent
//     error, see eventbus.IsPermanent) quarantined with its last error. It is
//     then listed by Store.Quarantined and can be re-armed with Store.Rearm.
//     With RelayConfig.DeadLetters it also gets a dead-letter record, so the
//     dead-letter admin API lists it beside the bus's dead letters, and
//     replaying the record there (RearmReplayer) re-arms the row.
//   - Graceful stop: stopping a relay lets the batch in hand finish (bounded
//     by RelayConfig.BatchTimeout); no row is ever lost by stopping.
package outbox
