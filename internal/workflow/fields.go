package workflow

import (
	"slices"

	"go.yaml.in/yaml/v3"
)

// specField is a field of a library or a call. The fields they share
// with tasks are read by the task's parsers, into the taskSpec that they
// embed.
type specField[T any] struct {
	name  string
	parse func(s scope, key string, v *yaml.Node, spec T)
}

// taskHolder is a library or call spec: it embeds a taskSpec.
type taskHolder interface{ task() *taskSpec }

// task returns t itself; libraries and calls get it by embedding.
func (t *taskSpec) task() *taskSpec { return t }

// sharedField returns the task field called name, reading into the
// taskSpec of a library or call.
func sharedField[T taskHolder](name string) specField[T] {
	f := lookupField(name)
	return specField[T]{name, func(s scope, k string, v *yaml.Node, spec T) { f.parse(s, k, v, spec.task()) }}
}

// noField is the parser of "name", which begin reads first.
func noField[T any](scope, string, *yaml.Node, T) {}

// parseFields reads the fields of mapping m into spec, reporting keys
// that are not among fields.
func parseFields[T any](s scope, m *yaml.Node, fields []specField[T], spec T) {
	for _, e := range s.entries(m) {
		i := slices.IndexFunc(fields, func(f specField[T]) bool { return f.name == e.key })
		if i < 0 {
			names := make([]string, len(fields))
			for j, f := range fields {
				names[j] = f.name
			}
			s.unknown(e, names)
			continue
		}
		fields[i].parse(s, e.key, e.value, spec)
	}
}

// parseList reads a list section such as "libraries": each element with
// parse. Null is the empty list.
func parseList[T any](p *parser, section, what string, vn *yaml.Node, parse func(i int, n *yaml.Node) T) []T {
	v := p.deref(vn)
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		p.errorf(vn, "%s: want a list of %s, got %s", section, what, describe(v))
		return nil
	}
	out := make([]T, 0, len(v.Content))
	for i, n := range v.Content {
		out = append(out, parse(i, n))
	}
	return out
}
