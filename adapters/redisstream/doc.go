// Package redisstream is an eventbus.Bus on Redis Streams (go-redis/v9, any
// redis.UniversalClient: single node, Sentinel or Cluster).
//
// # Wire format
//
// Each event is one stream entry with three fields a consumer in any
// language can read: "type" (the event type, e.g. "session.created.v1"),
// "id" (the event id, a UUID) and "data" (the envelope's snake_case JSON).
// Events go to one shared stream (Config.Stream; Choice Sherpa uses
// "choice-sherpa:events") or, with Config.StreamPerType, to one stream per
// event type. All keys a bus derives share one Redis Cluster hash tag.
//
// # Guarantees
//
// Publish returns only after Redis accepted every entry; concurrent calls
// are pipelined together, with no timer when the line is idle. Oversize or
// invalid envelopes fail synchronously.
//
// Subscribe(name) is a consumer group named name: processes subscribing the
// same name compete, different names each get every event. Delivery is at
// least once; wrap handlers with idempotency.Wrap for exactly-once effects.
// A subscription reads with XREADGROUP COUNT (default 100) and a bounded
// BLOCK into a bounded worker pool (optionally keeping per-aggregate order)
// and acknowledges in batches only after the handler succeeded.
//
// Recovery: a subscription first re-reads its own pending entries (id 0),
// then new ones (>); a claim loop takes over entries another consumer left
// idle past MinIdle (XAUTOCLAIM; New rejects a MinIdle not above
// HandlerTimeout); entries a consumer holds, waiting or running, are kept
// claimed by a heartbeat, so a long handler is never run twice at once.
// Delivery counts live in Redis and survive restarts. A failed entry stays
// pending and is re-claimed after a backoff by its delivery count; after
// MaxDeliveries it is written to the dead-letter store and only then
// acknowledged (a failing store keeps it pending). Undecodable entries and
// eventbus.IsPermanent errors are dead-lettered on the first delivery, with
// reason deadletter.ReasonPermanent (an undecodable entry's record keeps its
// raw fields, and its LastError says what was malformed).
// Handler panics are recovered and count as failures. NOGROUP (a Redis
// restart without persistence) re-creates the group with backoff, logging
// once. Consumers are deleted only when they hold no pending entry (checked
// and deleted atomically). Pending entries whose stream entry was deleted
// are counted (Stats.LostEntries) and acknowledged, never crashed on.
//
// New groups start at Config.StartID, "0" by default: an outbox-fed system
// wants a handler deployed after its events to still see them, and a group
// re-created after a Redis restart to miss nothing published in between.
//
// Trimming (Trim, RunTrimmer, TrimStream) never removes an entry some group
// has not acknowledged: it trims by MINID below every group's oldest pending
// and last-delivered id, atomically in a script, with an optional length
// target. Nothing is trimmed on publish.
//
// Replay sends a dead-lettered event back to its handler's group only,
// through that group's replay stream, keeping the event id.
//
// SubscribeBroadcast gives every process every event (plain XREAD, at most
// once per process), for live push.
//
// Close stops reading, lets handlers in flight finish within
// ShutdownTimeout, acknowledges on a detached context by the same deadline
// and leaves the rest pending (entries read but never started get their
// delivery count back, so restarts do not use up MaxDeliveries). The bus
// never closes the client it was given. Close returns within
// ShutdownTimeout even when Redis is unreachable: a read blocked in
// XREADGROUP (go-redis does not cancel socket reads) or a publish pipeline
// in flight is not waited for past it, and acknowledgements not taken by
// then are abandoned, so their entries are redelivered.
//
// # Operating notes
//
//   - Every subscription holds one pooled connection while its read blocks;
//     publishing uses up to PublishPipelines more, acks and the claim loop
//     one each while they run. Size the client's PoolSize accordingly.
//   - Subscriptions read replies unparsed (go-redis DoRawWriteTo, into a
//     buffer each reader reuses) and parse them here: entries are copied
//     into 4 KB slabs shared by a few entries and by their decoded
//     envelopes. That needs a single-node client whose ReadTimeout exceeds
//     Block by 500ms (the defaults do); otherwise go-redis parses, at about
//     ten allocations more per entry.
//   - A handler's context lives in its delivery and each worker re-arms one
//     timer for HandlerTimeout, so a delivery costs no timer of its own.
//     Contexts derived from a handler's context end with context.Canceled
//     (Cause eventbus.ErrHandlerTimeout) when the timeout passes; the
//     handler's own context reports context.DeadlineExceeded.
//   - Tail latency follows the garbage collector when the live heap is
//     small: at 5k events/s, B7's process (publishing, consuming and the
//     benchmark's driver) allocates about 2.3 KB per 256 B event and holds
//     a few MB, so it collects about six times a second. A
//     latency-sensitive service can raise GOGC and bound the heap with
//     GOMEMLIMIT.
//   - Entries waiting for a retry keep their in-flight slot, so a burst of
//     failures slows reading instead of growing memory.
//   - A heartbeat (every MinIdle/4) resets the idle time of every entry a
//     subscription holds, atomically and only for entries it still owns, so
//     a handler that outlives MinIdle (ignoring its context) is not run a
//     second time elsewhere while its process is alive.
//   - Stats reports counters (including LostEntries) and per-group pending
//     and lag; RunTrimmer keeps streams bounded.
package redisstream
