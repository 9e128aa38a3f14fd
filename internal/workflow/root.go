package workflow

import (
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// topFields are the keys a workflow file may have at its top level.
var topFields = []string{"version", "name", "defaults", "files", "tasks", "libraries", "calls", "prune_depth"}

// parseRoot builds the workflow from the document's root node.
func (p *parser) parseRoot(rn *yaml.Node) *Workflow {
	top := scope{p: p}
	root := p.deref(rn)
	if root.Kind != yaml.MappingNode {
		top.errorf(rn, "want a mapping with a %q list, got %s", "tasks", describe(root))
		return nil
	}
	w := &Workflow{Name: defaultName(p.file), Dir: p.dir}
	var defaults taskSpec
	var specs []*taskSpec
	var files []*fileSpec
	var libs []*librarySpec
	var calls []*callSpec
	haveTasks := false
	depth := 0 // "prune_depth": of the temp files without their own
	for _, e := range top.entries(root) {
		switch e.key {
		case "version":
			if v, ok := top.integer(e.key, e.value); ok && v != 1 {
				top.errorf(e.value, "version: unsupported version %d (want 1)", v)
			}
		case "name":
			if s, ok := top.str(e.key, e.value); ok {
				if strings.TrimSpace(s) == "" {
					top.errorf(e.value, "name: must not be empty")
				} else {
					w.Name = s
				}
			}
		case "defaults":
			p.parseDefaults(e.value, &defaults)
		case "files":
			files = p.parseFiles(e.value)
		case "tasks":
			haveTasks = true
			specs = p.parseTasks(e.value)
		case "libraries":
			libs = p.parseLibraries(e.value)
		case "calls":
			calls = p.parseCalls(e.value)
		case "prune_depth":
			depth, _ = top.pruneDepth(&e)
		default:
			top.unknown(e, topFields)
		}
	}
	switch {
	case p.libraries && len(libs) == 0:
		top.errorf(rn, "missing required field %q: a library file lists the libraries to install", "libraries")
	case !p.libraries && !haveTasks && len(calls) == 0:
		top.errorf(rn, "missing required field %q", "tasks")
	}
	ft := p.linkFiles(files)
	p.link(w, specs, libs, calls, &defaults, ft)
	for _, f := range files {
		if f.Kind == Temp && !f.Keep && !f.depthSet {
			f.PruneDepth = depth
		}
		w.Files = append(w.Files, f.File)
	}
	return w
}

// defaultName is the workflow name for a file without a "name": its base
// name without the extension.
func defaultName(file string) string {
	base := filepath.Base(file)
	if ext := filepath.Ext(base); ext != base {
		base = strings.TrimSuffix(base, ext)
	}
	if base == "" || base == "." || base == string(filepath.Separator) {
		return "workflow"
	}
	return base
}

// parseDefaults reads the "defaults" mapping into d.
func (p *parser) parseDefaults(vn *yaml.Node, d *taskSpec) {
	s := scope{p: p, prefix: "defaults: "}
	v := p.deref(vn)
	if v.Kind != yaml.MappingNode {
		if !isNull(v) {
			s.errorf(vn, "want a mapping, got %s", describe(v))
		}
		return
	}
	var known []string
	for _, f := range taskFields {
		if f.defaultable {
			known = append(known, f.name)
		}
	}
	for _, e := range s.entries(v) {
		f := lookupField(e.key)
		switch {
		case f == nil:
			s.unknown(e, known)
		case !f.defaultable:
			s.errorf(e.kn, "field %q cannot have a default", e.key)
		default:
			f.parse(s, e.key, e.value, d)
		}
	}
}

// parseTasks reads the "tasks" list.
func (p *parser) parseTasks(vn *yaml.Node) []*taskSpec {
	s := scope{p: p}
	v := p.deref(vn)
	if v.Kind != yaml.SequenceNode {
		s.errorf(vn, "tasks: want a list of tasks, got %s", describe(v))
		return nil
	}
	if len(v.Content) == 0 {
		s.errorf(vn, "tasks: want at least one task")
		return nil
	}
	specs := make([]*taskSpec, 0, len(v.Content))
	for i, tn := range v.Content {
		specs = append(specs, p.parseTask(i, tn))
	}
	return specs
}

// isNull reports whether n is an empty or null scalar.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}
