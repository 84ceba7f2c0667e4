package bench

import "context"

func init() {
	Register(Case{
		ID:     "B2",
		Name:   "in-memory cost vs a raw buffered channel hop",
		Target: "<= 3x raw buffered chan (ns/msg), consumer side included",
		Run:    runB2,
	})
}

func runB2(ctx context.Context, cfg Config) ([]Result, error) {
	n := cfg.Size(1_000_000, 200_000, 2_000)
	s, err := Interleave(ctx, cfg,
		Measure("ours", n, NsPerMsg, oursSetup(1)),
		Measure("raw chan", n, NsPerMsg, rawSetup(1)),
		Measure("direct call", n, NsPerMsg, directSetup(1)),
	)
	if err != nil {
		return nil, err
	}
	r := Compare("B2", "publish->handler vs raw chan hop", "ns/msg", s[0], s[1], AtMostX(3))
	r.Notes = append(r.Notes, "raw: chan eventbus.Envelope buffered "+itoa(rawChanBuffer)+", 1 consumer goroutine calling a no-op handler; timed until it received all "+itoa(n))
	d := Compare("B2", "publish->handler vs direct handler call", "ns/msg", s[0], s[2], Target{})
	d.Notes = append(d.Notes, "direct call: the publisher calls the no-op handler itself (no bus, no goroutine): the floor of synchronous dispatch, reported only")
	return []Result{r, d}, nil
}
