// Package deadletter holds events that a handler could not process: the
// port (Store), record type, replay, and an admin HTTP handler.
//
// A durable bus writes a Record when a delivery fails permanently (bad
// input, a permanent error) or exhausts its allowed deliveries, and only
// after that write succeeds does it acknowledge the original delivery; a
// failing Store keeps the delivery pending so nothing is lost. Records are
// keyed by (handler, event id), so a crash between the write and the
// acknowledgement produces no duplicate record.
//
// Replay sends the event back to the handler that failed it with the same
// event id, so an idempotent handler that did apply it skips it; a replayed
// event that fails again comes back as the same record with its replay count
// kept, instead of looping.
//
// # Stores
//
// MemoryStore keeps records in process (tests, the embedded mode); the
// Redis store is redisstream.DeadLetterStore. Both pass the conformance
// suite in package deadlettertest, which other implementations can run.
//
// # Queue
//
// Queue is the operator service over a Store and a Replayer: List (paged,
// newest failure first, filtered by event type, handler, status and failure
// time), Get, Replay, ReplayFilter (bounded by Config.MaxReplayBatch; by
// default it only picks dead records), Delete, Purge and Depth. Purge runs
// only with an explicit confirmation token: ConfirmPurge ("purge"), or
// ConfirmPurgeAll ("purge-all") when the filter is empty and everything
// would go. Every mutation writes an audit line to Config.Logger with the
// record id, event id and type, handler and the actor from WithActor, never
// the payload. Config.RedactPayload replaces payloads in everything the
// Queue returns.
//
// HandlerReplayer is a Replayer for the embedded mode: it calls the
// registered handler directly and writes a re-failure back to the Store.
//
// # Admin HTTP API
//
// NewAdminHandler serves the Queue as JSON. Mount it under a prefix with
// http.StripPrefix (the app uses /admin/dlq):
//
//	GET    /  or /records      list: ?type=&handler=&status=&after=&before=&cursor=&limit=
//	                           (after/before RFC 3339; limit defaults to 50, capped at 500)
//	                           -> {"records":[...],"next_cursor":"...","limit":n}
//	GET    /records/{id}       one record
//	DELETE /records/{id}       delete one -> {"deleted":"<id>"}
//	POST   /replay/{id}        replay one (no body) -> the record afterwards
//	POST   /replay             {"filter":{"type","handler","status","after","before"},"limit":n}
//	                           -> {"matched","replayed","failed","more","limit","errors":[{"id","error"}]}
//	POST   /purge              {"filter":{...},"confirm":"purge"|"purge-all"} -> {"purged":n}
//	GET    /stats              {"depth":n,"replayed":n}
//
// Record ids contain a slash (handler/event-id); send it raw or as %2F.
// Errors are {"error":{"code":"...","message":"..."}} with codes
// unauthenticated (401), forbidden (403), cross_site_request (403),
// not_found (404), method_not_allowed (405, with Allow), bad_request and
// confirmation_required (400), no_envelope (409), payload_too_large (413),
// unsupported_media_type (415), replay_failed (502), internal (500).
//
// Security policy:
//
//   - Every request goes through AdminConfig.Authorize. It returns the actor
//     name, or an error wrapping ErrUnauthenticated (401) or ErrForbidden
//     (403); any other error is a 500. Without a hook every request is
//     denied (403).
//   - Mutations are POST and DELETE only; GET on a mutation route is 405.
//     JSON bodies must say Content-Type application/json, are limited to
//     AdminConfig.MaxBodyBytes (64 KiB by default) and may not contain
//     unknown fields.
//   - Cross-site request forgery: a mutation from a browser must be
//     same-origin (Sec-Fetch-Site: same-origin, or an Origin equal to the
//     Host) or come from one of AdminConfig.TrustedOrigins; others get 403
//     before the hook runs (http.CrossOriginProtection). A mutation that
//     carries a cookie but neither Origin nor Sec-Fetch-Site is also refused,
//     so cookie authentication is never accepted without an origin check.
//     Non-browser clients authenticating with a header (no cookie) need
//     neither header.
//   - Responses carry Cache-Control: no-store.
package deadletter
