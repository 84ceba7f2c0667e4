package redisstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// streamEntries is the part of a read reply for one stream.
type streamEntries struct {
	stream  string
	entries []entry
}

// rawClient is the go-redis method that hands a reply over unparsed. Every
// client go-redis makes has it; a wrapper that hides it gets the parsed
// path. DoRawWriteTo, not DoRaw: DoRaw grows a new reply buffer for every
// read, about twice the reply (a read of 100 entries is past the 32 KB
// where Go allocates whole spans), which made the garbage collector most of
// a busy consumer's cost. Here the reply goes into one reused buffer, for
// one small allocation per bulk string (io.CopyN's limit reader). go-redis
// never retries a DoRawWriteTo command, so a read that failed on the wire
// returns its error instead of being silently sent again.
type rawClient interface {
	DoRawWriteTo(ctx context.Context, w io.Writer, args ...any) *redis.RawWriteToCmd
}

// replyBuffer receives a raw reply. It reads each bulk string straight into
// its storage (ReadFrom), so io.Copy allocates no buffer of its own.
type replyBuffer struct{ b []byte }

func (w *replyBuffer) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *replyBuffer) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok && lr.N >= 0 && lr.N <= maxBulk {
		// go-redis's io.CopyN: exactly N bytes.
		n := int(lr.N)
		w.b = slices.Grow(w.b, n)
		got, err := io.ReadFull(lr.R, w.b[len(w.b):len(w.b)+n])
		w.b = w.b[:len(w.b)+got]
		lr.N -= int64(got)
		return int64(got), err
	}
	start := len(w.b)
	for {
		w.b = slices.Grow(w.b, 4096)
		got, err := r.Read(w.b[len(w.b):cap(w.b)])
		w.b = w.b[:len(w.b)+got]
		if err == io.EOF {
			return int64(len(w.b) - start), nil
		}
		if err != nil {
			return int64(len(w.b) - start), err
		}
	}
}

// maxBulk is Redis's largest bulk string (proto-max-bulk-len's ceiling).
const maxBulk = 512 << 20

// keptReplyCap is the largest reply buffer kept for the next read: one
// unusually big read does not pin its buffer for good.
const keptReplyCap = 1 << 20

// streamReader issues one goroutine's XREADGROUP or XREAD calls. Read
// raw, a reply is parsed here straight into entries: each entry's id and
// values are copied into a slab (see alloc) that the decoded envelope then
// shares, where go-redis's own parsing costs about ten allocations per
// entry (a string per field name and value, a map, and a boxed value per
// field).
type streamReader struct {
	rdb        redis.UniversalClient
	raw        rawClient // nil: go-redis parses replies
	streams    []string  // names to reuse for the stream keys of replies
	onFallback func(error)

	// readTimeout is the client's read timeout on the raw path (0: none).
	// go-redis does not retry DoRawWriteTo, but a client wrapper may retry
	// a read that timed out, silently: such a read is treated as lost.
	readTimeout time.Duration

	args  []any
	reply replyBuffer
	slab  []byte // storage for entries' bytes, several to an allocation
	out   []streamEntries
	spans []span
	// fields backs the field lists of one read's entries; it is reused by
	// the next read, so whoever keeps an entry copies its list (dispatch
	// does, into the delivery).
	fields []string
}

type span struct{ off, n int }

// forget drops the last read's entries once they were handed on: the
// reader's arrays are reused by the next read, and until then they would
// keep the entries' bytes (up to Count payloads) alive.
func (r *streamReader) forget() {
	for i := range r.out {
		e := r.out[i].entries
		clear(e[:cap(e)])
	}
	clear(r.fields[:cap(r.fields)])
}

// slabSize is the size of the allocations parse copies entries into:
// entries share them, a few to one, so a read costs few allocations, and a
// handler that keeps a payload keeps at most a slab alive, not a whole read.
// An entry bigger than half a slab gets an allocation of its own. The
// reader keeps its current slab between reads, so while it idles up to 4 KB
// of the last small entries stay referenced.
const slabSize = 4 << 10

