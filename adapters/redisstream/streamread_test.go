package redisstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/internal/testinfra"
)

// resp builds RESP replies for parser tests.
type resp struct{ strings.Builder }

func (r *resp) arr(n int) *resp { fmt.Fprintf(r, "*%d\r\n", n); return r }
func (r *resp) m(n int) *resp   { fmt.Fprintf(r, "%%%d\r\n", n); return r }
func (r *resp) bulk(s string) *resp {
	fmt.Fprintf(r, "$%d\r\n%s\r\n", len(s), s)
	return r
}
func (r *resp) raw(s string) *resp { r.WriteString(s); return r }

// TestParseCopiesIntoSlabs: the reply buffer is reused by the next read, so
// entries copy what they keep, a few entries to an allocation; a big entry
// gets its own, and no entry can write into another's bytes.
func TestParseCopiesIntoSlabs(t *testing.T) {
	var b resp
	const small, n = 200, 40
	b.arr(1).arr(2).bulk("s").arr(n + 1)
	for i := range n {
		b.arr(2).bulk(fmt.Sprintf("1-%d", i)).arr(6).bulk(FieldType).bulk("a.v1").bulk(FieldID).bulk(fmt.Sprint(i)).bulk(FieldData).bulk(strings.Repeat("d", small))
	}
	big := strings.Repeat("B", slabSize)
	b.arr(2).bulk("2-0").arr(2).bulk(FieldData).bulk(big)
	reply := []byte(b.String())
	rd := &streamReader{streams: []string{"s"}}
	res, err := rd.parse(reply)
	require.NoError(t, err)
	entries := res[0].entries
	require.Len(t, entries, n+1)
	clear(reply)    // the next read overwrites the buffer
	contiguous := 0 // entries that start where the one before ends: one slab
	for i, e := range entries[:n] {
		if i > 0 {
			prev := entries[i-1].raw
			if unsafe.Pointer(&e.raw[0]) == unsafe.Add(unsafe.Pointer(&prev[0]), cap(prev)) {
				contiguous++
			}
		}
		require.Equal(t, fmt.Sprintf("1-%d", i), e.id)
		data, _ := e.field(FieldData)
		require.Equal(t, strings.Repeat("d", small), data)
		require.Equal(t, len(e.raw), cap(e.raw), "an entry cannot grow into the next one")
		e.raw[len(e.raw)-1] = 'x' // a handler writing into its payload
	}
	for _, e := range entries[:n] {
		data, _ := e.field(FieldData)
		require.Equal(t, strings.Repeat("d", small-1)+"x", data, "each entry has its own bytes")
	}
	require.GreaterOrEqual(t, contiguous, n/2, "entries share allocations")
	data, _ := entries[n].field(FieldData)
	require.Equal(t, big, data)
	require.Equal(t, len(big)+len("2-0"), cap(entries[n].raw), "a big entry gets an allocation of its own")
}

// rawEntry parses a one-entry RESP2 XREADGROUP reply.
func rawEntry(t testing.TB, id string, fields ...string) entry {
	t.Helper()
	var b resp
	b.arr(1).arr(2).bulk("s").arr(1).arr(2).bulk(id).arr(len(fields))
	for _, f := range fields {
		b.bulk(f)
	}
	rd := &streamReader{streams: []string{"s"}}
	res, err := rd.parse([]byte(b.String()))
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Len(t, res[0].entries, 1)
	return res[0].entries[0]
}

