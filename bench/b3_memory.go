package bench

import (
	"context"
	"strconv"
)

func init() {
	Register(Case{
		ID:     "B3",
		Name:   "in-memory fan-out to 10 and 100 subscribers",
		Target: "<= 2x raw fan-out to N buffered chans (ns/msg); >= 20x watermill gochannel (msg/s)",
		Run:    runB3,
	})
}

func runB3(ctx context.Context, cfg Config) ([]Result, error) {
	var out []Result
	for _, subs := range []int{10, 100} {
		// Deliveries per round = messages x subscribers.
		nOurs := cfg.Size(2_000_000, 400_000, 2_000) / subs
		// gochannel slows down as its per-message goroutines pile up (a
		// 20k-message backlog to 10 subscribers costs it ~2x per message),
		// so it gets a small run: this favours the peer.
		nPeer := cfg.Size(40_000, 20_000, 500) / subs
		s, err := Interleave(ctx, cfg,
			Measure("ours", nOurs, NsPerMsg, oursSetup(subs)),
			Measure("raw fan-out", nOurs, NsPerMsg, rawSetup(subs)),
			Measure("gochannel", nPeer, NsPerMsg, gochannelSetup(subs)),
			Measure("direct calls", nOurs, NsPerMsg, directSetup(subs)),
		)
		if err != nil {
			return nil, err
		}
		ours, raw, goch := s[0], s[1], s[2]
		label := "1->" + strconv.Itoa(subs)
		r1 := Compare("B3", label+" vs raw fan-out", "ns/msg", ours, raw, AtMostX(2))
		r1.Notes = append(r1.Notes, "raw fan-out: producer sends each envelope to N chans (buffer "+itoa(rawChanBuffer)+"), N consumer goroutines; ns per published message, delivered to all N")
		r2 := Compare("B3", label+" vs gochannel (no router)", "msg/s", ours.Map(PerSecond), goch.Map(PerSecond), AtLeastX(20))
		r2.Notes = append(r2.Notes, "vs gochannel: published msg/s, each delivered to all N plain subscribers (goroutine per subscription, ack per message); peer "+gochannelKnobs)
		r3 := Compare("B3", label+" vs direct handler calls", "ns/msg", ours, s[3], Target{})
		r3.Notes = append(r3.Notes, "direct calls: the publisher calls N no-op handlers in a loop (no bus): reported only")
		out = append(out, r1, r2, r3)
	}
	return out, nil
}
