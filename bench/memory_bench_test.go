package bench

import (
	"strconv"
	"testing"
)

// Go benchmarks for the B1, B2, B3 and B14 shapes: one op is one published
// message delivered to every subscriber, so -benchmem reports allocations
// per message.
//
//	go test -run '^$' -bench . -benchmem ./...

func BenchmarkB1Ours(b *testing.B)            { BenchTrial(b, oursSetup(1)) }
func BenchmarkB1GoChannelRouter(b *testing.B) { BenchTrial(b, gochannelRouterSetup(1)) }
func BenchmarkB1GoChannel(b *testing.B)       { BenchTrial(b, gochannelSetup(1)) }
func BenchmarkB2RawChan(b *testing.B)         { BenchTrial(b, rawSetup(1)) }

func BenchmarkB3FanOut(b *testing.B) {
	for _, subs := range []int{10, 100} {
		n := strconv.Itoa(subs)
		b.Run("ours-"+n, func(b *testing.B) { BenchTrial(b, oursSetup(subs)) })
		b.Run("raw-"+n, func(b *testing.B) { BenchTrial(b, rawSetup(subs)) })
		b.Run("gochannel-"+n, func(b *testing.B) { BenchTrial(b, gochannelSetup(subs)) })
	}
}

func BenchmarkB2DirectCall(b *testing.B) { BenchTrial(b, directSetup(1)) }
