package bench

import "context"

func init() {
	Register(Case{
		ID:     "B1",
		Name:   "in-memory publish->handler, 1 subscriber",
		Target: ">= 10x watermill gochannel + Router (msg/s); <= 1 alloc per publish; gochannel without router reported",
		Run:    runB1,
	})
}

// Sizes: ours is ~100x faster than the peers, so it publishes more messages
// to run for a comparable, measurable time; rates are per message.
func b1Sizes(cfg Config) (ours, peer int) {
	return cfg.Size(1_000_000, 200_000, 2_000), cfg.Size(30_000, 10_000, 500)
}

func runB1(ctx context.Context, cfg Config) ([]Result, error) {
	nOurs, nPeer := b1Sizes(cfg)
	s, err := Interleave(ctx, cfg,
		Measure("ours", nOurs, MsgPerSec, oursSetup(1)),
		Measure("gochannel+router", nPeer, MsgPerSec, gochannelRouterSetup(1)),
		Measure("gochannel", nPeer, MsgPerSec, gochannelSetup(1)),
	)
	if err != nil {
		return nil, err
	}
	ours, router, plain := s[0], s[1], s[2]
	r1 := Compare("B1", "publish->handler vs gochannel+Router", "msg/s", ours, router, AtLeastX(10))
	r1.Notes = append(r1.Notes,
		"ours: InMemoryBus{History: -1}, pre-built 256 B envelope (id rewritten per publish), synchronous: delivered when Publish returns; "+itoa(nOurs)+" msgs/round",
		"peer: "+gochannelKnobs+"; "+itoa(nPeer)+" msgs/round, publisher does not wait for acks, timed until the last delivery",
	)
	r2 := Compare("B1", "publish->handler vs gochannel (no router)", "msg/s", ours, plain, Target{})
	r3 := Only("B1", "allocs per publish (ours, pre-built envelope)", "allocs/msg", ours.MedianAllocs(), AtMostAbs(1))
	return []Result{r1, r2, r3}, nil
}
