package workflow

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// taskSpec is a task as written in the file, before defaults are applied
// and dependencies resolved. The "defaults" section is read into one too.
type taskSpec struct {
	item
	command opt[string]
	inputs  []inputSpec
	outputs []outputSpec
	after   []ref
	settings
}

// inputSpec is an input with the node that gave it, for errors.
type inputSpec struct {
	Input
	node *yaml.Node // value node, or key node when the name is wrong
	path string     // the client path as written
}

// outputSpec is an output with the node that gave it, for errors.
type outputSpec struct {
	Output
	node *yaml.Node
	path string
}

// ref is a task name in "after".
type ref struct {
	name string
	node *yaml.Node
}

// settings are the task fields that "defaults" may set.
type settings struct {
	cores        opt[float64]
	memoryMB     opt[int64]
	diskMB       opt[int64]
	gpus         opt[int]
	retries      opt[int]
	retryOnError opt[bool]
	timeLimit    opt[time.Duration]
	unplaceable  opt[time.Duration] // 0: wait for ever
	priority     opt[int]
	category     opt[string]
	tags         opt[[]string]
	env          opt[map[string]string]
	determinism  opt[bool]
	effects      opt[string] // one of Effects
	keep         opt[string] // as Task.Keep
}

// Effects are the values of "effects", the first the default.
var Effects = []string{"none", "idempotent", "at-most-once"}

// ParseKeep reads a task's "keep": lineage, replicate N (2 to 64),
// checkpoint sync, or checkpoint async (also plain checkpoint). It
// returns the value as Task.Keep holds it.
func ParseKeep(x string) (string, error) {
	f := strings.Fields(x)
	switch {
	case len(f) == 1 && f[0] == "lineage":
		return "lineage", nil
	case len(f) == 1 && f[0] == "checkpoint":
		return "checkpoint async", nil
	case len(f) == 2 && f[0] == "checkpoint" && (f[1] == "sync" || f[1] == "async"):
		return "checkpoint " + f[1], nil
	case len(f) == 2 && f[0] == "replicate":
		n, err := strconv.Atoi(f[1])
		if err != nil || n < 2 || n > 64 {
			return "", fmt.Errorf("replicate %s: want a number of copies from 2 to 64", f[1])
		}
		return "replicate " + strconv.Itoa(n), nil
	}
	return "", fmt.Errorf("want lineage, replicate N, checkpoint sync or checkpoint async, got %q", x)
}

// opt is a value that may be unset.
type opt[T any] struct {
	val T
	ok  bool
}

// set returns an opt holding v.
func set[T any](v T) opt[T] { return opt[T]{val: v, ok: true} }

// or returns o if it is set, else d.
func (o opt[T]) or(d opt[T]) opt[T] {
	if o.ok {
		return o
	}
	return d
}

// field describes one task field.
type field struct {
	name        string
	defaultable bool // may appear in "defaults"
	parse       func(s scope, key string, v *yaml.Node, t *taskSpec)
}

