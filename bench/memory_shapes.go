package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/choicesherpa/eventkit/eventbus"
)

// The in-memory shapes shared by B1, B2, B3 and B14: ours (InMemoryBus),
// raw buffered channels, and watermill gochannel with and without Router.
// Every contender delivers the same 256 B payload, carries a sequence
// number as the message id, and marks it in a Tally in the consumer.

// PayloadSize is the payload every contender carries (BENCHMARKS.md).
const PayloadSize = 256

const (
	memEventType = "bench.memory.published.v1"
	memTopic     = "bench.memory"
	// rawChanBuffer is the buffer of each raw channel peer.
	rawChanBuffer = 1024
)

// payload256 is a valid JSON document of exactly PayloadSize bytes.
var payload256 = func() json.RawMessage {
	prefix, suffix := `{"data":"`, `"}`
	return json.RawMessage(prefix + strings.Repeat("x", PayloadSize-len(prefix)-len(suffix)) + suffix)
}()

// newMemEnvelope builds the envelope every publish reuses: ours publishes a
// pre-built envelope and only rewrites its id.
func newMemEnvelope() eventbus.Envelope {
	return eventbus.Envelope{
		EventID:       eventbus.NewEventID(),
		EventType:     memEventType,
		SchemaVersion: 1,
		AggregateID:   "agg-1",
		AggregateType: "bench",
		OccurredAt:    time.Now().UTC().Truncate(time.Microsecond),
		Payload:       payload256,
	}
}

// setSeq writes seq into the first 8 bytes of the id; the last byte stays
// non-zero so the id is never the zero id.
func setSeq(env *eventbus.Envelope, seq int) {
	binary.BigEndian.PutUint64(env.EventID[:8], uint64(seq))
	env.EventID[15] |= 1
}

func seqOf(env *eventbus.Envelope) int {
	return int(binary.BigEndian.Uint64(env.EventID[:8]))
}

// ---- ours ----

// oursSetup subscribes subs handlers (distinct names, so each gets every
// event) to an InMemoryBus with no history, and publishes n pre-built
// envelopes. The bus is synchronous: a returned Publish means delivered.
func oursSetup(subs int) SetupFunc {
	return func(ctx context.Context, n int) (*Trial, error) {
		bus := eventbus.NewInMemoryBus(&eventbus.InMemoryConfig{History: -1})
		tally := NewTally(n, subs)
		for s := range subs {
			h := eventbus.HandlerFunc(func(_ context.Context, env eventbus.Envelope) error {
				tally.Mark(s, seqOf(&env))
				return nil
			})
			if _, err := bus.Subscribe(context.Background(), "bench-sub-"+strconv.Itoa(s), h, memEventType); err != nil {
				_ = bus.Close()
				return nil, err
			}
		}
		env := newMemEnvelope()
		run := func(ctx context.Context) error {
			for i := range n {
				setSeq(&env, i)
				if err := bus.Publish(ctx, env); err != nil {
					return err
				}
			}
			return nil
		}
		return &Trial{Run: run, Tally: tally, Close: func() { _ = bus.Close() }}, nil
	}
}

// directSetup is the floor of any synchronous dispatch: the publisher
// calls subs no-op handlers (the same Tally mark) in a loop, no bus at all.
// It is reported, not targeted: it shows what the bus itself costs.
func directSetup(subs int) SetupFunc {
	return func(ctx context.Context, n int) (*Trial, error) {
		tally := NewTally(n, subs)
		handlers := make([]eventbus.Handler, subs)
		for s := range handlers {
			handlers[s] = eventbus.HandlerFunc(func(_ context.Context, env eventbus.Envelope) error {
				tally.Mark(s, seqOf(&env))
				return nil
			})
		}
		env := newMemEnvelope()
		run := func(ctx context.Context) error {
			for i := range n {
				setSeq(&env, i)
				for _, h := range handlers {
					if err := h.Handle(ctx, env); err != nil {
						return err
					}
				}
			}
			return ctx.Err()
		}
		return &Trial{Run: run, Tally: tally}, nil
	}
}

// ---- raw channels ----

// rawSetup is the physical floor: one buffered channel of Envelope per
// subscriber, each drained by its own goroutine that calls a no-op handler
// (the same Tally mark ours does). The producer sends every envelope to
// every channel; Run returns when every consumer has received all n.
func rawSetup(subs int) SetupFunc {
	return func(ctx context.Context, n int) (*Trial, error) {
		tally := NewTally(n, subs)
		chans := make([]chan eventbus.Envelope, subs)
		var wg sync.WaitGroup
		for s := range chans {
			ch := make(chan eventbus.Envelope, rawChanBuffer)
			chans[s] = ch
			handle := func(_ context.Context, env eventbus.Envelope) error {
				tally.Mark(s, seqOf(&env))
				return nil
			}
			wg.Go(func() {
				for env := range ch {
					_ = handle(ctx, env)
				}
			})
		}
		closed := false
		closeAll := func() {
			if !closed {
				closed = true
				for _, ch := range chans {
					close(ch)
				}
			}
		}
		env := newMemEnvelope()
		run := func(ctx context.Context) error {
			for i := range n {
				setSeq(&env, i)
				for _, ch := range chans {
					select {
					case ch <- env:
					case <-ctx.Done():
						return fmt.Errorf("raw send %d of %d: %w", i, n, ctx.Err())
					}
				}
			}
			closeAll()
			return waitGroup(ctx, &wg)
		}
		return &Trial{Run: run, Tally: tally, Close: func() { closeAll(); wg.Wait() }}, nil
	}
}