func TestParseReplyShapes(t *testing.T) {
	entryBody := func(b *resp) { b.arr(2).bulk("1-1").arr(4).bulk("type").bulk("a.v1").bulk("data").bulk("{}") }
	resp2 := new(resp)
	resp2.arr(2).arr(2).bulk("s1").arr(1)
	entryBody(resp2)
	resp2.arr(2).bulk("s2").arr(2).arr(2).bulk("2-1").raw("*-1\r\n").arr(2).bulk("2-2").arr(2).bulk("x").bulk("")
	resp3 := new(resp)
	resp3.m(2).bulk("s1").arr(1)
	entryBody(resp3)
	resp3.bulk("s2").arr(2).arr(2).bulk("2-1").raw("_\r\n").arr(2).bulk("2-2").m(1).bulk("x").bulk("")
	for name, reply := range map[string]string{"RESP2": resp2.String(), "RESP3": resp3.String()} {
		t.Run(name, func(t *testing.T) {
			rd := &streamReader{streams: []string{"s1", "s2"}}
			res, err := rd.parse([]byte(reply))
			require.NoError(t, err)
			require.Len(t, res, 2)
			require.Equal(t, "s1", res[0].stream)
			require.Equal(t, "s2", res[1].stream)
			e := res[0].entries[0]
			require.Equal(t, "1-1", e.id)
			require.Equal(t, []string{"type", "a.v1", "data", "{}"}, e.fields)
			require.Equal(t, "{}", string(e.raw[e.dataAt:e.dataAt+2]))
			gone := res[1].entries[0]
			require.Equal(t, "2-1", gone.id)
			require.Nil(t, gone.fields, "a deleted entry has no field list")
			empty := res[1].entries[1]
			require.Equal(t, []string{"x", ""}, empty.fields)
			require.Equal(t, -1, empty.dataAt)
		})
	}
	for _, null := range []string{"*-1\r\n", "_\r\n"} {
		res, err := (&streamReader{}).parse([]byte(null))
		require.NoError(t, err)
		require.Empty(t, res, "no entries within BLOCK")
	}
}

func TestParseReplyErrors(t *testing.T) {
	for _, reply := range []string{"-NOGROUP No such key 's' or consumer group 'g'\r\n", "!45\r\nNOGROUP No such key 's' or consumer group 'g'\r\n"} {
		_, err := (&streamReader{}).parse([]byte(reply))
		require.True(t, isNoGroup(err), "%q: %v", reply, err)
		var rerr redis.Error
		require.ErrorAs(t, err, &rerr, "a server reply, as go-redis reports it")
	}
	var valid resp
	valid.arr(1).arr(2).bulk("s").arr(1).arr(2).bulk("1-1").arr(2).bulk("data").bulk("{}")
	full := valid.String()
	for i := range len(full) {
		_, err := (&streamReader{streams: []string{"s"}}).parse([]byte(full[:i]))
		var perr *protocolError
		require.ErrorAs(t, err, &perr, "truncated at %d", i)
	}
	for _, bad := range []string{
		"+OK\r\n",
		"*1\r\n*3\r\n",
		"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*1\r\n$1\r\nx\r\n", // odd field list
		"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n:5\r\n",
		"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$9\r\n1-1\r\n*0\r\n", // bulk longer than its line
		"*99999999999999999999\r\n",
		"*x\r\n",
		"|1\r\n+a\r\n+b\r\n*-1\r\n", // RESP3 attribute: not a shape XREADGROUP sends
		"!-1\r\nX",                  // a blob error has no null form
	} {
		_, err := (&streamReader{streams: []string{"s"}}).parse([]byte(bad))
		var perr *protocolError
		require.ErrorAs(t, err, &perr, "%q", bad)
	}
}

// A repeated field name resolves to its last value, as go-redis's map
// would, and the payload is sliced from that value.
func TestParseRepeatedData(t *testing.T) {
	// Small entries are copied into a shared slab; one padded (with a type
	// the last one overrides) gets an allocation of its own.
	for _, pad := range []int{0, slabSize} {
		t.Run(fmt.Sprintf("pad=%d", pad), func(t *testing.T) { testParseRepeatedData(t, pad) })
	}
}

