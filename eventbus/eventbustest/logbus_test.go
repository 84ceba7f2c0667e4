package eventbustest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/choicesherpa/eventkit/eventbus"
	"github.com/choicesherpa/eventkit/eventbus/eventbustest"
)

// logBus is a small durable-bus double used to exercise the suite's
// asynchronous, persistent, multi-instance and redelivery branches, which
// the in-memory bus does not take. Instances opened for one test share a
// broker: an append-only log with a read position and a retry queue per
// subscription name (a consumer group). A handler error puts the event
// back on the retry queue; closing a subscriber loses nothing.
type broker struct {
	mu     sync.Mutex
	log    []eventbus.Envelope
	groups map[string]*group
	wake   chan struct{} // closed and replaced on every change
}

type group struct {
	all   bool
	types []string
	next  int
	retry []int
}

func (br *broker) changedLocked() {
	close(br.wake)
	br.wake = make(chan struct{})
}

type logBus struct {
	br     *broker
	mu     sync.Mutex
	closed bool
	subs   map[*logSub]struct{}
}

type logSub struct {
	bus   *logBus
	name  string
	g     *group
	h     eventbus.Handler
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	unreg func() bool
}

var (
	_ eventbus.Bus          = (*logBus)(nil)
	_ eventbus.Subscription = (*logSub)(nil)
)

func (b *logBus) Publish(ctx context.Context, envs ...eventbus.Envelope) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return eventbus.ErrClosed
	}
	for i := range envs {
		if envs[i].EventID.IsZero() {
			return fmt.Errorf("%w: missing id", eventbus.ErrInvalidEnvelope)
		}
		v, err := eventbus.ParseSchemaVersion(envs[i].EventType)
		if err != nil {
			return err
		}
		if v != envs[i].SchemaVersion {
			return fmt.Errorf("%w: version mismatch", eventbus.ErrInvalidEnvelope)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b.br.mu.Lock()
	b.br.log = append(b.br.log, envs...)
	b.br.changedLocked()
	b.br.mu.Unlock()
	return nil
}

func (b *logBus) Subscribe(ctx context.Context, name string, h eventbus.Handler, types ...string) (eventbus.Subscription, error) {
	for _, t := range types {
		if _, err := eventbus.ParseSchemaVersion(t); err != nil {
			return nil, err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, eventbus.ErrClosed
	}
	b.br.mu.Lock()
	g := b.br.groups[name]
	if g == nil {
		g = &group{all: len(types) == 0, types: slices.Clone(types)}
		b.br.groups[name] = g
	}
	b.br.mu.Unlock()
	s := &logSub{bus: b, name: name, g: g, h: h, stop: make(chan struct{}), done: make(chan struct{})}
	b.subs[s] = struct{}{}
	go s.loop()
	s.unreg = context.AfterFunc(ctx, func() { _ = s.Close() })
	return s, nil
}

func (s *logSub) loop() {
	defer close(s.done)
	br := s.bus.br
	for {
		br.mu.Lock()
		idx := -1
		if len(s.g.retry) > 0 {
			idx, s.g.retry = s.g.retry[0], s.g.retry[1:]
		} else {
			for s.g.next < len(br.log) {
				i := s.g.next
				s.g.next++
				if s.g.all || slices.Contains(s.g.types, br.log[i].EventType) {
					idx = i
					break
				}
			}
		}
		wake := br.wake
		var env eventbus.Envelope
		if idx >= 0 {
			env = br.log[idx]
		}
		br.mu.Unlock()

		if idx < 0 {
			select {
			case <-wake:
				continue
			case <-s.stop:
				return
			}
		}
		if err := s.handle(env); err != nil {
			br.mu.Lock()
			s.g.retry = append(s.g.retry, idx)
			br.changedLocked()
			br.mu.Unlock()
		}
		select {
		case <-s.stop:
			return
		default:
		}
	}
}

func (s *logSub) handle(env eventbus.Envelope) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &eventbus.PanicError{Value: r}
		}
	}()
	return s.h.Handle(eventbus.ContextWithEvent(context.Background(), &env), env)
}

func (s *logSub) Name() string { return s.name }

func (s *logSub) Close() error {
	s.once.Do(func() {
		if s.unreg != nil {
			s.unreg()
		}
		close(s.stop)
		<-s.done
		s.bus.mu.Lock()
		delete(s.bus.subs, s)
		s.bus.mu.Unlock()
	})
	return nil
}

func (b *logBus) Close() error {
	b.mu.Lock()
	b.closed = true
	subs := make([]*logSub, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	for _, s := range subs {
		_ = s.Close()
	}
	return nil
}

// brokers hands every bus opened for one test the same broker.
type brokers struct {
	mu sync.Mutex
	m  map[*testing.T]*broker
}

func (bs *brokers) factory(t *testing.T) eventbus.Bus {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.m == nil {
		bs.m = make(map[*testing.T]*broker)
	}
	br := bs.m[t]
	if br == nil {
		br = &broker{groups: make(map[string]*group), wake: make(chan struct{})}
		bs.m[t] = br
	}
	return &logBus{br: br, subs: make(map[*logSub]struct{})}
}

// TestRunOnDurableDouble runs the whole suite with every feature claimed, so
// the branches the in-memory bus skips are exercised too.
func TestRunOnDurableDouble(t *testing.T) {
	var bs brokers
	eventbustest.Run(t, bs.factory, eventbustest.Features{
		Async:          true,
		Persistent:     true,
		MultiInstance:  true,
		ConsumerGroups: true,
		Redelivery:     true,
		MaxDeliveries:  5,
		// One consumer reads in log order and retries first.
		GuaranteedOrder: true,
	})
}

// TestRunOnInMemoryBus runs the suite on the in-memory bus at the default
// (reduced) scale; eventbus's own tests run it at full scale.
func TestRunOnInMemoryBus(t *testing.T) {
	eventbustest.Run(t, func(*testing.T) eventbus.Bus {
		return eventbus.NewInMemoryBus(&eventbus.InMemoryConfig{History: -1})
	}, eventbustest.Features{ConsumerGroups: true, GuaranteedOrder: true})
}

func TestLogBusDoubleRedelivers(t *testing.T) {
	var bs brokers
	b := bs.factory(t)
	defer b.Close()
	rec := eventbustest.NewRecorder()
	rec.FailNext(3, errors.New("nope"))
	_, err := b.Subscribe(context.Background(), "x", rec, "double.check.v1")
	if err != nil {
		t.Fatal(err)
	}
	env := eventbus.Envelope{EventID: eventbus.NewEventID(), EventType: "double.check.v1", SchemaVersion: 1, Payload: []byte(`{}`)}
	if err := b.Publish(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	rec.RequireCount(t, 1, eventbustest.DefaultTimeout)
	if rec.Attempts() != 4 {
		t.Fatalf("attempts %d, want 4", rec.Attempts())
	}
}
