package workflow

import (
	"regexp"

	"go.yaml.in/yaml/v3"
)

// validFunction matches function names as the library protocol and the
// wire allow them.
var validFunction = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$`)

// callSpec is a call as written in the file.
type callSpec struct {
	taskSpec     // name, after, retries, retry_on_error, time_limit, unplaceable_timeout and priority, read as a task's
	library      opt[string]
	libraryNode  *yaml.Node
	function     opt[string]
	args         []byte
	argsNode     *yaml.Node
	argsFile     string
	argsFilePath string // as written
	argsFileNode *yaml.Node
	output       outputSpec // Local is "" when the result is not kept
}

// callFields are the fields of a call, in the order of the docs.
var callFields = []specField[*callSpec]{
	{"name", noField[*callSpec]},
	{"library", func(s scope, k string, v *yaml.Node, c *callSpec) {
		if x, ok := s.str(k, v); ok {
			c.library, c.libraryNode = set(x), v
		} else {
			c.library = set("") // reported; do not also report it missing
		}
	}},
	{"function", parseFunction},
	{"args", func(s scope, k string, v *yaml.Node, c *callSpec) {
		c.argsNode = v
		c.args, _ = s.jsonArgs(k, v)
	}},
	{"args_file", func(s scope, k string, v *yaml.Node, c *callSpec) {
		c.argsFileNode = v
		c.argsFile, _ = s.clientPath(k+": ", v)
		c.argsFilePath = s.p.deref(v).Value
	}},
	{"output", func(s scope, k string, v *yaml.Node, c *callSpec) {
		if local, ok := s.clientPath(k+": ", v); ok {
			c.output = outputSpec{Output: Output{Local: local}, node: v, path: s.p.deref(v).Value}
		}
	}},
	sharedField[*callSpec]("after"),
	sharedField[*callSpec]("retries"),
	sharedField[*callSpec]("retry_on_error"),
	sharedField[*callSpec]("time_limit"),
	sharedField[*callSpec]("unplaceable_timeout"),
	sharedField[*callSpec]("priority"),
	sharedField[*callSpec]("deterministic"),
	sharedField[*callSpec]("effects"),
}

// parseFunction reads a call's "function".
func parseFunction(s scope, k string, v *yaml.Node, c *callSpec) {
	x, ok := s.str(k, v)
	if !ok {
		c.function = set("") // reported; do not also report it missing
		return
	}
	if !validFunction.MatchString(x) {
		s.errorf(v, "%s: invalid function name %s: want 1 to 128 of A-Z a-z 0-9 _ . - and no dot first", k, quote(x))
	}
	c.function = set(x)
}

// parseCalls reads the "calls" list.
func (p *parser) parseCalls(vn *yaml.Node) []*callSpec {
	return parseList(p, "calls", "calls", vn, p.parseCall)
}

// parseCall reads the call at index i of the "calls" list.
func (p *parser) parseCall(i int, n *yaml.Node) *callSpec {
	c := &callSpec{taskSpec: taskSpec{item: item{kind: "call", node: n, index: i}}}
	m, s, ok := p.begin(&c.item, n)
	if !ok {
		return c
	}
	parseFields(s, m, callFields, c)
	if !c.library.ok {
		s.errorf(n, "missing required field %q", "library")
	}
	if !c.function.ok {
		s.errorf(n, "missing required field %q", "function")
	}
	if c.argsNode != nil && c.argsFileNode != nil {
		s.errorf(c.argsFileNode, "args_file: want only one of %s", join([]string{"args", "args_file"}))
	}
	return c
}

// build returns the call as the Workflow holds it. After and AfterCalls
// are filled in by linkCalls.
func (c *callSpec) build() Call {
	return Call{
		Name:          c.name,
		Line:          c.line(),
		Library:       c.library.val,
		Function:      c.function.val,
		Args:          c.args,
		ArgsFile:      c.argsFile,
		Output:        c.output.Local,
		Retries:       c.retries.or(set(DefaultRetries)).val,
		RetryOnError:  c.retryOnError.val,
		TimeLimit:     c.timeLimit.val,
		Unplaceable:   unplaceable(c.unplaceable),
		Priority:      c.priority.val,
		Deterministic: c.determinism.val,
		Effects:       c.effects.val,
	}
}
