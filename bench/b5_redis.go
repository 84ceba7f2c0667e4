package bench

import "context"

func init() {
	Register(Case{
		ID:     "B5",
		Name:   "Redis single sequential publisher (synchronous ack)",
		Target: ">= 0.9x raw unpipelined go-redis XADD",
		Needs:  []string{"redis"},
		Run:    runB5,
	})
}

func runB5(ctx context.Context, cfg Config) ([]Result, error) {
	n := cfg.Size(20_000, 5_000, 200)
	s, err := Interleave(ctx, cfg,
		Measure("ours", n, MsgPerSec, oursPublishSetup(cfg, 1)),
		Measure("raw XADD", n, MsgPerSec, rawPublishSetup(cfg, 1)),
		Measure("watermill-redisstream", n, MsgPerSec, wmPublishSetup(cfg, 1)),
	)
	if err != nil {
		return nil, err
	}
	r1 := Compare("B5", "Redis sequential publish vs raw XADD", "msg/s", s[0], s[1], AtLeastX(0.9))
	r1.Notes = append(r1.Notes, "raw: go-redis XAdd per message, no pipeline, same fields and bytes (encoded once)")
	r2 := Compare("B5", "Redis sequential publish vs watermill-redisstream", "msg/s", s[0], s[2], Target{})
	return []Result{r1, r2}, nil
}