// taskFields are the fields of a task, in the order of the docs. "name"
// is read before the others, by parseTask.
var taskFields = []field{
	{"name", false, func(scope, string, *yaml.Node, *taskSpec) {}},
	{"command", false, parseCommand},
	{"inputs", false, parseInputs},
	{"outputs", false, parseOutputs},
	{"env", true, parseEnv},
	{"cores", true, func(s scope, k string, v *yaml.Node, t *taskSpec) {
		if x, ok := s.cores(k, v); ok {
			t.cores = set(x)
		}
	}},
	{"memory", true, func(s scope, k string, v *yaml.Node, t *taskSpec) {
		if x, ok := s.size(k, v); ok {
			t.memoryMB = set(x)
		}
	}},
	{"disk", true, func(s scope, k string, v *yaml.Node, t *taskSpec) {
		if x, ok := s.size(k, v); ok {
			t.diskMB = set(x)
		}
	}},
	{"gpus", true, func(s scope, k string, v *yaml.Node, t *taskSpec) {
		if x, ok := s.count(k, v); ok {
			t.gpus = set(x)
		}
	}},
	{"retries", true, func(s scope, k string, v *yaml.Node, t *taskSpec) {
		if x, ok := s.count(k, v); ok {
			t.retries = set(x)
		}
	}},
	{"retry_on_error", true, func(s scope, k string, v *yaml.Node, t *taskSpec) {
		if x, ok := s.boolean(k, v); ok {
			t.retryOnError = set(x)
		}
	}},
	{"time_limit", true, func(s scope, k string, v *yaml.Node, t *taskSpec) {
		if x, ok := s.duration(k, v); ok {
			t.timeLimit = set(x)
		}
	}},
	{"unplaceable_timeout", true, func(s scope, k string, v *yaml.Node, t *taskSpec) {
		if x, ok := s.duration(k, v); ok {
			t.unplaceable = set(x)
		}
	}},
	{"priority", true, func(s scope, k string, v *yaml.Node, t *taskSpec) {
		if x, ok := s.integer(k, v); ok {
			t.priority = set(x)
		}
	}},
	{"category", true, func(s scope, k string, v *yaml.Node, t *taskSpec) {
		if x, ok := s.str(k, v); ok {
			t.category = set(x)
		}
	}},
	{"tags", true, func(s scope, k string, v *yaml.Node, t *taskSpec) {
		if x, ok := s.stringList(k, v); ok {
			t.tags = set(x)
		}
	}},
	{"deterministic", true, func(s scope, k string, v *yaml.Node, t *taskSpec) {
		if x, ok := s.boolean(k, v); ok {
			t.determinism = set(x)
		}
	}},
	{"effects", true, func(s scope, k string, v *yaml.Node, t *taskSpec) {
		if x, ok := s.oneOf(k, v, Effects); ok {
			t.effects = set(x)
		}
	}},
	{"keep", true, func(s scope, k string, v *yaml.Node, t *taskSpec) {
		if x, ok := s.str(k, v); ok {
			if keep, err := ParseKeep(x); err != nil {
				s.errorf(v, "%s: %v", k, err)
			} else {
				t.keep = set(keep)
			}
		}
	}},
	{"after", false, parseAfter},
}

// fieldNames lists the names of taskFields, for suggestions.
var fieldNames = func() []string {
	names := make([]string, len(taskFields))
	for i, f := range taskFields {
		names[i] = f.name
	}
	return names
}()

// lookupField returns the task field called name, or nil.
func lookupField(name string) *field {
	for i := range taskFields {
		if taskFields[i].name == name {
			return &taskFields[i]
		}
	}
	return nil
}

// validName matches task names.
var validName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// parseTask reads the task at index i of the "tasks" list.
func (p *parser) parseTask(i int, tn *yaml.Node) *taskSpec {
	t := &taskSpec{item: item{kind: "task", node: tn, index: i}}
	m, s, ok := p.begin(&t.item, tn)
	if !ok {
		return t
	}
	for _, e := range s.entries(m) {
		f := lookupField(e.key)
		if f == nil {
			s.unknown(e, fieldNames)
			continue
		}
		f.parse(s, e.key, e.value, t)
	}
	if t.nameNode == nil {
		s.errorf(tn, "missing required field %q", "name")
	}
	if !t.command.ok {
		s.errorf(tn, "missing required field %q", "command")
	}
	return t
}

// parseCommand reads "command".
func parseCommand(s scope, k string, v *yaml.Node, t *taskSpec) {
	c, ok := s.str(k, v)
	if !ok {
		t.command = set("") // reported; do not also report it missing
		return
	}
	if strings.TrimSpace(c) == "" {
		s.errorf(v, "command: must not be empty")
	}
	if strings.ContainsRune(c, 0) {
		s.errorf(v, "command: contains a NUL byte")
	}
	t.command = set(c)
}

// parseAfter reads "after": a task name or a list of them. Null is the
// empty list.
func parseAfter(s scope, k string, vn *yaml.Node, t *taskSpec) {
	v := s.p.deref(vn)
	if isNull(v) {
		return
	}
	if v.Kind == yaml.ScalarNode && !isNull(v) {
		t.after = append(t.after, ref{name: v.Value, node: vn})
		return
	}
	if v.Kind != yaml.SequenceNode {
		s.errorf(vn, "%s: want a task name or a list of them, got %s", k, describe(v))
		return
	}
	for _, en := range v.Content {
		if name, ok := s.str(k, en); ok {
			t.after = append(t.after, ref{name: name, node: en})
		}
	}
}
