package wire

import (
	"unicode/utf8"
)

// decodeHeaderFast decodes the headers this package writes, and others as
// plain: a JSON object whose keys are the protocol's own field names, spelt
// exactly, with values of the field's type, strings without escapes or
// invalid UTF-8, and numbers as plain decimal integers. It reports false,
// having perhaps set some fields, for anything else; the caller then decodes
// the whole header with encoding/json, which gives the same result for every
// input this function accepts (FuzzDecodeHeader checks that).
func decodeHeaderFast(b []byte, h *Header) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipSpace(b, i+1) == len(b)
	}
	for {
		key, j, ok := plainString(b, i)
		if !ok {
			return false
		}
		i = skipSpace(b, j)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		switch key {
		case "type", "fn", "error", "traceback", "msg", "dir", "key":
			s, j, ok := plainString(b, i)
			if !ok {
				return false
			}
			switch key {
			case "type":
				h.Type = s
			case "fn":
				h.Fn = s
			case "error":
				h.Error = s
			case "traceback":
				h.Traceback = s
			case "msg":
				h.Msg = s
			case "dir":
				h.Dir = s
			case "key":
				h.Key = s
			}
			i = j
		case "id":
			n, j, ok := plainUint(b, i)
			if !ok {
				return false
			}
			h.ID, i = n, j
		case "timeout_ms":
			neg := i < len(b) && b[i] == '-'
			if neg {
				i++
			}
			n, j, ok := plainUint(b, i)
			if !ok || n > 1<<63-1 || neg && n == 0 {
				return false
			}
			h.TimeoutMS, i = int64(n), j
			if neg {
				h.TimeoutMS = -h.TimeoutMS
			}
		case "ok", "cancelled":
			var v bool
			switch {
			case hasPrefix(b[i:], "true"):
				v, i = true, i+4
			case hasPrefix(b[i:], "false"):
				v, i = false, i+5
			default:
				return false
			}
			if key == "ok" {
				h.OK = v
			} else {
				h.Cancelled = v
			}
		default:
			return false // unknown fields: encoding/json skips them
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return skipSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func hasPrefix(b []byte, s string) bool {
	return len(b) >= len(s) && string(b[:len(s)]) == s
}

// plainString reads a JSON string at b[i] that has no escapes, no control
// characters and only valid UTF-8, and returns it and the index after it.
func plainString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	start := i + 1
	ascii := true
	for j := start; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s := b[start:j]
			if !ascii && !utf8.Valid(s) {
				return "", 0, false
			}
			return string(s), j + 1, true
		case c == '\\' || c < 0x20:
			return "", 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", 0, false
}

// plainUint reads a JSON integer at b[i]: "0", or a non-zero digit and more
// digits, that fits a uint64, not followed by a fraction or exponent.
func plainUint(b []byte, i int) (uint64, int, bool) {
	start := i
	var n uint64
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		d := uint64(b[i] - '0')
		if n > (1<<64-1-d)/10 {
			return 0, 0, false
		}
		n = n*10 + d
		i++
	}
	switch {
	case i == start, b[start] == '0' && i > start+1:
		return 0, 0, false
	case i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E'):
		return 0, 0, false
	}
	return n, i, true
}
