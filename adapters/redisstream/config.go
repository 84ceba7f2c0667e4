package redisstream

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/choicesherpa/eventkit/deadletter"
	"github.com/choicesherpa/eventkit/eventbus"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultStream           = "eventkit:events"
	DefaultStartID          = "0"
	DefaultCount            = 100
	DefaultBlock            = 2 * time.Second
	DefaultConcurrency      = 16
	DefaultBuffer           = 100
	DefaultHandlerTimeout   = 30 * time.Second
	DefaultMinIdle          = 60 * time.Second
	DefaultMaxDeliveries    = 10
	DefaultShutdownTimeout  = 30 * time.Second
	DefaultWriteTimeout     = 5 * time.Second
	DefaultMaxPayloadBytes  = 1 << 20
	DefaultMaxPipeline      = 1000
	DefaultPublishPipelines = 2
	DefaultConsumerIdleTTL  = time.Hour
	DefaultRetryInitial     = 500 * time.Millisecond
	DefaultRetryMax         = 30 * time.Second
	DefaultReconnectInitial = 100 * time.Millisecond
	DefaultReconnectMax     = 5 * time.Second

	// MinIdleMargin is how much MinIdle must exceed HandlerTimeout by.
	MinIdleMargin = 250 * time.Millisecond
)

// Config configures a Bus. The zero value (or nil) is valid: every field has
// a documented default.
type Config struct {
	// Stream is the shared stream every event is appended to, or, with
	// StreamPerType, the prefix of the per-type streams. Put a Redis Cluster
	// hash tag in it ("{app}:events") or let the bus derive keys: every key
	// the bus creates besides Stream itself is named "{Stream}:..." (or
	// "Stream:..." when Stream already holds a tag), so all keys of one bus
	// hash to the same slot and one XREADGROUP can read them together.
	// Defaults to DefaultStream ("eventkit:events"); the Choice Sherpa app
	// uses "choice-sherpa:events".
	Stream string
	// StreamPerType appends each event to its own stream, named
	// "{Stream}:<event type>", instead of the shared Stream. Subscriptions
	// must then name their event types. Defaults to false (one shared stream;
	// subscriptions skip, and acknowledge, entries of types they do not want).
	StreamPerType bool
	// StartID is where a newly created consumer group starts: "0" (the whole
	// retained stream, so a handler deployed after its events were published
	// still sees them, and a group re-created after a Redis restart without
	// persistence loses nothing published in between) or "$" (only entries
	// appended after the group was created). Defaults to DefaultStartID ("0").
	StartID string
	// Consumer is this process's consumer name inside every group. It must be
	// unique per process and stable for the process's lifetime; reusing it
	// after a restart lets the process re-read its own pending entries at
	// once instead of waiting MinIdle for another consumer to claim them.
	// Defaults to "<hostname>-<pid>".
	Consumer string

	// MaxPayloadBytes caps the encoded size of one entry; Publish fails
	// synchronously with *PayloadTooLargeError for larger envelopes.
	// Defaults to DefaultMaxPayloadBytes (1 MiB).
	MaxPayloadBytes int
	// WriteTimeout bounds one publish pipeline and every acknowledgement
	// round trip (acks run on a detached context), unless the publisher's
	// context has a deadline of its own. Calls close together share one
	// deadline instead of taking a timer each, so a call gets between half
	// of WriteTimeout and all of it. Defaults to DefaultWriteTimeout (5s).
	WriteTimeout time.Duration
	// MaxPipeline caps how many entries are coalesced into one publish
	// pipeline. Defaults to DefaultMaxPipeline (1000).
	MaxPipeline int
	// PublishPipelines is how many publish pipelines may be in flight at
	// once when publishers queue up (an idle line always writes at once on
	// the caller's goroutine). Defaults to DefaultPublishPipelines (2).
	PublishPipelines int

	// Count is XREADGROUP's COUNT: the most entries one read fetches.
	// Defaults to DefaultCount (100).
	Count int
	// Block is XREADGROUP's BLOCK. It also bounds how long Close waits for a
	// blocked read to return. Every subscription holds one pooled
	// connection while it blocks: size the client's PoolSize for
	// subscriptions + publishers + acks. Defaults to DefaultBlock (2s).
	// Keep it at least 500ms below the client's ReadTimeout (go-redis's
	// default is 5s): otherwise reads go through go-redis's reply parser,
	// which costs about ten more allocations per entry, because the
	// package's own parser reads with the plain timeout. Cluster clients
	// always use go-redis's parser.
	Block time.Duration
	// Concurrency is the number of handler goroutines per subscription.
	// Defaults to DefaultConcurrency (16).
	Concurrency int
	// Buffer is how many entries a subscription may hold beyond those being
	// handled (read ahead). Held entries are kept claimed (their idle time
	// is reset every MinIdle/4), so they are never handed to another
	// consumer while they wait. Entries waiting for a retry count here
	// too. Defaults to DefaultBuffer (100); negative means no read-ahead.
	Buffer int
	// OrderByAggregate routes every entry of one aggregate (type and id) to
	// the same worker, so one consumer handles an aggregate's events in
	// stream order. Retries of a failed entry still come later. Defaults to
	// false.
	OrderByAggregate bool
	// HandlerTimeout bounds each handler call (its context is cancelled).
	// Defaults to DefaultHandlerTimeout (30s).
	HandlerTimeout time.Duration
	// MinIdle is how long an entry must sit unacknowledged in another
	// consumer's pending list before this process claims it (XAUTOCLAIM).
	// It must exceed HandlerTimeout + MinIdleMargin. Defaults to the larger
	// of DefaultMinIdle (60s) and HandlerTimeout*2.
	MinIdle time.Duration
	// ClaimInterval is how often the claim loop looks for idle entries.
	// Defaults to MinIdle/4.
	ClaimInterval time.Duration
	// MaxDeliveries is how many deliveries an entry gets before it is
	// written to DeadLetters and acknowledged. Defaults to
	// DefaultMaxDeliveries (10).
	MaxDeliveries int
	// Retry spaces redeliveries of a failed entry by its delivery count.
	// Defaults to eventbus.Backoff{Initial: DefaultRetryInitial, Max: DefaultRetryMax}.
	Retry eventbus.Backoff
	// ReconnectBackoff spaces retries after read, claim, ack or group errors
	// (at most one attempt per 100ms). Defaults to
	// eventbus.Backoff{Initial: DefaultReconnectInitial, Max: DefaultReconnectMax}.
	ReconnectBackoff eventbus.Backoff
	// ShutdownTimeout bounds how long Close waits for handlers in flight;
	// handlers still running then have their context cancelled and their
	// entries stay pending. It bounds the whole Close, acknowledgements
	// included, even when Redis is unreachable: what cannot be acknowledged
	// by then is redelivered (see Subscription Close for the small
	// allowances). Defaults to DefaultShutdownTimeout (30s).
	ShutdownTimeout time.Duration
	// ConsumerIdleTTL: the claim loop deletes other consumers of its groups
	// that have been idle this long and hold no pending entries (checked and
	// deleted atomically). Defaults to DefaultConsumerIdleTTL (1h); negative
	// disables it.
	ConsumerIdleTTL time.Duration

	// DeadLetters receives entries that failed MaxDeliveries times, failed
	// permanently or could not be decoded. The entry is acknowledged only
	// after Put returned nil. Defaults to nil: such entries are logged and
	// left pending, and claimed again every MinIdle (nothing is ever dropped
	// silently); while Put fails, likewise. Neither holds a worker slot, so
	// the subscription keeps handling other entries.
	DeadLetters deadletter.Store
	// Hooks observe publishing and delivery. Defaults to none.
	Hooks *eventbus.Hooks
	// Logger receives operational logs (event type and id only). Defaults
	// to slog.Default().
	Logger *slog.Logger
}

