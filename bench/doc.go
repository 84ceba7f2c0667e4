// Package bench holds the comparative benchmark suite (see BENCHMARKS.md).
// It is its own module so the peers it measures against never enter the
// library's dependencies.
package bench