// alloc returns n bytes of storage (length 0, capacity n) that no other
// entry uses.
func (r *streamReader) alloc(n int) []byte {
	if cap(r.slab)-len(r.slab) < n {
		if n > slabSize/2 {
			return make([]byte, 0, n)
		}
		r.slab = make([]byte, 0, slabSize)
	}
	at := len(r.slab)
	r.slab = r.slab[:at+n]
	return r.slab[at : at : at+n]
}

// newStreamReader returns a reader for streams. The raw path is used when
// the client offers it and rawReadAllowed: go-redis extends the read
// timeout for the blocking commands it builds, not for raw ones.
func newStreamReader(rdb redis.UniversalClient, streams []string, block time.Duration, onFallback func(error)) *streamReader {
	r := &streamReader{rdb: rdb, streams: streams, onFallback: onFallback}
	if rc, ok := rdb.(rawClient); ok && rawReadAllowed(rdb, block) {
		r.raw = rc
		r.readTimeout = max(rdb.(interface{ Options() *redis.Options }).Options().ReadTimeout, 0)
	}
	return r
}

// mayHaveRetried reports whether a read that took elapsed may have been
// retried by go-redis after a read timeout: the entries the first attempt
// read are then in the consumer's pending list but were never returned.
func (r *streamReader) mayHaveRetried(elapsed time.Duration) bool {
	return r.raw != nil && r.readTimeout > 0 && elapsed >= r.readTimeout
}

// rawReadAllowed reports whether rdb is a single-node client (or wraps
// one) whose read timeout leaves a BLOCK of block readMargin to spare.
// Cluster clients keep go-redis's parsing: a raw reply hands MOVED and ASK
// over as bytes, and the client would not follow them.
func rawReadAllowed(rdb redis.UniversalClient, block time.Duration) bool {
	c, ok := rdb.(interface{ Options() *redis.Options })
	if !ok {
		return false
	}
	rt := c.Options().ReadTimeout // after go-redis's defaults: <= 0 is none
	return rt <= 0 || rt >= block+readMargin
}

// readMargin is how long a blocking read's reply may take beyond BLOCK
// (round trip, a busy server) before the client's read timeout.
const readMargin = 500 * time.Millisecond

// readGroup is XREADGROUP GROUP group consumer COUNT count [BLOCK block]
// STREAMS streams... ids... (block < 0: no BLOCK). The result is valid
// until the next call; the entries in it stay valid.
func (r *streamReader) readGroup(ctx context.Context, group, consumer string, streams, ids []string, count int, block time.Duration) ([]streamEntries, error) {
	if r.raw == nil {
		res, err := r.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: group, Consumer: consumer, Streams: append(slicesClip(streams), ids...), Count: int64(count), Block: block,
		}).Result()
		return r.parsed(res, err)
	}
	r.args = append(r.args[:0], "xreadgroup", "group", group, consumer)
	return r.readRaw(ctx, streams, ids, count, block)
}

// read is XREAD COUNT count BLOCK block STREAMS streams... ids...
func (r *streamReader) read(ctx context.Context, streams, ids []string, count int, block time.Duration) ([]streamEntries, error) {
	if r.raw == nil {
		res, err := r.rdb.XRead(ctx, &redis.XReadArgs{
			Streams: append(slicesClip(streams), ids...), Count: int64(count), Block: block,
		}).Result()
		return r.parsed(res, err)
	}
	r.args = append(r.args[:0], "xread")
	return r.readRaw(ctx, streams, ids, count, block)
}

func slicesClip(s []string) []string { return s[:len(s):len(s)] }

func (r *streamReader) parsed(res []redis.XStream, err error) ([]streamEntries, error) {
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		return nil, err
	}
	r.out = r.out[:0]
	for _, xs := range res {
		r.out = append(r.out, streamEntries{stream: xs.Stream, entries: entriesFromMessages(xs.Messages)})
	}
	return r.out, nil
}

