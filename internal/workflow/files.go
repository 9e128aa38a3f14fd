package workflow

import (
	"path"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// inputFields are the keys of an input given as a mapping. Planned
// sources (named files, URLs, archives) will be added here.
var inputFields = []string{"local", "buffer"}

// parseInputs reads "inputs": sandbox name -> source.
func parseInputs(s scope, k string, vn *yaml.Node, t *taskSpec) {
	v := s.p.deref(vn)
	if isNull(v) {
		return
	}
	if v.Kind != yaml.MappingNode {
		s.errorf(vn, "%s: want a mapping of sandbox names to sources, got %s", k, describe(v))
		return
	}
	seen := map[string]string{}
	for _, e := range s.entries(v) {
		name, ok := s.sandboxName("input", e)
		if !ok {
			continue
		}
		if prev, dup := seen[name]; dup {
			s.errorf(e.kn, "input names %s and %s are the same file", quote(prev), quote(e.key))
			continue
		}
		seen[name] = e.key
		in, ok := s.inputSource(e)
		if !ok {
			continue
		}
		in.Name = name
		t.inputs = append(t.inputs, in)
	}
}

// inputSource reads the source of one input: a client path, or a mapping
// with "local" or "buffer".
func (s scope) inputSource(e entry) (inputSpec, bool) {
	in := inputSpec{Input: Input{Producer: -1}, node: e.value}
	is := scope{p: s.p, prefix: s.prefix + "input " + quote(e.key) + ": "}
	v := s.p.deref(e.value)
	switch {
	case v.Kind == yaml.ScalarNode && !isNull(v):
		local, ok := is.clientPath("", e.value)
		in.Local, in.path = local, v.Value
		return in, ok
	case v.Kind != yaml.MappingNode:
		is.errorf(e.value, "want a path or a mapping with %s, got %s", join(inputFields), describe(v))
		return in, false
	}
	var local, buffer *entry
	unknown := false
	fields := is.entries(v)
	for i, f := range fields {
		switch f.key {
		case "local":
			local = &fields[i]
		case "buffer":
			buffer = &fields[i]
		default:
			is.unknown(f, inputFields)
			unknown = true
		}
	}
	switch {
	case local != nil && buffer != nil:
		is.errorf(e.value, "want only one of %s", join(inputFields))
		return in, false
	case local != nil:
		p, ok := is.clientPath("local: ", local.value)
		in.Local, in.node, in.path = p, local.value, s.p.deref(local.value).Value
		return in, ok
	case buffer != nil:
		return in, is.buffer(buffer.value, &in.Input)
	default:
		if !unknown {
			is.errorf(e.value, "want one of %s", join(inputFields))
		}
		return in, false
	}
}

// buffer reads inline contents: a string, or !!binary base64 data.
func (s scope) buffer(vn *yaml.Node, in *Input) bool {
	v := s.p.deref(vn)
	if v.Kind != yaml.ScalarNode || isNull(v) {
		s.errorf(vn, "buffer: want a string, got %s", describe(v))
		return false
	}
	text := v.Value
	if v.ShortTag() == "!!binary" {
		if err := v.Decode(&text); err != nil {
			s.errorf(vn, "buffer: invalid base64 data")
			return false
		}
	}
	in.Buffer = []byte(text)
	return true
}

// parseOutputs reads "outputs": sandbox name -> client path.
func parseOutputs(s scope, k string, vn *yaml.Node, t *taskSpec) {
	v := s.p.deref(vn)
	if isNull(v) {
		return
	}
	if v.Kind != yaml.MappingNode {
		s.errorf(vn, "%s: want a mapping of sandbox names to paths, got %s", k, describe(v))
		return
	}
	seen := map[string]string{}
	for _, e := range s.entries(v) {
		name, ok := s.sandboxName("output", e)
		if !ok {
			continue
		}
		if prev, dup := seen[name]; dup {
			s.errorf(e.kn, "output names %s and %s are the same file", quote(prev), quote(e.key))
			continue
		}
		seen[name] = e.key
		outScope := scope{p: s.p, prefix: s.prefix + "output " + quote(e.key) + ": "}
		local, ok := outScope.clientPath("", e.value)
		if !ok {
			continue
		}
		t.outputs = append(t.outputs, outputSpec{
			Output: Output{Name: name, Local: local},
			node:   e.value,
			path:   s.p.deref(e.value).Value,
		})
	}
}

// sandboxName checks the key of an input or output and returns it clean.
// A name must be a relative path that stays inside the sandbox.
func (s scope) sandboxName(kind string, e entry) (string, bool) {
	name := e.key
	escapes := name == "" || strings.ContainsRune(name, 0) || path.IsAbs(name)
	for _, elem := range strings.Split(name, "/") {
		escapes = escapes || elem == ".."
	}
	if escapes {
		s.errorf(e.kn, "%s name %s escapes the sandbox", kind, quote(name))
		return "", false
	}
	clean := path.Clean(name)
	if clean == "." {
		s.errorf(e.kn, "%s name %s does not name a file in the sandbox", kind, quote(name))
		return "", false
	}
	return clean, true
}

// clientPath reads a client path and returns it absolute and clean,
// resolving a relative path against the workflow's directory. The label
// prefixes messages, as in "local: ".
func (s scope) clientPath(label string, vn *yaml.Node) (string, bool) {
	v := s.p.deref(vn)
	if v.Kind != yaml.ScalarNode || isNull(v) {
		s.errorf(vn, "%swant a path, got %s", label, describe(v))
		return "", false
	}
	p := v.Value
	switch {
	case strings.TrimSpace(p) == "":
		s.errorf(vn, "%spath must not be empty", label)
		return "", false
	case strings.ContainsRune(p, 0):
		s.errorf(vn, "%spath contains a NUL byte", label)
		return "", false
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(s.p.dir, p)
	}
	return filepath.Clean(p), true
}

// parseEnv reads "env": variable name -> value.
func parseEnv(s scope, k string, vn *yaml.Node, t *taskSpec) {
	v := s.p.deref(vn)
	if isNull(v) {
		t.env = set(map[string]string{})
		return
	}
	if v.Kind != yaml.MappingNode {
		s.errorf(vn, "%s: want a mapping of variable names to values, got %s", k, describe(v))
		return
	}
	env := map[string]string{}
	for _, e := range s.entries(v) {
		if e.key == "" || strings.ContainsAny(e.key, "=\x00") {
			s.errorf(e.kn, "%s: invalid variable name %s", k, quote(e.key))
			continue
		}
		val, ok := s.str(k+" "+quote(e.key), e.value)
		if !ok {
			continue
		}
		if strings.ContainsRune(val, 0) {
			s.errorf(e.value, "%s %s: value contains a NUL byte", k, quote(e.key))
			continue
		}
		env[e.key] = val
	}
	t.env = set(env)
}
