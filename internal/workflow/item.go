package workflow

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// item is what tasks, libraries and calls share in the file: a place in
// their list, a name, and the way messages name them.
type item struct {
	kind      string     // "task", "library" or "call"
	node      *yaml.Node // the item's mapping, as written
	index     int        // place in its list
	name      string
	validName bool
	nameNode  *yaml.Node
}

// label names the item in messages: `task "name"`, or `task #N` when it
// has no valid name.
func (it *item) label() string {
	if it.validName {
		return fmt.Sprintf("%s %q", it.kind, it.name)
	}
	return fmt.Sprintf("%s #%d", it.kind, it.index+1)
}

// scope returns the scope for messages about the item.
func (it *item) scope(p *parser) scope {
	return scope{p: p, prefix: it.label() + ": "}
}

// line is the line of the item in the file.
func (it *item) line() int {
	if it.node == nil {
		return 0
	}
	return it.node.Line
}

// begin checks that the item is a mapping and reads its name before its
// other fields, so that every message can use it. It returns the mapping
// and the scope for messages, or ok false when the item is not a mapping.
func (p *parser) begin(it *item, n *yaml.Node) (m *yaml.Node, s scope, ok bool) {
	s = it.scope(p)
	m = p.deref(n)
	if m.Kind != yaml.MappingNode {
		s.errorf(n, "want a mapping, got %s", describe(m))
		return m, s, false
	}
	for j := 0; j+1 < len(m.Content); j += 2 {
		if k := p.deref(m.Content[j]); k.Kind == yaml.ScalarNode && k.Value == "name" {
			it.nameNode = m.Content[j+1]
			break
		}
	}
	if it.nameNode == nil {
		return m, s, true
	}
	name, good := s.str("name", it.nameNode)
	if !good {
		return m, s, true
	}
	it.name = name
	if problem := nameProblem(it.kind, name); problem != "" {
		s.errorf(it.nameNode, "invalid name %s: %s", quote(name), problem)
		return m, s, true
	}
	it.validName = true
	return m, it.scope(p), true
}

// nameProblem says what is wrong with name for an item of kind, or "".
// A library's name may not start with a dot, as names on the wire may not.
func nameProblem(kind, name string) string {
	if kind == "library" {
		if !validName.MatchString(name) || strings.HasPrefix(name, ".") {
			return "want 1 to 64 of A-Z a-z 0-9 _ . - and no dot first"
		}
		return ""
	}
	if !validName.MatchString(name) || strings.Trim(name, ".") == "" {
		return "want 1 to 64 of A-Z a-z 0-9 _ . - and not only dots"
	}
	return ""
}
