// Package jsonvalid checks JSON syntax without decoding it.
//
// Valid accepts exactly the inputs encoding/json.Valid accepts (RFC 8259
// syntax, any bytes >= 0x80 inside strings, nesting up to 10000 levels) and
// allocates nothing. It exists because every published envelope's payload
// is checked on the hot path, and json.Valid's byte-at-a-time state machine
// was the largest single cost of a Redis publish and of a consume.
package jsonvalid

import (
	"encoding/binary"
	"unsafe"
)

// maxDepth is encoding/json's nesting limit: deeper input is invalid there,
// so it is here too.
const maxDepth = 10000

// plain marks the bytes a string may hold without a closer look: anything
// but '"', '\\' and control characters below 0x20.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// Valid reports whether data is one JSON value, optionally surrounded by
// whitespace.
func Valid(data []byte) bool {
	i, ok := value(data, skipSpace(data, 0), 0)
	return ok && skipSpace(data, i) == len(data)
}

// ValidString is Valid for a string, without copying it.
func ValidString(s string) bool {
	// Valid only reads, so viewing the string's bytes is safe.
	return Valid(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// PrefixString checks the JSON value at the very start of s (no leading
// whitespace) and returns its length; what follows it is not looked at. It
// lets a decoder validate an embedded value and find its end in one pass.
func PrefixString(s string) (n int, ok bool) {
	return value(unsafe.Slice(unsafe.StringData(s), len(s)), 0, 0)
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// special reports whether any of the 8 bytes in w is '"', '\\' or below
// 0x20 (the classic SWAR zero-byte and less-than tests; they may misplace
// a hit but never miss one or invent one).
func special(w uint64) bool {
	q := w ^ (ones * '"')
	b := w ^ (ones * '\\')
	return ((q-ones)&^q|(b-ones)&^b|(w-ones*0x20)&^w)&highs != 0
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// value checks the value starting at data[i] (no leading space) and returns
// the index just after it.
func value(data []byte, i, depth int) (int, bool) {
	if i >= len(data) {
		return i, false
	}
	switch c := data[i]; {
	case c == '"':
		return str(data, i+1)
	case c == '{':
		return container(data, i+1, depth+1, '}')
	case c == '[':
		return container(data, i+1, depth+1, ']')
	case c == '-' || c >= '0' && c <= '9':
		return number(data, i)
	case c == 't':
		return literal(data, i, "true")
	case c == 'f':
		return literal(data, i, "false")
	case c == 'n':
		return literal(data, i, "null")
	}
	return i, false
}

func literal(data []byte, i int, word string) (int, bool) {
	if len(data)-i < len(word) {
		return i, false
	}
	for j := range len(word) {
		if data[i+j] != word[j] {
			return i, false
		}
	}
	return i + len(word), true
}

// str checks a string whose opening quote is just before data[i].
func str(data []byte, i int) (int, bool) {
	for {
		for len(data)-i >= 8 && !special(binary.LittleEndian.Uint64(data[i:])) {
			i += 8
		}
		for i < len(data) && plain[data[i]] {
			i++
		}
		if i >= len(data) {
			return i, false
		}
		switch data[i] {
		case '"':
			return i + 1, true
		case '\\':
			i++
			if i >= len(data) {
				return i, false
			}
			switch data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if len(data)-i < 5 {
					return i, false
				}
				for j := i + 1; j < i+5; j++ {
					if !isHex(data[j]) {
						return j, false
					}
				}
				i += 5
			default:
				return i, false
			}
		default: // a control character
			return i, false
		}
	}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func digits(data []byte, i int) int {
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		i++
	}
	return i
}

// number checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func number(data []byte, i int) (int, bool) {
	if data[i] == '-' {
		i++
	}
	switch {
	case i >= len(data):
		return i, false
	case data[i] == '0':
		i++
	case data[i] >= '1' && data[i] <= '9':
		i = digits(data, i+1)
	default:
		return i, false
	}
	if i < len(data) && data[i] == '.' {
		j := digits(data, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := digits(data, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

// container checks an object or an array whose opening bracket is just
// before data[i]; closer is '}' or ']'.
func container(data []byte, i, depth int, closer byte) (int, bool) {
	if depth > maxDepth {
		return i, false
	}
	i = skipSpace(data, i)
	if i < len(data) && data[i] == closer {
		return i + 1, true
	}
	for {
		var ok bool
		if closer == '}' {
			if i, ok = key(data, i); !ok {
				return i, false
			}
		}
		if i, ok = value(data, i, depth); !ok {
			return i, false
		}
		i = skipSpace(data, i)
		if i >= len(data) {
			return i, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case closer:
			return i + 1, true
		default:
			return i, false
		}
	}
}

// key checks an object member's `"name" :` at data[i] and returns where
// its value starts.
func key(data []byte, i int) (int, bool) {
	if i >= len(data) || data[i] != '"' {
		return i, false
	}
	i, ok := str(data, i+1)
	if !ok {
		return i, false
	}
	i = skipSpace(data, i)
	if i >= len(data) || data[i] != ':' {
		return i, false
	}
	return skipSpace(data, i+1), true
}