func testParseRepeatedData(t *testing.T, pad int) {
	env := mkEnv(t, 1, "k")
	fields, err := encodeEntry(&env, 0)
	require.NoError(t, err)
	e := rawEntry(t, "1-1", FieldType, strings.Repeat("p", pad), FieldData, "junk", FieldType, fields[1].(string), FieldID, fields[3].(string), FieldData, string(fields[5].([]byte)))
	d := &delivery{entry: e}
	d.decode()
	require.NoError(t, d.decErr)
	require.Equal(t, env, *d.env)
	// The payload shares the entry's storage, so once decoded no string
	// keeps a view of it: a handler writing into its payload changes no
	// string.
	before := make([]string, len(d.fields))
	for i, f := range d.fields {
		before[i] = strings.Clone(f)
	}
	for i := range d.env.Payload {
		d.env.Payload[i] = 'x'
	}
	require.Equal(t, before, d.fields)
	for i := 1; i < len(d.fields); i += 2 {
		if d.fields[i-1] == FieldData {
			require.Empty(t, d.fields[i])
		}
	}
}

// Against the real server, in both protocols, the raw reader returns what
// go-redis's parser does: fields, values, deleted entries, and a NOGROUP
// error it recognises.
func TestStreamReaderMatchesGoRedis(t *testing.T) {
	t.Parallel()
	base, prefix := testinfra.Redis(t)
	ctx := ctxT(t)
	for _, proto := range []int{2, 3} {
		t.Run("RESP"+strconv.Itoa(proto), func(t *testing.T) {
			opt := *base.Options()
			opt.Protocol = proto
			rdb := redis.NewClient(&opt)
			defer rdb.Close()
			stream := prefix + "raw" + strconv.Itoa(proto)
			var ids []string
			for _, values := range [][]any{
				{"type", "a.v1", "id", "x", "data", `{"k":"ü \r\n"}`},
				{"only", ""},
				{"data", "1", "data", "2"},
				{"gone", "soon"},
			} {
				id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: values}).Result()
				require.NoError(t, err)
				ids = append(ids, id)
			}
			require.NoError(t, rdb.XGroupCreate(ctx, stream, "g", "0").Err())
			rd := newStreamReader(rdb, []string{stream}, time.Second, nil)
			require.NotNil(t, rd.raw, "a plain client takes the raw path")
			res, err := rd.readGroup(ctx, "g", "c", []string{stream}, []string{">"}, 10, 100*time.Millisecond)
			require.NoError(t, err)
			require.Len(t, res, 1)
			require.Equal(t, stream, res[0].stream)
			require.Len(t, res[0].entries, 4)
			require.NoError(t, rdb.XDel(ctx, stream, ids[3]).Err())

			// Re-read the pending entries both ways: the deleted one comes
			// back without fields.
			raw, err := rd.readGroup(ctx, "g", "c", []string{stream}, []string{"0"}, 10, -1)
			require.NoError(t, err)
			want, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{stream, "0"}, Count: 10, Block: -1}).Result()
			require.NoError(t, err)
			got := raw[0].entries
			require.Len(t, got, 4)
			require.Len(t, want[0].Messages, 4)
			for i, m := range want[0].Messages {
				require.Equal(t, m.ID, got[i].id)
				if m.Values == nil {
					require.Nil(t, got[i].fields, m.ID)
					continue
				}
				asMap := map[string]any{}
				for j := 0; j < len(got[i].fields); j += 2 {
					asMap[got[i].fields[j]] = got[i].fields[j+1]
				}
				require.Equal(t, m.Values, asMap)
			}
			require.Nil(t, got[3].fields, "the deleted entry")

			// Nothing new within BLOCK: no entries, no error.
			res, err = rd.readGroup(ctx, "g", "c", []string{stream}, []string{">"}, 10, 10*time.Millisecond)
			require.NoError(t, err)
			require.Empty(t, res)

			_, err = rd.readGroup(ctx, "nogroup", "c", []string{stream}, []string{">"}, 10, 10*time.Millisecond)
			require.True(t, isNoGroup(err), "%v", err)
			require.NotNil(t, rd.raw, "an error reply is not a parse failure")
		})
	}
}

// hiddenRaw hides DoRaw, as a client wrapper would.
type hiddenRaw struct{ redis.UniversalClient }

