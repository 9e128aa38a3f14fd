package workflow

import (
	"path"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// inputFields are the keys of an input given as a mapping; an input has
// exactly one of them.
var inputFields = []string{"local", "buffer", "file"}

// outputFields are the keys of an output given as a mapping.
var outputFields = []string{"file"}

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
// with "local", "buffer" or "file".
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
	var source *entry
	unknown, several := false, false
	fields := is.entries(v)
	for i, f := range fields {
		switch {
		case !slices.Contains(inputFields, f.key):
			is.unknown(f, inputFields)
			unknown = true
		case source != nil:
			several = true
		default:
			source = &fields[i]
		}
	}
	var ok bool
	switch {
	case several:
		is.errorf(e.value, "want only one of %s", join(inputFields))
	case source == nil:
		if !unknown {
			is.errorf(e.value, "want one of %s", join(inputFields))
		}
	case source.key == "local":
		in.Local, ok = is.clientPath("local: ", source.value)
		in.node, in.path = source.value, s.p.deref(source.value).Value
	case source.key == "buffer":
		in.Buffer, ok = is.buffer(source.value)
	case source.key == "file":
		in.File, ok = is.fileName(source.key, source.value)
		in.node = source.value
	}
	return in, ok
}

// buffer reads inline contents: a string, or !!binary base64 data.
func (s scope) buffer(vn *yaml.Node) ([]byte, bool) {
	v := s.p.deref(vn)
	if v.Kind != yaml.ScalarNode || isNull(v) {
		s.errorf(vn, "buffer: want a string, got %s", describe(v))
		return nil, false
	}
	text := v.Value
	if v.ShortTag() == "!!binary" {
		if err := v.Decode(&text); err != nil {
			s.errorf(vn, "buffer: invalid base64 data")
			return nil, false
		}
	}
	return []byte(text), true
}

// parseOutputs reads "outputs": sandbox name -> client path or
// {file: NAME}.
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
		if out, ok := s.outputDest(e); ok {
			out.Name = name
			t.outputs = append(t.outputs, out)
		}
	}
}

// outputDest reads where one output goes: a client path, or a mapping
// with "file" that names a temp file.
func (s scope) outputDest(e entry) (outputSpec, bool) {
	out := outputSpec{node: e.value}
	ds := scope{p: s.p, prefix: s.prefix + "output " + quote(e.key) + ": "}
	v := s.p.deref(e.value)
	switch {
	case v.Kind == yaml.ScalarNode && !isNull(v):
		var ok bool
		out.Local, ok = ds.clientPath("", e.value)
		out.path = v.Value
		return out, ok
	case v.Kind != yaml.MappingNode:
		ds.errorf(e.value, "want a path or a mapping with %s, got %s", join(outputFields), describe(v))
		return out, false
	}
	var file *entry
	unknown := false
	fields := ds.entries(v)
	for i, f := range fields {
		if f.key != "file" {
			ds.unknown(f, outputFields)
			unknown = true
			continue
		}
		file = &fields[i]
	}
	if file == nil {
		if !unknown {
			ds.errorf(e.value, "missing required field %q", "file")
		}
		return out, false
	}
	var ok bool
	out.File, ok = ds.fileName(file.key, file.value)
	out.node = file.value
	return out, ok
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