func (r *streamReader) readRaw(ctx context.Context, streams, ids []string, count int, block time.Duration) ([]streamEntries, error) {
	r.args = append(r.args, "count", count)
	if block >= 0 {
		r.args = append(r.args, "block", block.Milliseconds())
	}
	r.args = append(r.args, "streams")
	for _, s := range streams {
		r.args = append(r.args, s)
	}
	for _, id := range ids {
		r.args = append(r.args, id)
	}
	r.reply.b = r.reply.b[:0]
	_, err := r.raw.DoRawWriteTo(ctx, &r.reply, r.args...).Result()
	if err != nil {
		return nil, err
	}
	out, err := r.parse(r.reply.b) // entries copy what they keep
	if cap(r.reply.b) > keptReplyCap {
		r.reply.b = nil
	}
	var perr *protocolError
	if errors.As(err, &perr) {
		// Not a shape this parser knows: from now on go-redis parses. The
		// entries of this reply are delivered to us but lost with the
		// error; the caller's recovery after a failed read claims them.
		r.raw = nil
		if r.onFallback != nil {
			r.onFallback(err)
		}
	}
	return out, err
}

// replyError is an error reply read raw; its text starts with the error
// code (NOGROUP, ...), as go-redis's own errors do.
type replyError string

func (e replyError) Error() string { return string(e) }

// RedisError marks it as a reply from the server (redis.Error).
func (replyError) RedisError() {}

// protocolError is a reply the parser does not understand.
type protocolError struct {
	at  int
	why string
}

func (e *protocolError) Error() string {
	return fmt.Sprintf("redisstream: unexpected stream read reply at byte %d: %s", e.at, e.why)
}

// respCursor walks a complete RESP2 or RESP3 reply.
type respCursor struct {
	b []byte
	i int
}

func (c *respCursor) fail(why string) error { return &protocolError{at: c.i, why: why} }

// header reads a type byte and its number: a length for aggregates and
// bulk strings (-1 for a RESP2 null), the line for simple strings and
// errors (returned as text). A RESP3 null is kind '_' with n = -1.
func (c *respCursor) header() (kind byte, n int, text []byte, err error) {
	if c.i >= len(c.b) {
		return 0, 0, nil, c.fail("truncated")
	}
	kind = c.b[c.i]
	end := c.i + 1
	for end+1 < len(c.b) && !(c.b[end] == '\r' && c.b[end+1] == '\n') {
		end++
	}
	if end+1 >= len(c.b) {
		return 0, 0, nil, c.fail("unterminated line")
	}
	line := c.b[c.i+1 : end]
	c.i = end + 2
	switch kind {
	case '*', '%', '$', '!':
		if len(line) == 2 && line[0] == '-' && line[1] == '1' && kind != '!' {
			return kind, -1, nil, nil
		}
		v := 0
		for _, d := range line {
			if d < '0' || d > '9' || v > len(c.b) {
				return 0, 0, nil, c.fail("bad length")
			}
			v = v*10 + int(d-'0')
		}
		if len(line) == 0 || v > len(c.b) {
			return 0, 0, nil, c.fail("bad length")
		}
		return kind, v, nil, nil
	case '_':
		return kind, -1, nil, nil
	case '+', '-':
		return kind, 0, line, nil
	}
	return 0, 0, nil, c.fail(fmt.Sprintf("type %q", kind))
}

// str reads a bulk or simple string and returns its span in b.
func (c *respCursor) str() (span, error) {
	kind, n, text, err := c.header()
	switch {
	case err != nil:
		return span{}, err
	case kind == '+':
		return span{off: c.i - 2 - len(text), n: len(text)}, nil
	case kind != '$' || n < 0:
		return span{}, c.fail("want a string")
	case c.i+n+2 > len(c.b) || c.b[c.i+n] != '\r' || c.b[c.i+n+1] != '\n':
		return span{}, c.fail("bad bulk string")
	}
	s := span{off: c.i, n: n}
	c.i += n + 2
	return s, nil
}

// errorReply turns an error header into the error it carries.
func (c *respCursor) errorReply(kind byte, n int, text []byte) error {
	if kind == '-' {
		return replyError(text)
	}
	if c.i+n+2 > len(c.b) {
		return c.fail("bad blob error")
	}
	return replyError(c.b[c.i : c.i+n])
}

