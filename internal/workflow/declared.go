package workflow

import (
	"net/url"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// fileKinds are the keys that give a declared file its kind; a file has
// exactly one of them.
var fileKinds = []string{"local", "buffer", "url", "unpack", "temp"}

// fileFields are the keys a declared file may have.
var fileFields = append(slices.Clone(fileKinds), "format", "cache", "replicas", "keep", "prune_depth")

// maxPruneDepth is the largest "prune_depth" (the core's MaxDepth).
const maxPruneDepth = 16

// cacheLevels are the values of "cache", shortest-lived first.
var cacheLevels = []string{"task", "workflow", "worker", "forever"}

// archiveFormats are the values of "format".
var archiveFormats = []string{"tar", "tar.gz", "zip"}

// urlSchemes are the schemes a URL file may have.
var urlSchemes = []string{"http", "https", "file"}

// fileSpec is a declared file with the nodes that gave it, for errors.
type fileSpec struct {
	File
	index     int        // place in the "files" section
	kn        *yaml.Node // the name
	valueNode *yaml.Node // the kind key's value: the path, URL or unpacked name
	path      string     // the client path as written, for Local
	depthSet  bool       // it has its own "prune_depth"
	// ok is false when the declaration itself has a problem; references
	// to it are then not checked further, to avoid follow-on messages.
	ok bool
}

// parseFiles reads the "files" section: file name -> declaration.
func (p *parser) parseFiles(vn *yaml.Node) []*fileSpec {
	s := scope{p: p, prefix: "files: "}
	v := p.deref(vn)
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.MappingNode {
		s.errorf(vn, "want a mapping of file names to files, got %s", describe(v))
		return nil
	}
	var files []*fileSpec
	for _, e := range s.entries(v) {
		files = append(files, p.parseFileDecl(len(files), e))
	}
	return files
}

// parseFileDecl reads the declaration of one file.
func (p *parser) parseFileDecl(i int, e entry) *fileSpec {
	f := &fileSpec{File: File{Name: e.key, Line: e.kn.Line}, index: i, kn: e.kn, ok: true}
	s := scope{p: p, prefix: "file " + quote(e.key) + ": "}
	if !validName.MatchString(e.key) {
		p.errorf(e.kn, "invalid file name %s: want 1 to 64 of A-Z a-z 0-9 _ . -", quote(e.key))
		f.ok = false
	}
	v := p.deref(e.value)
	if v.Kind != yaml.MappingNode {
		s.errorf(e.value, "want a mapping with one of %s, got %s", join(fileKinds), describe(v))
		f.ok = false
		return f
	}
	var kind, format, replicas, keep, depth *entry
	unknown := false
	fields := s.entries(v)
	for k, fe := range fields {
		switch fe.key {
		case "local", "buffer", "url", "unpack", "temp":
			if kind != nil {
				s.errorf(fe.kn, "want only one of %s, got %q and %q", join(fileKinds), kind.key, fe.key)
				f.ok = false
				continue
			}
			kind = &fields[k]
		case "format":
			format = &fields[k]
		case "replicas":
			replicas = &fields[k]
		case "keep":
			keep = &fields[k]
		case "prune_depth":
			depth = &fields[k]
		case "cache":
			c, ok := s.oneOf(fe.key, fe.value, cacheLevels)
			f.Cache, f.ok = c, f.ok && ok
		default:
			s.unknown(fe, fileFields)
			unknown = true
		}
	}
	if kind == nil {
		if !unknown {
			s.errorf(e.value, "want one of %s", join(fileKinds))
		}
		f.ok = false
	} else if !s.fileKind(kind, f) {
		f.ok = false
	}
	if format != nil {
		if f.Kind != 0 && f.Kind != Unpack {
			s.errorf(format.kn, "format: only unpacked files have a format")
			f.ok = false
		} else if fm, ok := s.oneOf(format.key, format.value, archiveFormats); ok {
			f.Format = fm
		} else {
			f.ok = false
		}
	}
	if replicas != nil {
		if f.Kind != 0 && f.Kind != Temp {
			s.errorf(replicas.kn, "replicas: only temp files have replicas")
			f.ok = false
		} else if n, ok := s.integer(replicas.key, replicas.value); !ok {
			f.ok = false
		} else if n < 1 {
			s.errorf(replicas.value, "replicas: must be at least 1, got %d", n)
			f.ok = false
		} else {
			f.Replicas = n
		}
	}
	if keep != nil {
		if f.Kind != 0 && f.Kind != Temp {
			s.errorf(keep.kn, "keep: only temp files are kept or pruned")
			f.ok = false
		} else if b, ok := s.boolean(keep.key, keep.value); !ok {
			f.ok = false
		} else {
			f.Keep = b
		}
	}
	if depth != nil {
		if f.Kind != 0 && f.Kind != Temp {
			s.errorf(depth.kn, "prune_depth: only temp files are pruned")
			f.ok = false
		} else if n, ok := s.pruneDepth(depth); !ok {
			f.ok = false
		} else {
			f.PruneDepth, f.depthSet = n, true
		}
	}
	if f.Keep && f.depthSet {
		s.errorf(depth.kn, "prune_depth: a file with keep: true is not pruned; remove one of them")
		f.ok = false
	}
	return f
}

// pruneDepth reads a "prune_depth": an integer from 0 to maxPruneDepth.
func (s scope) pruneDepth(e *entry) (int, bool) {
	n, ok := s.integer(e.key, e.value)
	if !ok {
		return 0, false
	}
	if n < 0 || n > maxPruneDepth {
		s.errorf(e.value, "prune_depth: want 0 to %d, got %d", maxPruneDepth, n)
		return 0, false
	}
	return n, true
}

// fileKind reads the kind key of a declaration and its value into f.
func (s scope) fileKind(kind *entry, f *fileSpec) bool {
	f.valueNode = kind.value
	v := s.p.deref(kind.value)
	var ok bool
	switch kind.key {
	case "local":
		f.Kind = Local
		f.Local, ok = s.clientPath("local: ", kind.value)
		f.path = v.Value
	case "buffer":
		f.Kind = Buffer
		f.Buffer, ok = s.buffer(kind.value)
	case "url":
		f.Kind = URL
		f.URL, ok = s.url(kind.value)
	case "unpack":
		f.Kind = Unpack
		f.Unpack, ok = s.fileName(kind.key, kind.value)
	case "temp":
		f.Kind = Temp
		var b bool
		if b, ok = s.boolean(kind.key, kind.value); ok && !b {
			s.errorf(kind.value, "temp: want true, got false")
			ok = false
		}
	}
	return ok
}

// oneOf reads a string that must be one of values.
func (s scope) oneOf(k string, vn *yaml.Node, values []string) (string, bool) {
	x, ok := s.str(k, vn)
	if !ok {
		return "", false
	}
	if !slices.Contains(values, x) {
		s.errorf(vn, "%s: want %s, got %s%s", k, join(values), describe(s.p.deref(vn)), didYouMean(x, values))
		return "", false
	}
	return x, true
}

// fileName reads the name of a declared file, as in {file: NAME}. Whether
// such a file exists is checked once the whole workflow is read.
func (s scope) fileName(k string, vn *yaml.Node) (string, bool) {
	v := s.p.deref(vn)
	if v.Kind != yaml.ScalarNode || isNull(v) {
		s.errorf(vn, "%s: want a file name, got %s", k, describe(v))
		return "", false
	}
	return v.Value, true
}

// url reads the URL of a URL file: http or https with a host, or file
// with an absolute path on the worker.
func (s scope) url(vn *yaml.Node) (string, bool) {
	raw, ok := s.str("url", vn)
	if !ok {
		return "", false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		s.errorf(vn, "url: want an http, https or file URL, got %s", quote(raw))
		return "", false
	}
	switch scheme := strings.ToLower(u.Scheme); {
	case !slices.Contains(urlSchemes, scheme):
		s.errorf(vn, "url: unsupported scheme %q in %s: want http, https or file", u.Scheme, quote(raw))
		return "", false
	case scheme == "file" && (u.Opaque != "" || !strings.HasPrefix(u.Path, "/") || (u.Host != "" && u.Host != "localhost")):
		s.errorf(vn, "url: %s: want an absolute path on the worker, as in \"file:///data/words.txt\"", quote(raw))
		return "", false
	case scheme != "file" && u.Host == "":
		s.errorf(vn, "url: %s has no host", quote(raw))
		return "", false
	}
	return raw, true
}

// fileTable holds the declared files while a workflow is linked.
type fileTable struct {
	specs   []*fileSpec             // in file order
	byName  map[string]*fileSpec    // every declared name, valid or not
	names   []string                // declared names, for suggestions
	writers map[string]writer       // temp file name -> the output that writes it
	roots   map[*fileSpec]*fileSpec // memo for root
}

// linkFiles indexes the declared files and checks what "unpack" names:
// a declared file other than itself, with no loop of unpacks.
func (p *parser) linkFiles(specs []*fileSpec) *fileTable {
	ft := &fileTable{specs: specs, byName: map[string]*fileSpec{}, writers: map[string]writer{}, roots: map[*fileSpec]*fileSpec{}}
	for _, f := range specs {
		ft.byName[f.Name] = f
		ft.names = append(ft.names, f.Name)
	}
	for _, f := range specs {
		if f.Kind != Unpack || !f.ok {
			continue
		}
		s := scope{p: p, prefix: "file " + quote(f.Name) + ": "}
		switch a, ok := ft.byName[f.Unpack]; {
		case !ok:
			s.errorf(f.valueNode, "unpack: unknown file %s%s", quote(f.Unpack), didYouMean(f.Unpack, ft.names))
			f.ok = false
		case a == f:
			s.errorf(f.valueNode, "unpack: a file cannot unpack itself")
			f.ok = false
		}
	}
	p.checkUnpackLoops(ft)
	return ft
}

// checkUnpackLoops reports each loop of files that unpack each other,
// once, at the member declared first. Each file unpacks at most one
// other, so one walk from each file finds every loop.
func (p *parser) checkUnpackLoops(ft *fileTable) {
	const (
		unseen = iota
		walking
		done
	)
	state := make(map[*fileSpec]int, len(ft.specs))
	for _, start := range ft.specs {
		var walk []*fileSpec
		for f := start; f != nil && state[f] == unseen; {
			state[f] = walking
			walk = append(walk, f)
			if f.Kind != Unpack || !f.ok {
				break
			}
			next := ft.byName[f.Unpack]
			if next != nil && state[next] == walking {
				loop := walk[slices.Index(walk, next):]
				first := 0
				for j, g := range loop {
					if g.index < loop[first].index {
						first = j
					}
				}
				loop = append(slices.Clone(loop[first:]), loop[:first]...)
				names := make([]string, 0, len(loop)+1)
				for _, g := range loop {
					names = append(names, g.Name)
				}
				names = append(names, loop[0].Name)
				p.errorf(loop[0].valueNode, "file %s: unpack: loop: %s", quote(loop[0].Name), strings.Join(names, " -> "))
				for _, g := range loop {
					g.ok = false
				}
				break
			}
			f = next
		}
		for _, f := range walk {
			state[f] = done
		}
	}
}

// root returns the file that f is, or is unpacked from through a chain
// of unpacks, or nil when the chain is broken by a reported problem.
// Call it after checkUnpackLoops, which breaks loops.
func (ft *fileTable) root(f *fileSpec) *fileSpec {
	var chain []*fileSpec
	var r *fileSpec
	for g := f; ; g = ft.byName[g.Unpack] {
		if known, ok := ft.roots[g]; ok {
			r = known
			break
		}
		if g == nil || !g.ok {
			break
		}
		chain = append(chain, g)
		if g.Kind != Unpack {
			r = g
			break
		}
	}
	for _, g := range chain {
		ft.roots[g] = r
	}
	return r
}

// linkTemps finds the one output that writes each temp file, reporting
// outputs that name unknown files, files that are not temp files, and
// temp files written twice.
func (p *parser) linkTemps(specs []*taskSpec, ft *fileTable) {
	for i, t := range specs {
		s := t.scope(p)
		for k := range t.outputs {
			out := &t.outputs[k]
			if out.File == "" {
				continue
			}
			f, ok := ft.byName[out.File]
			switch {
			case !ok:
				s.errorf(out.node, "output %s: unknown file %s%s", quote(out.Name), quote(out.File), didYouMean(out.File, ft.names))
			case f.Kind == 0:
				// The declaration's problem is reported.
			case f.Kind != Temp:
				s.errorf(out.node, "output %s: file %s is not a temp file: only temp files can be outputs", quote(out.Name), quote(out.File))
			default:
				if w, dup := ft.writers[f.Name]; dup {
					s.errorf(out.node, "output %s: temp file %s is also written by %s", quote(out.Name), quote(f.Name), w.describe(&t.item))
					continue
				}
				ft.writers[f.Name] = writer{task: i, by: &t.item, out: out, temp: f.Name}
			}
		}
	}
}

// fileWriter returns the output that writes the temp file that input in
// of task or library t reads, directly or unpacked, if there is one. It
// reports a name that is not declared, and a temp file that no task
// writes (once per temp file in unwritten).
func (p *parser) fileWriter(t *item, in *inputSpec, ft *fileTable, unwritten map[string]bool) (writer, bool) {
	f, ok := ft.byName[in.File]
	if !ok {
		t.scope(p).errorf(in.node, "input %s: unknown file %s%s", quote(in.Name), quote(in.File), didYouMean(in.File, ft.names))
		return writer{}, false
	}
	root := ft.root(f)
	if root == nil || root.Kind != Temp {
		return writer{}, false
	}
	w, ok := ft.writers[root.Name]
	if !ok && !unwritten[root.Name] {
		unwritten[root.Name] = true
		p.errorf(in.node, "temp file %s is read by %s but no task writes it", quote(root.Name), t.label())
	}
	return w, ok
}

// checkLocalFiles reports declared local files at paths that tasks or
// calls write: local files are read when the workflow starts, before any
// task runs.
func (p *parser) checkLocalFiles(ft *fileTable, writers map[string]writer) {
	for _, f := range ft.specs {
		if f.Kind != Local || !f.ok {
			continue
		}
		if w, ok := writerOf(writers, f.Local); ok {
			p.errorf(f.valueNode, "file %s: local: path %s is written by %s (line %d); declare a temp file for data that tasks pass on",
				quote(f.Name), quote(f.path), w.by.label(), w.out.node.Line)
		}
	}
}
