package workflow

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// MaxArgsBytes is the most bytes of arguments a call may write inline, in
// the workflow file: what rides in the manager's messages. Larger ones go
// in an args_file.
const MaxArgsBytes = 1 << 20

// maxArgsDepth bounds how deeply arguments nest, so that a recursive
// alias cannot run the encoder out of stack.
const maxArgsDepth = 100

// jsonArgs encodes the YAML value vn as JSON. Mappings keep their order,
// and scalars their YAML type: 3 is a number, "3" a string.
func (s scope) jsonArgs(k string, vn *yaml.Node) ([]byte, bool) {
	var b bytes.Buffer
	ok := s.writeJSON(&b, k, vn, 0)
	if b.Len() > MaxArgsBytes { // writeJSON stops early, leaving the message to us
		s.errorf(vn, "%s: more than the %d bytes of JSON that a call may carry", k, MaxArgsBytes)
		return nil, false
	}
	if !ok {
		return nil, false
	}
	return b.Bytes(), true
}

// writeJSON appends the JSON form of vn to b. It reports the first
// problem and returns false, except that of size.
func (s scope) writeJSON(b *bytes.Buffer, k string, vn *yaml.Node, depth int) bool {
	switch {
	case depth > maxArgsDepth:
		s.errorf(vn, "%s: nested more than %d levels deep", k, maxArgsDepth)
		return false
	case b.Len() > MaxArgsBytes:
		return false // jsonArgs says so, at the top
	}
	v := s.p.deref(vn)
	switch v.Kind {
	case yaml.MappingNode:
		b.WriteByte('{')
		for i, e := range s.entries(v) {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, e.key)
			b.WriteByte(':')
			if !s.writeJSON(b, k, e.value, depth+1) {
				return false
			}
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, en := range v.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if !s.writeJSON(b, k, en, depth+1) {
				return false
			}
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		return s.writeJSONScalar(b, k, vn, v)
	default:
		s.errorf(vn, "%s: want a value, got %s", k, describe(v))
		return false
	}
	return true
}

// writeJSONScalar appends the JSON form of scalar v, written at vn.
func (s scope) writeJSONScalar(b *bytes.Buffer, k string, vn, v *yaml.Node) bool {
	switch v.ShortTag() {
	case "!!null":
		b.WriteString("null")
	case "!!bool":
		var x bool
		if v.Decode(&x) != nil {
			s.errorf(vn, "%s: want true or false, got %s", k, describe(v))
			return false
		}
		b.WriteString(strconv.FormatBool(x))
	case "!!int":
		var x int64
		var u uint64
		switch {
		case v.Decode(&x) == nil:
			b.WriteString(strconv.FormatInt(x, 10))
		case v.Decode(&u) == nil:
			b.WriteString(strconv.FormatUint(u, 10))
		default:
			s.errorf(vn, "%s: integer %s is out of range", k, quote(v.Value))
			return false
		}
	case "!!float":
		var x float64
		if v.Decode(&x) != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			s.errorf(vn, "%s: %s is not a number that JSON can hold", k, quote(v.Value))
			return false
		}
		out, _ := json.Marshal(x)
		b.Write(out)
	default: // strings, and the text of other tags (!!binary, !!timestamp)
		writeJSONString(b, v.Value)
	}
	return true
}

// writeJSONString appends s as a JSON string, leaving <, > and & as they
// are.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)           // a string always encodes
	b.Truncate(b.Len() - 1) // Encode ends with a newline
}
