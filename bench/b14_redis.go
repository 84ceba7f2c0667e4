package bench

import (
	"context"
	"fmt"
)

func init() {
	Register(Case{
		ID:     "B14-redis",
		Name:   "allocations per message, Redis publish and consume",
		Target: "<= 0.2x watermill-redisstream allocs/msg; Redis publish <= 6 allocs/msg",
		Needs:  []string{"redis"},
		Run:    runB14Redis,
	})
}

func runB14Redis(ctx context.Context, cfg Config) ([]Result, error) {
	n := cfg.Size(20_000, 5_000, 200)
	s, err := Interleave(ctx, cfg,
		Measure("ours publish", n, MsgPerSec, oursPublishSetup(cfg, 1)),
		Measure("watermill publish", n, MsgPerSec, wmPublishSetup(cfg, 1)),
		Measure("raw XADD", n, MsgPerSec, rawPublishSetup(cfg, 1)),
		Measure("ours consume", n, MsgPerSec, oursConsumeSetup(cfg)),
		Measure("watermill consume", n, MsgPerSec, wmConsumeSetup(cfg)),
	)
	if err != nil {
		return nil, err
	}
	pub := CompareAllocs("B14", "Redis publish allocs/msg vs watermill-redisstream", s[0], s[1], AtMostX(0.2))
	pub.Notes = append(pub.Notes, "allocs counted with runtime.MemStats.Mallocs over the timed run (all goroutines, go-redis included) / messages; one sequential publisher")
	abs := CompareAllocs("B14", "Redis publish allocs/msg (ours; peer = raw go-redis XAdd)", s[0], s[2], AtMostAbs(6))
	abs.Notes = append(abs.Notes, fmt.Sprintf("the raw peer's go-redis XAdd costs %.1f allocs/msg (XAddArgs, boxed fields); ours passes prebuilt XADD arguments and recycles its requests and buffers, leaving go-redis's command, reply and pool health check",
		abs.Peer))
	con := CompareAllocs("B14", "Redis consume+ack allocs/msg vs watermill-redisstream", s[3], s[4], AtMostX(0.2))
	return []Result{pub, abs, con}, nil
}
