package ai

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
)

// MaxReplyBytes bounds what ExtractJSON reads of a reply.
const MaxReplyBytes = 100_000

var injectionMarkers = []string{"[INST]", "[/INST]", "<|im_start|>", "<|im_end|>", "<<SYS>>", "<</SYS>>"}

// Sanitize bounds a reply, removes control characters (except \n, \t, \r)
// and strips prompt-injection markers.
func Sanitize(s string) string {
	if len(s) > MaxReplyBytes {
		s = s[:MaxReplyBytes]
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\n' && r != '\t' && r != '\r' || r == 0x7f {
			return -1
		}
		return r
	}, s)
	for _, m := range injectionMarkers {
		s = strings.ReplaceAll(s, m, "")
	}
	return s
}

// ExtractJSON pulls a JSON object out of a reply: a fenced ```json block
// first, otherwise the first balanced {...}. It reports ok=false when there
// is none or it is not valid JSON.
func ExtractJSON(reply string) (json.RawMessage, bool) {
	s := Sanitize(reply)
	if i := strings.Index(s, "```json"); i >= 0 {
		rest := s[i+len("```json"):]
		if j := strings.Index(rest, "```"); j >= 0 {
			cand := strings.TrimSpace(rest[:j])
			if json.Valid([]byte(cand)) && strings.HasPrefix(cand, "{") {
				return json.RawMessage(cand), true
			}
		}
	}
	start := strings.IndexByte(s, '{')
	for start >= 0 {
		depth, inStr, esc := 0, false, false
		for k := start; k < len(s); k++ {
			c := s[k]
			switch {
			case esc:
				esc = false
			case inStr && c == '\\':
				esc = true
			case c == '"':
				inStr = !inStr
			case inStr:
			case c == '{':
				depth++
			case c == '}':
				depth--
				if depth == 0 {
					cand := s[start : k+1]
					if json.Valid([]byte(cand)) {
						return json.RawMessage(cand), true
					}
					k = len(s)
				}
			}
		}
		next := strings.IndexByte(s[start+1:], '{')
		if next < 0 {
			break
		}
		start += next + 1
	}
	return nil, false
}

// Summarize describes an extracted output: a short summary and an item count
// (the number of entries in its lists), never its content.
func Summarize(t domain.ComponentType, raw json.RawMessage) (string, int) {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return "no structured data", 0
	}
	count := 0
	var parts []string
	for _, k := range sortedKeys(m) {
		var arr []json.RawMessage
		if json.Unmarshal(m[k], &arr) == nil {
			count += len(arr)
			parts = append(parts, fmt.Sprintf("%d %s", len(arr), strings.ReplaceAll(k, "_", " ")))
		}
	}
	if t == domain.Consequences {
		var o domain.ConsequencesOutput
		if json.Unmarshal(raw, &o) == nil {
			count = len(o.Table.Cells)
			parts = []string{fmt.Sprintf("%d rated cells", count)}
		}
	}
	if len(parts) == 0 {
		return DisplayName(t) + " captured", len(m)
	}
	return DisplayName(t) + ": " + strings.Join(parts, ", "), count
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}
