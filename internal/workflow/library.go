package workflow

import (
	"time"

	"go.yaml.in/yaml/v3"
)

// libraryModes are the values of a library's "mode".
var libraryModes = []string{"direct", "fork"}

// librarySpec is a library as written in the file.
type librarySpec struct {
	taskSpec     // name, command, inputs, env and resources, read as a task's
	slots        opt[int]
	mode         opt[string]
	eager        opt[int]
	eagerNode    *yaml.Node
	maxInstances opt[int]
	startTimeout opt[time.Duration]
}

// libraryFields are the fields of a library, in the order of the docs.
var libraryFields = []specField[*librarySpec]{
	{"name", noField[*librarySpec]},
	sharedField[*librarySpec]("command"),
	sharedField[*librarySpec]("inputs"),
	sharedField[*librarySpec]("env"),
	sharedField[*librarySpec]("cores"),
	sharedField[*librarySpec]("memory"),
	sharedField[*librarySpec]("disk"),
	sharedField[*librarySpec]("gpus"),
	{"slots", func(s scope, k string, v *yaml.Node, l *librarySpec) {
		if x, ok := s.integer(k, v); ok && x < 1 {
			s.errorf(v, "%s: must be at least 1, got %d", k, x)
		} else if ok {
			l.slots = set(x)
		}
	}},
	{"mode", func(s scope, k string, v *yaml.Node, l *librarySpec) {
		if x, ok := s.oneOf(k, v, libraryModes); ok {
			l.mode = set(x)
		}
	}},
	{"eager", func(s scope, k string, v *yaml.Node, l *librarySpec) {
		if x, ok := s.count(k, v); ok {
			l.eager, l.eagerNode = set(x), v
		}
	}},
	{"max_instances", func(s scope, k string, v *yaml.Node, l *librarySpec) {
		if x, ok := s.count(k, v); ok {
			l.maxInstances = set(x)
		}
	}},
	{"start_timeout", func(s scope, k string, v *yaml.Node, l *librarySpec) {
		if x, ok := s.duration(k, v); ok {
			l.startTimeout = set(x)
		}
	}},
}

// parseLibraries reads the "libraries" list.
func (p *parser) parseLibraries(vn *yaml.Node) []*librarySpec {
	return parseList(p, "libraries", "libraries", vn, p.parseLibrary)
}

// parseLibrary reads the library at index i of the "libraries" list.
func (p *parser) parseLibrary(i int, n *yaml.Node) *librarySpec {
	l := &librarySpec{taskSpec: taskSpec{item: item{kind: "library", node: n, index: i}}}
	m, s, ok := p.begin(&l.item, n)
	if !ok {
		return l
	}
	parseFields(s, m, libraryFields, l)
	if l.nameNode == nil {
		s.errorf(n, "missing required field %q", "name")
	}
	if !l.command.ok {
		s.errorf(n, "missing required field %q", "command")
	}
	if l.eager.ok && l.maxInstances.ok && l.maxInstances.val > 0 && l.eager.val > l.maxInstances.val {
		s.errorf(l.eagerNode, "eager: %d instances is more than max_instances (%d)", l.eager.val, l.maxInstances.val)
	}
	return l
}

// build returns the library as the Workflow holds it. Inputs and After
// are filled in by linkLibraries.
func (l *librarySpec) build() Library {
	return Library{
		Name:         l.name,
		Line:         l.line(),
		Command:      l.command.val,
		Env:          mergeEnv(nil, l.env.val),
		Cores:        l.cores.val,
		MemoryMB:     l.memoryMB.val,
		DiskMB:       l.diskMB.val,
		GPUs:         l.gpus.val,
		Slots:        l.slots.val,
		Mode:         l.mode.val,
		Eager:        l.eager.val,
		MaxInstances: l.maxInstances.val,
		StartTimeout: l.startTimeout.val,
	}
}
