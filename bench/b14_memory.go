package bench

import "context"

func init() {
	Register(Case{
		ID:     "B14-mem",
		Name:   "allocations per message, in-memory publish->handler",
		Target: "<= 0.2x watermill gochannel allocs/msg; memory bus 0-1",
		Run:    runB14Mem,
	})
}

func runB14Mem(ctx context.Context, cfg Config) ([]Result, error) {
	n := cfg.Size(20_000, 5_000, 200)
	s, err := Interleave(ctx, cfg,
		Measure("ours", n, MsgPerSec, oursSetup(1)),
		Measure("gochannel+router", n, MsgPerSec, gochannelRouterSetup(1)),
		Measure("gochannel", n, MsgPerSec, gochannelSetup(1)),
	)
	if err != nil {
		return nil, err
	}
	r1 := CompareAllocs("B14", "allocs/msg vs gochannel+Router", s[0], s[1], AtMostX(0.2))
	r2 := CompareAllocs("B14", "allocs/msg vs gochannel (no router)", s[0], s[2], AtMostX(0.2))
	r1.Notes = append(r1.Notes, "allocs counted with runtime.MemStats.Mallocs over the timed run / messages (all goroutines); go test -bench -benchmem gives the same shapes")
	return []Result{r1, r2}, nil
}
