package jsonvalid

import (
	"encoding/json"
	"strings"
	"testing"
)

var cases = []string{
	// valid
	`0`, `-0`, `1`, `-12.5e+3`, `1E9`, `0.0`, `1e-0`, `123456789012345678901234567890`,
	`""`, `"a"`, `"\"\\\/\b\f\n\r\t"`, `"\u00e9\uD834\uDD1E"`, `"\uABCD"`, "\"é 日本 \xff\xfe\"",
	`true`, `false`, `null`, `[]`, `{}`, ` [ 1 , "x" , { } , [ ] ] `, "\t\r\n{\"a\":1}\n",
	`{"a":{"b":[1,2,{"c":null}]},"d":"e"}`, `{"":""}`, `[[[[[]]]]]`,
	// invalid
	``, ` `, `01`, `-`, `--1`, `+1`, `1.`, `.5`, `1e`, `1e+`, `1.e3`, `0x10`, `1 2`,
	`"`, `"abc`, `"\x"`, `"\u12"`, `"\u12G4"`, "\"a\x01b\"", "\"tab\there\"", `"\`,
	`tru`, `truee`, `nul`, `False`, `nan`, `Infinity`,
	`[`, `]`, `[1,]`, `[,1]`, `[1 2]`, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{a:1}`,
	`{"a":1 "b":2}`, `{"a" 1}`, `{1:2}`, `[1]]`, `{}}`, `{"a":1}x`, "\x00", "1\x00",
}

func TestValidMatchesEncodingJSON(t *testing.T) {
	for _, c := range cases {
		want := json.Valid([]byte(c))
		if got := Valid([]byte(c)); got != want {
			t.Errorf("Valid([]byte(%q)) = %v, encoding/json says %v", c, got, want)
		}
		if got := ValidString(c); got != want {
			t.Errorf("Valid(%q) = %v, encoding/json says %v", c, got, want)
		}
	}
}

func TestValidDepthLimit(t *testing.T) {
	for _, open := range []string{"[", `{"k":`} {
		close := map[string]string{"[": "]", `{"k":`: "}"}[open]
		for _, depth := range []int{maxDepth - 1, maxDepth, maxDepth + 1} {
			doc := strings.Repeat(open, depth) + "1" + strings.Repeat(close, depth)
			want := json.Valid([]byte(doc))
			if got := ValidString(doc); got != want {
				t.Errorf("%q nested %d deep: Valid = %v, encoding/json says %v", open, depth, got, want)
			}
		}
	}
	if !ValidString(strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)) {
		t.Error("nesting at the limit must be valid")
	}
	if ValidString(strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1)) {
		t.Error("nesting past the limit must be invalid")
	}
}

func TestValidAllocatesNothing(t *testing.T) {
	doc := []byte(`{"title":"Pick a city","options":["Lisbon","Porto"],"weight":0.75,"ok":true,"none":null}`)
	s := string(doc)
	if n := testing.AllocsPerRun(100, func() { Valid(doc); ValidString(s) }); n != 0 {
		t.Fatalf("Valid allocated %v times per run", n)
	}
}

func FuzzValid(f *testing.F) {
	for _, c := range cases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want := json.Valid(data)
		if got := Valid(data); got != want {
			t.Fatalf("Valid(%q) = %v, encoding/json says %v", data, got, want)
		}
		if got := ValidString(string(data)); got != want {
			t.Fatalf("Valid(string %q) = %v, encoding/json says %v", data, got, want)
		}
	})
}

// payload is the benchmarks' 256 B shape: a small object of strings and numbers.
var payload = []byte(`{"session_id":"0193a1f2-7c4e-7d2a-9b1e-5f3c2a1d4e6f","cycle_id":"0193a1f2-7c4e-7d2a-9b1e-5f3c2a1d4e70","component":"objectives","title":"Choose where to live next year","score":0.8125,"done":false,"tags":["city","work"],"note":"caf\u00e9 \"quoted\""}`)

func BenchmarkValid(b *testing.B) { benchValid(b, Valid, payload) }

func BenchmarkEncodingJSONValid(b *testing.B) { benchValid(b, json.Valid, payload) }

// textPayload is a conversation-message shape: one long string.
var textPayload = []byte(`{"role":"assistant","content":"` + strings.Repeat(`Let us list what matters most to you in this decision, then weigh each option against it. `, 20) + `"}`)

func BenchmarkValidText(b *testing.B) { benchValid(b, Valid, textPayload) }

func BenchmarkEncodingJSONValidText(b *testing.B) { benchValid(b, json.Valid, textPayload) }

// TestValidEveryByteAtEveryOffset puts each byte value at each position of
// a string long enough for several 8-byte words, so every lane of the
// word-at-a-time scan sees every byte.
func TestValidEveryByteAtEveryOffset(t *testing.T) {
	for c := range 256 {
		for off := range 20 {
			doc := []byte(`"` + strings.Repeat("a", off) + string(rune(0)) + strings.Repeat("a", 20-off) + `"`)
			doc[1+off] = byte(c)
			if got, want := Valid(doc), json.Valid(doc); got != want {
				t.Fatalf("byte %#x at %d: Valid = %v, encoding/json says %v", c, off, got, want)
			}
		}
	}
}

func TestPrefixString(t *testing.T) {
	for _, tc := range []struct {
		in string
		n  int
		ok bool
	}{
		{`{"a":[1,2]},"metadata":{}}`, 11, true},
		{`"x\"y",`, 6, true},
		{`-1.5e3}`, 6, true},
		{`null}`, 4, true},
		{`[1,}`, 3, false},
		{` {}`, 0, false}, // no leading whitespace
		{``, 0, false},
	} {
		n, ok := PrefixString(tc.in)
		if ok != tc.ok || ok && n != tc.n {
			t.Errorf("PrefixString(%q) = %d, %v; want %d, %v", tc.in, n, ok, tc.n, tc.ok)
		}
	}
}

func benchValid(b *testing.B, valid func([]byte) bool, data []byte) {
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if !valid(data) {
			b.Fatal("invalid")
		}
	}
}
