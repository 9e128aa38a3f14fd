package workflow

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads and parses the workflow file at path. Relative paths in the
// file are resolved against the file's directory, and errors name the
// file as path is written. Errors about the file's contents are an
// ErrorList; an error reading the file is returned as it is.
func Load(path string) (*Workflow, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	w, err := Parse(path, filepath.Dir(abs), data)
	if err != nil {
		return nil, err
	}
	w.Path = abs
	return w, nil
}

// LoadLibraries reads a library file: a workflow file whose "libraries"
// list is what it is for (trellis library install). It needs no tasks;
// its "files" and "defaults" apply as in a workflow file.
func LoadLibraries(path string) (*Workflow, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	p := &parser{file: path, dir: filepath.Dir(abs), libraries: true}
	w := p.parseFile(data)
	if len(p.errs) > 0 {
		return nil, p.errs.finish(path)
	}
	w.Path = abs
	return w, nil
}

// Parse parses the workflow in data. Name is the file name used in error
// messages and for the default workflow name; dir is the directory that
// relative paths are resolved against (made absolute against the current
// directory if it is not; "" means the current directory). The returned
// error, if any, is an ErrorList.
func Parse(name, dir string, data []byte) (*Workflow, error) {
	if name == "" {
		name = "workflow"
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, ErrorList{{File: name, Msg: "cannot resolve directory: " + err.Error()}}
	}
	p := &parser{file: name, dir: absDir}
	w := p.parseFile(data)
	if len(p.errs) > 0 {
		return nil, p.errs.finish(name)
	}
	return w, nil
}

// parseFile decodes data into YAML nodes and builds the workflow from
// them, recording problems in p.errs.
func (p *parser) parseFile(data []byte) (w *Workflow) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(nil, "empty workflow file: want a mapping with a %q list", "tasks")
		} else {
			p.yamlError(err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.yamlError(err)
	default:
		p.errorf(position(&extra), "a workflow file holds one YAML document, found another")
	}
	defer func() {
		if r := recover(); r != nil {
			tc, ok := r.(tooComplex)
			if !ok {
				panic(r)
			}
			p.errorf(tc.at, "document is too complex: its aliases stand for over %d nodes", maxExpanded)
			w = nil
		}
	}()
	root := &doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	return p.parseRoot(root)
}

// position returns the first node under a document that has a position.
func position(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return n.Content[0]
	}
	return n
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlError records a YAML syntax error, moving its line number into the
// position.
func (p *parser) yamlError(err error) {
	msg := err.Error()
	e := &Error{File: p.file, Msg: msg}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		if line, err := strconv.Atoi(m[1]); err == nil {
			e.Line = line
			e.Msg = "yaml: " + msg[len(m[0]):]
		}
	}
	if !strings.HasPrefix(e.Msg, "yaml:") {
		e.Msg = "yaml: " + e.Msg
	}
	p.errs = append(p.errs, e)
}
