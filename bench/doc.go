// Package bench is eventkit's comparative benchmark suite (BENCHMARKS.md).
// It is its own module so the peers it measures against (watermill and its
// Redis and SQL adapters, gorilla/websocket) never enter the library's
// dependencies.
//
// Every figure is a ratio against a peer measured in the same run: the
// contenders of a Case run interleaved (ours, peer, ours, peer, ... see
// Interleave) and a Result reports each side's median and the median of
// the per-round ratios. Every run checks correctness with a Tally (each id
// delivered to each subscriber, none lost, duplicates counted); a fast
// wrong answer fails the suite. Cases register themselves from their own
// files (b1_memory.go, b4_redis.go, ...) with Register; cmd/benchsuite
// runs them and prints one table. README.md says how to add a case.
package bench