// waitGroup waits for wg or ctx.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for consumers: %w", ctx.Err())
	}
}

// ---- watermill gochannel ----

// gochannelKnobs are the peer's non-default settings: the ones watermill's
// own BenchmarkSubscriber uses (OutputChannelBuffer = message count).
const gochannelKnobs = "gochannel Config{OutputChannelBuffer: n} (as watermill's BenchmarkSubscriber), NopLogger; router RouterConfig{} defaults; message UUID = decimal sequence (cheaper than watermill.NewUUID)"

func newWatermillMessage(seq int) *message.Message {
	return message.NewMessage(strconv.Itoa(seq), message.Payload(payload256))
}

func seqOfMessage(msg *message.Message) int {
	n, err := strconv.Atoi(msg.UUID)
	if err != nil {
		return -1
	}
	return n
}

// counter closes done when the n*subs-th delivery arrives.
type counter struct {
	left atomic.Int64
	done chan struct{}
}

func newCounter(total int) *counter {
	c := &counter{done: make(chan struct{})}
	c.left.Store(int64(total))
	return c
}

func (c *counter) hit() {
	if c.left.Add(-1) == 0 {
		close(c.done)
	}
}

func (c *counter) wait(ctx context.Context, what string) error {
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %d deliveries missing: %w", what, c.left.Load(), ctx.Err())
	}
}

// gochannelSetup subscribes subs plain gochannel subscribers (no router):
// one goroutine per subscription ranges over the channel, marks and acks.
func gochannelSetup(subs int) SetupFunc {
	return func(ctx context.Context, n int) (*Trial, error) {
		ps := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: int64(n)}, watermill.NopLogger{})
		tally := NewTally(n, subs)
		cnt := newCounter(n * subs)
		subCtx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for s := range subs {
			msgs, err := ps.Subscribe(subCtx, memTopic)
			if err != nil {
				cancel()
				_ = ps.Close()
				return nil, err
			}
			wg.Go(func() {
				for msg := range msgs {
					tally.Mark(s, seqOfMessage(msg))
					msg.Ack()
					cnt.hit()
				}
			})
		}
		run := func(ctx context.Context) error {
			for i := range n {
				if err := ps.Publish(memTopic, newWatermillMessage(i)); err != nil {
					return err
				}
			}
			return cnt.wait(ctx, "gochannel")
		}
		closeFn := func() {
			cancel()
			_ = ps.Close()
			wg.Wait()
		}
		return &Trial{Run: run, Tally: tally, Close: closeFn}, nil
	}
}

// gochannelRouterSetup consumes through message.Router with a no-op
// handler per subscriber (AddConsumerHandler), the usual watermill shape.
func gochannelRouterSetup(subs int) SetupFunc {
	return func(ctx context.Context, n int) (*Trial, error) {
		ps := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: int64(n)}, watermill.NopLogger{})
		router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
		if err != nil {
			return nil, err
		}
		tally := NewTally(n, subs)
		cnt := newCounter(n * subs)
		for s := range subs {
			router.AddConsumerHandler("bench-sub-"+strconv.Itoa(s), memTopic, ps, func(msg *message.Message) error {
				tally.Mark(s, seqOfMessage(msg))
				cnt.hit()
				return nil
			})
		}
		runCtx, cancel := context.WithCancel(context.Background())
		runErr := make(chan error, 1)
		go func() { runErr <- router.Run(runCtx) }()
		select {
		case <-router.Running():
		case err := <-runErr:
			cancel()
			return nil, fmt.Errorf("router stopped before running: %w", err)
		case <-ctx.Done():
			cancel()
			return nil, ctx.Err()
		}
		run := func(ctx context.Context) error {
			for i := range n {
				if err := ps.Publish(memTopic, newWatermillMessage(i)); err != nil {
					return err
				}
			}
			return cnt.wait(ctx, "gochannel+router")
		}
		closeFn := func() {
			_ = router.Close()
			cancel()
			<-runErr // Run returns once the router has stopped; its error is moot here
			_ = ps.Close()
		}
		return &Trial{Run: run, Tally: tally, Close: closeFn}, nil
	}
}
