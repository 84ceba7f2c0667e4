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
package deadletter