func TestStreamReaderFallsBack(t *testing.T) {
	base, _ := testinfra.Redis(t)
	require.Nil(t, newStreamReader(hiddenRaw{base}, nil, time.Second, nil).raw, "no raw method: parsed path")
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{base.Options().Addr}})
	defer cluster.Close()
	require.Nil(t, newStreamReader(cluster, nil, time.Second, nil).raw, "cluster: parsed path (MOVED and ASK)")
	for _, tc := range []struct {
		readTimeout, block time.Duration
		raw                bool
	}{
		{2 * time.Second, 1600 * time.Millisecond, false}, // a reply could outlast the read timeout
		{2 * time.Second, 1500 * time.Millisecond, true},
		{-1, time.Hour, true}, // no read timeout
		{-2, time.Hour, true}, // no read deadline
	} {
		opt := *base.Options()
		opt.ReadTimeout = tc.readTimeout
		c := redis.NewClient(&opt)
		require.Equal(t, tc.raw, newStreamReader(c, nil, tc.block, nil).raw != nil, "ReadTimeout %v, Block %v", tc.readTimeout, tc.block)
		require.NoError(t, c.Close())
	}
}

// garbling returns the first raw reply of a read for new entries with a
// type byte the parser refuses: Redis delivered the entries (they sit in
// the consumer's pending list) and the reader cannot parse them.
type garbling struct {
	*redis.Client
	done atomic.Bool
}

func (g *garbling) DoRawWriteTo(ctx context.Context, w io.Writer, args ...any) *redis.RawWriteToCmd {
	var buf bytes.Buffer
	cmd := g.Client.DoRawWriteTo(ctx, &buf, args...)
	v := buf.Bytes()
	hasEntries := len(v) > 0 && (v[0] == '*' || v[0] == '%') && !strings.HasPrefix(string(v), "*-1") // not a null (RESP2 or 3)
	if cmd.Err() == nil && args[len(args)-1] == ">" && hasEntries && g.done.CompareAndSwap(false, true) {
		v[0] = '|'
	}
	_, _ = w.Write(v)
	return cmd
}

// syncBuffer is a bytes.Buffer for a logger shared by goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// A reply the parser refuses switches the reader to go-redis's parser for
// good, and the entries of that reply are claimed back and handled once,
// well before MinIdle would have let the claim loop take them.
func TestUnparsableReplyFallsBackAndRecovers(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	g := &garbling{Client: f.rdb}
	var logs syncBuffer
	c := f.config()
	c.MinIdle = 10 * time.Second
	c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	requireEachHandledOnce(t, ctx, g, c, 20)
	require.True(t, g.done.Load(), "a reply was garbled")
	require.Contains(t, logs.String(), "reading with go-redis's reply parser from now on")
}

// requireEachHandledOnce runs a bus on rdb with c, publishes n events to
// a subscription and requires each handled exactly once within 5 s.
func requireEachHandledOnce(t *testing.T, ctx context.Context, rdb redis.UniversalClient, c *Config, n int) {
	t.Helper()
	b, err := New(rdb, c)
	require.NoError(t, err)
	defer b.Close()
	rec := newRecorder(n, nil)
	_, err = b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	envs := mkEnvs(t, n)
	require.NoError(t, b.Publish(ctx, envs...))
	rec.wait(t, 5*time.Second)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, env := range envs {
		require.Equal(t, 1, rec.calls[env.EventID], "handled once")
	}
}

// The whole bus works on the parsed path too (a client wrapper without
// DoRaw).
func TestBusOnParsedPath(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	b, err := New(hiddenRaw{f.rdb}, f.config())
	require.NoError(t, err)
	defer b.Close()
	envs := mkEnvs(t, 50)
	rec := newRecorder(len(envs), nil)
	_, err = b.Subscribe(ctx, "g", rec)
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, envs...))
	rec.wait(t, 10*time.Second)
	for _, env := range envs {
		require.Equal(t, env, rec.ok[env.EventID])
	}
}

