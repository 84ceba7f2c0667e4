// Package eventbustest is the test kit for eventbus: a conformance suite
// that every eventbus.Bus implementation runs, and a recording fake handler.
//
// # Conformance
//
// Run exercises a bus through its public ports only and checks the delivery
// scenarios of RELIABILITY.md (D1-D5): set equality of ids with payload and
// metadata preserved byte for byte, topic isolation, competing consumers and
// fan-out groups, errors (returned to the publisher, or redelivered until
// they succeed), close, reopen and context cancellation, and ordering where
// the bus promises it. Features tells the suite what the bus promises; the
// suite skips what a bus does not claim and fails on what it claims but does
// not do.
//
//	func TestConformance(t *testing.T) {
//		eventbustest.Run(t, func(t *testing.T) eventbus.Bus {
//			return mybus.New(...) // connected to this test's storage
//		}, eventbustest.Features{Async: true, Persistent: true, ConsumerGroups: true})
//	}
//
// Every wait is bounded (Features.Timeout), every subtest uses its own event
// types and subscription names, and after each subtest the goroutines must
// be back to where they were (go.uber.org/goleak), so call Run from a test
// that is not parallel, or set Features.NoLeakCheck.
//
// # Recording fake
//
// Recorder is a thread-safe eventbus.Handler that records deliveries, can
// fail the next N of them, and waits (bounded) for a count. RequirePublished
// finds and decodes a published event in a test.
package eventbustest