// ErrConfig is wrapped by every configuration error New returns.
var ErrConfig = errors.New("redisstream: invalid config")

func (c Config) withDefaults() Config {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.StartID == "" {
		c.StartID = DefaultStartID
	}
	if c.Consumer == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "host"
		}
		c.Consumer = host + "-" + strconv.Itoa(os.Getpid())
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MaxPipeline == 0 {
		c.MaxPipeline = DefaultMaxPipeline
	}
	if c.PublishPipelines == 0 {
		c.PublishPipelines = DefaultPublishPipelines
	}
	if c.Count == 0 {
		c.Count = DefaultCount
	}
	if c.Block == 0 {
		c.Block = DefaultBlock
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Buffer == 0 {
		c.Buffer = DefaultBuffer
	}
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = DefaultHandlerTimeout
	}
	if c.MinIdle == 0 {
		c.MinIdle = max(DefaultMinIdle, 2*c.HandlerTimeout)
	}
	if c.ClaimInterval == 0 {
		c.ClaimInterval = c.MinIdle / 4
	}
	if c.MaxDeliveries == 0 {
		c.MaxDeliveries = DefaultMaxDeliveries
	}
	if c.Retry == (eventbus.Backoff{}) {
		c.Retry = eventbus.Backoff{Initial: DefaultRetryInitial, Max: DefaultRetryMax}
	}
	if c.ReconnectBackoff == (eventbus.Backoff{}) {
		c.ReconnectBackoff = eventbus.Backoff{Initial: DefaultReconnectInitial, Max: DefaultReconnectMax}
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.ConsumerIdleTTL == 0 {
		c.ConsumerIdleTTL = DefaultConsumerIdleTTL
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	switch {
	case c.StartID != "0" && c.StartID != "$" && !validStreamID(c.StartID):
		return bad("StartID %q must be \"0\", \"$\" or a stream id", c.StartID)
	case strings.ContainsAny(c.Consumer, " \r\n"):
		return bad("Consumer %q must not contain spaces", c.Consumer)
	case c.MaxPayloadBytes < 0, c.WriteTimeout < 0, c.MaxPipeline < 0, c.PublishPipelines < 0, c.Count < 0,
		c.Block < 0, c.Concurrency < 0, c.HandlerTimeout < 0, c.MinIdle < 0,
		c.ClaimInterval < 0, c.MaxDeliveries < 0, c.ShutdownTimeout < 0:
		return bad("negative size or duration")
	case c.MinIdle <= c.HandlerTimeout+MinIdleMargin:
		return bad("MinIdle %s must exceed HandlerTimeout %s + %s, or another consumer would claim entries still being handled",
			c.MinIdle, c.HandlerTimeout, MinIdleMargin)
	case c.Block < time.Millisecond:
		return bad("Block %s must be at least 1ms (0 would block forever)", c.Block)
	case c.ClaimInterval < 10*time.Millisecond:
		return bad("ClaimInterval %s must be at least 10ms", c.ClaimInterval)
	case c.ReconnectBackoff.Initial > 0 && c.ReconnectBackoff.Initial < 100*time.Millisecond:
		return bad("ReconnectBackoff.Initial %s must be at least 100ms", c.ReconnectBackoff.Initial)
	}
	return nil
}

func validStreamID(s string) bool {
	ms, seq, ok := strings.Cut(s, "-")
	if _, err := strconv.ParseUint(ms, 10, 64); err != nil {
		return false
	}
	if ok {
		if _, err := strconv.ParseUint(seq, 10, 64); err != nil {
			return false
		}
	}
	return true
}
