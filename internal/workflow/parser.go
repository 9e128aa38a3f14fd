package workflow

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxExpanded bounds how many nodes the aliases of one file stand for, so
// that aliases cannot make a small file expensive to walk (a "billion
// laughs" file). Nodes written out in the file do not count: a large plain
// file costs in proportion to its size.
const maxExpanded = 1_000_000

// tooComplex is the panic value that stops a walk past maxExpanded, at the
// alias that crossed it.
type tooComplex struct{ at *yaml.Node }

// parser holds the state of one Parse call.
type parser struct {
	file     string // name for error messages
	dir      string // absolute base for relative client paths
	errs     ErrorList
	expanded int                // nodes that aliases stood for so far, see maxExpanded
	sizes    map[*yaml.Node]int // nodes under an anchored node, aliases expanded
	// libraries: the file installs libraries (trellis library install),
	// so it needs no tasks or calls but at least one library.
	libraries bool
}

// maxCollected bounds how many problems are kept before sorting; the
// list is cut to maxErrors after that.
const maxCollected = 1000

// errorf records a problem at n's position; n may be nil.
func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	if len(p.errs) >= maxCollected {
		return
	}
	e := &Error{File: p.file, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Col = n.Line, n.Column
	}
	p.errs = append(p.errs, e)
}

// deref returns the node that n stands for, following aliases. Problems
// are still reported at n, where the value is used.
func (p *parser) deref(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		if p.expanded += p.size(n.Alias, 0); p.expanded > maxExpanded {
			panic(tooComplex{at: n})
		}
	}
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// size counts the nodes n stands for, with its aliases expanded, up to
// just past maxExpanded (the count of nested aliases grows exponentially).
func (p *parser) size(n *yaml.Node, depth int) int {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		if depth > 100 {
			return maxExpanded + 1 // an alias chain this deep is no workflow
		}
		return p.size(n.Alias, depth+1)
	}
	if s, ok := p.sizes[n]; ok {
		return s
	}
	s := 1
	for _, c := range n.Content {
		if s += p.size(c, depth+1); s > maxExpanded {
			s = maxExpanded + 1
			break
		}
	}
	if p.sizes == nil {
		p.sizes = make(map[*yaml.Node]int)
	}
	p.sizes[n] = s
	return s
}

// scope reports problems with a prefix that says where they are, such as
// `task "count": `.
type scope struct {
	p      *parser
	prefix string
}

// errorf records a problem at n with the scope's prefix.
func (s scope) errorf(n *yaml.Node, format string, args ...any) {
	s.p.errorf(n, s.prefix+format, args...)
}

// entry is one key/value pair of a mapping.
type entry struct {
	key   string
	kn    *yaml.Node // key node, for positions
	value *yaml.Node // value node as written (may be an alias)
}

// entries returns the pairs of mapping m in file order, reporting and
// leaving out keys that are not scalars, merge keys and repeated keys.
func (s scope) entries(m *yaml.Node) []entry {
	var out []entry
	first := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn := m.Content[i]
		k := s.p.deref(kn)
		if k.Kind != yaml.ScalarNode {
			s.errorf(kn, "want a string key, got %s", describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			s.errorf(kn, "merge keys (<<) are not supported")
			continue
		}
		if line, dup := first[k.Value]; dup {
			s.errorf(kn, "duplicate key %q (first at line %d)", k.Value, line)
			continue
		}
		first[k.Value] = kn.Line
		out = append(out, entry{key: k.Value, kn: kn, value: m.Content[i+1]})
	}
	return out
}

// unknown reports a key that is not one of known, suggesting the
// closest known key.
func (s scope) unknown(e entry, known []string) {
	s.errorf(e.kn, "unknown field %q%s", e.key, didYouMean(e.key, known))
}

// describe names what a node holds, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "nothing"
		}
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		q := strconv.Quote(v)
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 && n.ShortTag() == "!!str" {
			return "the string " + q
		}
		return q
	case yaml.AliasNode:
		return "an unknown alias"
	default:
		return "nothing"
	}
}

// quote quotes s for a message, shortening it if it is long.
func quote(s string) string {
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return strconv.Quote(s)
}

// join lists names for a message: `"a", "b" or "c"`.
func join(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	if len(q) < 2 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