// Any reply either parses or fails with an error, never a panic, and what
// parses is well formed.
func FuzzParseReply(f *testing.F) {
	var ok resp
	ok.arr(1).arr(2).bulk("s").arr(2).arr(2).bulk("1-1").arr(6).bulk("type").bulk("a.v1").bulk("id").bulk("x").bulk("data").bulk("{}").arr(2).bulk("1-2").raw("*-1\r\n")
	var ok3 resp
	ok3.m(1).bulk("s").arr(1).arr(2).bulk("1-1").m(1).bulk("data").bulk("{}")
	for _, seed := range []string{ok.String(), ok3.String(), "*-1\r\n", "_\r\n", "-NOGROUP x\r\n", "!3\r\nERR\r\n", "+1-1\r\n", "!-1\r\nX"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rd := &streamReader{streams: []string{"s"}}
		res, err := rd.parse(b)
		if err != nil {
			return
		}
		for _, se := range res {
			for _, e := range se.entries {
				if e.fields == nil {
					continue
				}
				if len(e.fields)%2 != 0 {
					t.Fatalf("odd field list %q", e.fields)
				}
				if e.dataAt >= 0 {
					data, _ := e.field(FieldData)
					if string(e.raw[e.dataAt:e.dataAt+len(data)]) != data {
						t.Fatalf("dataAt %d does not point at the data value", e.dataAt)
					}
				}
			}
		}
	})
}

// retrying is a client wrapper that retries a raw read after its read
// timeout, silently (go-redis itself does so for DoRaw, not DoRawWriteTo):
// the first XREADGROUP for new entries runs (Redis hands its entries to the
// consumer) but its reply is lost, and the command runs again.
type retrying struct {
	*redis.Client
	done atomic.Bool
}

func (r *retrying) DoRawWriteTo(ctx context.Context, w io.Writer, args ...any) *redis.RawWriteToCmd {
	if args[len(args)-1] == ">" && !r.done.Load() {
		var lost bytes.Buffer
		first := r.Client.DoRawWriteTo(ctx, &lost, args...)
		v := lost.String()
		if first.Err() != nil || len(v) == 0 || v[0] == '_' || strings.HasPrefix(v, "*-1") {
			_, _ = w.Write(lost.Bytes()) // nothing was read: nothing to lose
			return first
		}
		r.done.Store(true)
		time.Sleep(r.Options().ReadTimeout)
	}
	return r.Client.DoRawWriteTo(ctx, w, args...)
}

// Entries of a read a client silently retried are claimed back at once,
// not left for MinIdle.
func TestSilentlyRetriedReadRecovered(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := ctxT(t)
	opts := *f.rdb.Options()
	opts.ReadTimeout = 600 * time.Millisecond // Block is 100ms: the raw path
	client := &retrying{Client: redis.NewClient(&opts)}
	defer client.Close()
	c := f.config()
	c.MinIdle = 20 * time.Second
	requireEachHandledOnce(t, ctx, client, c, 20)
	require.True(t, client.done.Load(), "a read was lost and retried")
}

// replyBuffer takes go-redis's bulk strings (an io.LimitedReader, read
// exactly) and, should that ever change, any reader until EOF.
func TestReplyBufferReadFrom(t *testing.T) {
	var w replyBuffer
	_, _ = w.Write([]byte("$5\r\n"))
	lr := &io.LimitedReader{R: strings.NewReader("hello\r\nrest"), N: 7}
	n, err := w.ReadFrom(lr)
	require.NoError(t, err)
	require.EqualValues(t, 7, n)
	require.Zero(t, lr.N)
	require.Equal(t, "$5\r\nhello\r\n", string(w.b))

	n, err = w.ReadFrom(strings.NewReader(strings.Repeat("x", 10000)))
	require.NoError(t, err)
	require.EqualValues(t, 10000, n)
	require.Equal(t, "$5\r\nhello\r\n"+strings.Repeat("x", 10000), string(w.b))

	short := &io.LimitedReader{R: strings.NewReader("ab"), N: 5}
	_, err = w.ReadFrom(short)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF, "a reply cut short is an error")
}
