// Package postgres is eventkit's PostgreSQL adapter (pgx/v5): the
// transactional outbox (Outbox: writer, relay store, LISTEN/NOTIFY wake-up,
// cleanup store), the unit of work that writes raised events in the
// business transaction (UnitOfWork), the processed-events store behind
// idempotent handlers (ProcessedEventStore), and the embedded migrations
// (Migrate).
//
// # Schema
//
// Migrate creates two tables in the configured schema (OutboxConfig.Schema,
// default: the search_path) and records applied versions in
// eventkit_migrations; it holds an advisory lock, so processes starting at
// once are safe. The same SQL ships as plain files (Migrations) for other
// migration tools: run them with search_path set to the target schema.
//
//   - outbox: one row per event; payload is stored as json (not jsonb) so it
//     comes back byte for byte. Rows stay after publishing (published_at set)
//     until the cleanup's retention expires, so they can be inspected and
//     replayed.
//   - processed_events: one marker per (handler_name, event_id).
//
// # Guarantees
//
// A row written with Write (or by a UnitOfWork) exists if and only if the
// business transaction commits. The relay (outbox.Relay over Outbox) claims
// rows with FOR UPDATE SKIP LOCKED plus one transaction-scoped advisory lock
// per aggregate, so several relays share the work while each aggregate's
// rows are published in insertion order; the claim is held for the length of
// one publish, and a relay that dies releases it with its connection (its
// published-but-unmarked rows are published again: at least once).
//
// # Wake-up
//
// Relays poll (the ground truth) and are woken early by Outbox.Notify, which
// UnitOfWork and ProcessedEventStore call after their COMMIT (never for a
// rolled-back transaction): relays of the same Outbox in this process are
// woken at once, and a NOTIFY with an empty payload is sent on a pooled
// connection for relays elsewhere: at once after a quiet spell, and at most
// one per OutboxConfig.NotifyCoalesce (5 ms) during a burst, so busy
// writers pay for one NOTIFY per window rather than one per commit. The business transaction itself sends no NOTIFY by
// default, because PostgreSQL serialises the commits of notifying
// transactions on one lock held across their WAL flush (measured: 16
// concurrent writers lost half their throughput). Writers that commit
// themselves call Notify after COMMIT, or set OutboxConfig.NotifyInTx to
// have Write send pg_notify from their transaction (delivered only if it
// commits). A lost wake-up costs at most one poll interval.
//
// # Round trips
//
// On a small machine a round trip (a backend wake-up, TLS) is most of a
// small transaction's cost, so neither the outbox nor the marker adds one.
// A UnitOfWork that began its transaction sends the outbox INSERT and
// COMMIT in one pipeline (if the INSERT fails, PostgreSQL skips the COMMIT
// and Do rolls back). The idempotent handler (ProcessedEventStore) sends
// BEGIN and the marker INSERT (a statement prepared once per connection,
// run with EXECUTE) as one simple query; a duplicate is the INSERT's unique
// violation, which aborts the transaction before the handler runs, and is
// reported as a duplicate (the server log shows it as one ERROR line). The
// handler's own writes and the events it raises then commit with the
// marker in one transaction. Write, for callers that manage their own
// transaction, is one statement of its own.
package postgres