// parse reads a whole XREAD / XREADGROUP reply: null, or an array (RESP2)
// or map (RESP3) of stream name to entries.
func (r *streamReader) parse(b []byte) ([]streamEntries, error) {
	c := respCursor{b: b}
	kind, n, text, err := c.header()
	switch {
	case err != nil:
		return nil, err
	case kind == '-' || kind == '!':
		return nil, c.errorReply(kind, n, text)
	case n < 0:
		return nil, nil // no entries within BLOCK
	case kind != '*' && kind != '%':
		return nil, c.fail("want an array or a map of streams")
	}
	used := 0
	r.fields = r.fields[:0]
	for range n {
		if kind == '*' {
			if k, m, _, err := c.header(); err != nil || k != '*' || m != 2 {
				return nil, c.fail("want a [stream, entries] pair")
			}
		}
		name, err := c.str()
		if err != nil {
			return nil, err
		}
		if used == len(r.out) {
			r.out = append(r.out, streamEntries{})
		}
		se := &r.out[used]
		used++
		se.stream = r.streamName(b[name.off : name.off+name.n])
		if se.entries, err = r.parseEntries(&c, se.entries[:0]); err != nil {
			return nil, err
		}
	}
	return r.out[:used], nil
}

func (r *streamReader) streamName(b []byte) string {
	for _, s := range r.streams {
		if s == string(b) {
			return s
		}
	}
	return string(b)
}

func (r *streamReader) parseEntries(c *respCursor, out []entry) ([]entry, error) {
	kind, n, _, err := c.header()
	if err != nil {
		return nil, err
	}
	if kind != '*' || n < 0 {
		return nil, c.fail("want an array of entries")
	}
	for range n {
		if k, m, _, err := c.header(); err != nil || k != '*' || m != 2 {
			return nil, c.fail("want an [id, fields] pair")
		}
		id, err := c.str()
		if err != nil {
			return nil, err
		}
		e, err := r.parseFields(c, id)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// parseFields reads an entry's field list (an array, a map, or null for
// an entry that no longer exists) and copies id and values into the
// entry's own storage (the reply buffer is reused by the next read).
func (r *streamReader) parseFields(c *respCursor, id span) (entry, error) {
	kind, n, _, err := c.header()
	if err != nil {
		return entry{}, err
	}
	if n < 0 && (kind == '*' || kind == '%' || kind == '_') {
		return entry{id: string(c.b[id.off : id.off+id.n]), dataAt: -1}, nil
	}
	switch kind {
	case '*':
		if n%2 != 0 {
			return entry{}, c.fail("odd field list")
		}
	case '%':
		n *= 2
	default:
		return entry{}, c.fail("want a field list")
	}
	r.spans = r.spans[:0]
	size := id.n
	for i := range n {
		s, err := c.str()
		if err != nil {
			return entry{}, err
		}
		r.spans = append(r.spans, s)
		if i%2 == 1 || knownField(c.b[s.off:s.off+s.n]) == "" {
			size += s.n
		}
	}
	// One region for the id and every value. Nothing writes to it after
	// this, so the strings below may share it.
	raw := r.alloc(size)
	raw = append(raw, c.b[id.off:id.off+id.n]...)
	e := entry{id: bytesString(raw), fields: r.take(n), dataAt: -1}
	for i, s := range r.spans {
		v := c.b[s.off : s.off+s.n]
		if i%2 == 0 {
			if k := knownField(v); k != "" {
				e.fields[i] = k
				continue
			}
		}
		at := len(raw)
		raw = append(raw, v...)
		e.fields[i] = bytesString(raw[at:])
		if i%2 == 1 && e.fields[i-1] == FieldData {
			e.dataAt = at
		}
	}
	e.raw = raw
	return e, nil
}

// bytesString returns b as a string without copying. b must never change.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func knownField(b []byte) string {
	switch string(b) {
	case FieldType:
		return FieldType
	case FieldID:
		return FieldID
	case FieldData:
		return FieldData
	}
	return ""
}

// take returns a field list of n strings, never nil, valid until the next
// read.
func (r *streamReader) take(n int) []string {
	if cap(r.fields)-len(r.fields) < n {
		// The lists handed out so far keep the old array.
		r.fields = make([]string, 0, max(2*cap(r.fields), n, 64))
	}
	at := len(r.fields)
	r.fields = r.fields[:at+n]
	return r.fields[at : at+n : at+n]
}
