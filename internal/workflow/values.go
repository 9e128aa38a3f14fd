package workflow

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// str reads a string. Any scalar but null is taken as its text, so that
// `tags: [2024]` means "2024".
func (s scope) str(k string, vn *yaml.Node) (string, bool) {
	v := s.p.deref(vn)
	if v.Kind != yaml.ScalarNode || isNull(v) {
		s.errorf(vn, "%s: want a string, got %s", k, describe(v))
		return "", false
	}
	return v.Value, true
}

// stringList reads a string or a list of strings. Null is the empty
// list.
func (s scope) stringList(k string, vn *yaml.Node) ([]string, bool) {
	v := s.p.deref(vn)
	if isNull(v) {
		return nil, true
	}
	if v.Kind == yaml.ScalarNode && !isNull(v) {
		return []string{v.Value}, true
	}
	if v.Kind != yaml.SequenceNode {
		s.errorf(vn, "%s: want a list of strings, got %s", k, describe(v))
		return nil, false
	}
	var out []string
	ok := true
	for _, en := range v.Content {
		x, good := s.str(k, en)
		ok = ok && good
		out = append(out, x)
	}
	return out, ok
}

// integer reads an integer.
func (s scope) integer(k string, vn *yaml.Node) (int, bool) {
	v := s.p.deref(vn)
	var x int64
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Decode(&x) != nil {
		s.errorf(vn, "%s: want an integer, got %s", k, describe(v))
		return 0, false
	}
	if x < math.MinInt32 || x > math.MaxInt32 {
		s.errorf(vn, "%s: %d is out of range", k, x)
		return 0, false
	}
	return int(x), true
}

// count reads an integer that must not be negative.
func (s scope) count(k string, vn *yaml.Node) (int, bool) {
	x, ok := s.integer(k, vn)
	if ok && x < 0 {
		s.errorf(vn, "%s: must not be negative, got %d", k, x)
		return 0, false
	}
	return x, ok
}

// cores reads a number of cores: a finite number, not negative.
func (s scope) cores(k string, vn *yaml.Node) (float64, bool) {
	v := s.p.deref(vn)
	var x float64
	tag := v.ShortTag()
	if v.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") || v.Decode(&x) != nil {
		s.errorf(vn, "%s: want a number, got %s", k, describe(v))
		return 0, false
	}
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0):
		s.errorf(vn, "%s: want a finite number, got %s", k, describe(v))
		return 0, false
	case x < 0:
		s.errorf(vn, "%s: must not be negative, got %s", k, v.Value)
		return 0, false
	case x > 1<<20:
		s.errorf(vn, "%s: %s is out of range", k, v.Value)
		return 0, false
	}
	return x, true
}

// boolean reads true or false.
func (s scope) boolean(k string, vn *yaml.Node) (bool, bool) {
	v := s.p.deref(vn)
	var x bool
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" || v.Decode(&x) != nil {
		s.errorf(vn, "%s: want true or false, got %s", k, describe(v))
		return false, false
	}
	return x, true
}

// duration reads a Go duration such as "30s" or "1h30m".
func (s scope) duration(k string, vn *yaml.Node) (time.Duration, bool) {
	v := s.p.deref(vn)
	var d time.Duration
	var err error
	if v.Kind == yaml.ScalarNode && !isNull(v) {
		d, err = time.ParseDuration(v.Value)
	}
	if v.Kind != yaml.ScalarNode || isNull(v) || err != nil {
		s.errorf(vn, "%s: want a duration like \"30s\" or \"1h30m\", got %s", k, describe(v))
		return 0, false
	}
	if d < 0 {
		s.errorf(vn, "%s: must not be negative, got %s", k, v.Value)
		return 0, false
	}
	return d, true
}

// maxSizeMB bounds sizes: 1 EB is more than any machine has.
const maxSizeMB = 1 << 40

// sizeUnits maps size units, in upper case, to MB.
var sizeUnits = map[string]float64{"KB": 1.0 / 1024, "MB": 1, "GB": 1024, "TB": 1024 * 1024}

// sizeForm matches a size: a number, optional blanks and a unit.
var sizeForm = regexp.MustCompile(`^(-?)([0-9]+(?:\.[0-9]+)?|\.[0-9]+)[ \t]*([A-Za-z]*)$`)

// size reads a size in MB: an integer (MB) or a number with a unit. Units
// are binary (1GB = 1024MB); the result is rounded up to whole MB.
func (s scope) size(k string, vn *yaml.Node) (int64, bool) {
	v := s.p.deref(vn)
	bad := func() (int64, bool) {
		s.errorf(vn, "%s: want an integer number of MB or a size like \"512MB\" or \"2GB\", got %s", k, describe(v))
		return 0, false
	}
	if v.Kind != yaml.ScalarNode || isNull(v) {
		return bad()
	}
	if v.ShortTag() == "!!int" {
		var x int64
		if v.Decode(&x) != nil {
			return bad()
		}
		if x < 0 {
			s.errorf(vn, "%s: must not be negative, got %d", k, x)
			return 0, false
		}
		if x > maxSizeMB {
			s.errorf(vn, "%s: %s is too large", k, v.Value)
			return 0, false
		}
		return x, true
	}
	m := sizeForm.FindStringSubmatch(strings.TrimSpace(v.Value))
	if m == nil || m[3] == "" {
		return bad()
	}
	unit, ok := sizeUnits[strings.ToUpper(m[3])]
	if !ok {
		s.errorf(vn, "%s: unknown unit %q in %s: want KB, MB, GB or TB", k, m[3], quote(v.Value))
		return 0, false
	}
	if m[1] == "-" {
		s.errorf(vn, "%s: must not be negative, got %s", k, v.Value)
		return 0, false
	}
	n, err := strconv.ParseFloat(m[2], 64)
	if err != nil {
		return bad()
	}
	mb := math.Ceil(n * unit)
	if mb > maxSizeMB {
		s.errorf(vn, "%s: %s is too large", k, v.Value)
		return 0, false
	}
	return int64(mb), true
}
