package makeflow

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"trellis/internal/workflow"
)

const (
	// maxErrors is how many problems a file reports before "too many
	// errors", as for YAML workflow files.
	maxErrors = 20
	// maxValue bounds an expanded variable, rule line or command, so that
	// a few lines of A=$(A)$(A) cannot take the client's memory.
	maxValue = 1 << 20
)

// Load reads and parses the Makeflow file at path. Relative paths in the
// file are resolved against the file's directory; $(NAME) falls back to
// the environment of this process, as in Makeflow. Errors about the
// file's contents are a workflow.ErrorList; an error reading the file is
// returned as it is.
func Load(path string) (*workflow.Workflow, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	w, err := Parse(path, filepath.Dir(abs), data, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	w.Path = abs
	return w, nil
}

// Parse parses the Makeflow in data. Name is the file name used in error
// messages and for the workflow's name; dir is the directory that
// relative paths are resolved against; getenv, if not nil, is where
// $(NAME) looks for names the file does not define. The returned error,
// if any, is a workflow.ErrorList.
func Parse(name, dir string, data []byte, getenv func(string) (string, bool)) (*workflow.Workflow, error) {
	if name == "" {
		name = "Makeflow"
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, workflow.ErrorList{{File: name, Msg: "cannot resolve directory: " + err.Error()}}
	}
	if getenv == nil {
		getenv = func(string) (string, bool) { return "", false }
	}
	p := &parser{file: name, dir: absDir, getenv: getenv, vars: map[string]string{},
		exported: map[string]bool{}, categories: map[string]*resources{"": {}}}
	for _, l := range joinLines(data) {
		p.line(l.n, l.text)
	}
	p.finishRule()
	w := &workflow.Workflow{Name: defaultName(name), Dir: absDir}
	if len(p.errs) == 0 {
		w.Tasks = p.link()
	}
	if len(p.errs) > 0 {
		return nil, p.finishErrors()
	}
	return w, nil
}

// logical is one line of the file after joining continuations: n is the
// line it starts on.
type logical struct {
	n    int
	text string
}

// joinLines splits data into lines, joining a line that ends with a
// backslash to the next one with a space.
func joinLines(data []byte) []logical {
	var out []logical
	var cur strings.Builder
	start, open := 0, false
	for i, raw := range strings.Split(string(data), "\n") {
		raw = strings.TrimSuffix(raw, "\r")
		if !open {
			start = i + 1
			cur.Reset()
		}
		if strings.HasSuffix(raw, `\`) {
			cur.WriteString(raw[:len(raw)-1])
			cur.WriteByte(' ')
			open = true
			continue
		}
		cur.WriteString(raw)
		open = false
		out = append(out, logical{start, cur.String()})
	}
	if open {
		out = append(out, logical{start, cur.String()})
	}
	return out
}

// resources are what the rules of one category need; a field is set when
// its ok is true.
type resources struct {
	cores                         float64
	memory, disk                  int64
	gpus                          int
	coresOK, memOK, diskOK, gpuOK bool
}

// over returns r with the fields that o sets taken from o.
func (r resources) over(o resources) resources {
	if o.coresOK {
		r.cores, r.coresOK = o.cores, true
	}
	if o.memOK {
		r.memory, r.memOK = o.memory, true
	}
	if o.diskOK {
		r.disk, r.diskOK = o.disk, true
	}
	if o.gpuOK {
		r.gpus, r.gpuOK = o.gpus, true
	}
	return r
}

// file is one source or target of a rule.
type file struct {
	local  string // client path, absolute
	remote string // name in the sandbox
}

// rule is one rule as read, before linking.
type rule struct {
	line, cmdLine    int
	name             string // the client path of the first target, as written
	targets, sources []file
	command          string
	local            bool
	category         string
	res              resources
	env              []string
	scoped           map[string]string // @NAME=value lines
}

// parser reads a Makeflow file line by line.
type parser struct {
	file, dir  string
	getenv     func(string) (string, bool)
	vars       map[string]string
	exported   map[string]bool
	category   string
	categories map[string]*resources
	rules      []*rule
	open       *rule // the rule whose command is still to come
	last       *rule // the last rule with its command
	errs       workflow.ErrorList
}

func (p *parser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, &workflow.Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

var (
	assignment = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)[ \t]*=(.*)$`)
	nameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// line handles one logical line.
func (p *parser) line(n int, text string) {
	trimmed := strings.TrimSpace(text)
	if trimmed == "" || strings.HasPrefix(trimmed, "#") {
		return
	}
	indented := text[0] == ' ' || text[0] == '\t'
	if p.open != nil {
		if !indented {
			p.errorf(p.open.line, "rule %q has no command: put its command on the next line, indented with a tab", p.open.name)
			p.open = nil
		} else if strings.HasPrefix(trimmed, "@") {
			p.scoped(n, trimmed[1:])
			return
		} else {
			p.command(n, trimmed)
			return
		}
	}
	if indented && p.last != nil {
		p.errorf(n, "rule %q (line %d) already has its command (line %d): a rule runs one command line; join the commands with && or ;", p.last.name, p.last.line, p.last.cmdLine)
		return
	}
	p.last = nil
	switch fields := strings.Fields(trimmed); {
	case fields[0] == ".MAKEFLOW":
		p.directive(n, fields[1:])
	case fields[0] == ".SIZE":
		// A size hint for a file: trellis measures files itself.
	case fields[0] == "export":
		p.export(n, strings.TrimSpace(trimmed[len("export"):]))
	case assignment.MatchString(trimmed):
		m := assignment.FindStringSubmatch(trimmed)
		if v, ok := p.expand(n, strings.TrimSpace(m[2]), nil); ok {
			p.set(n, m[1], v)
		}
	case strings.Contains(trimmed, ":"):
		p.rule(n, trimmed)
	case indented:
		p.errorf(n, "command %q has no rule: write the rule TARGETS : SOURCES on the line above it", clip(trimmed))
	default:
		p.errorf(n, "cannot read %q: want a rule TARGETS : SOURCES, a variable NAME=value, export NAME, or .MAKEFLOW CATEGORY NAME", clip(trimmed))
	}
}

// set assigns a variable; CATEGORY and the resource variables also set
// the resources of the rules that follow.
func (p *parser) set(n int, name, value string) {
	p.vars[name] = value
	switch name {
	case "CATEGORY":
		p.setCategory(n, unquote(value))
	case "CORES", "MEMORY", "DISK", "GPUS":
		p.resource(n, name, unquote(value), p.categories[p.category])
	}
}

func (p *parser) setCategory(n int, name string) {
	if name == "" {
		p.errorf(n, "empty category name: write .MAKEFLOW CATEGORY NAME")
		return
	}
	if name == "default" {
		name = ""
	}
	p.category = name
	if p.categories[name] == nil {
		p.categories[name] = &resources{}
	}
}

// resource parses a CORES, MEMORY (MB), DISK (MB) or GPUS value into r.
func (p *parser) resource(n int, name, value string, r *resources) {
	switch name {
	case "CORES":
		c, err := strconv.ParseFloat(value, 64)
		if err != nil || c < 0 || c != c || c > 1e6 {
			p.errorf(n, "CORES=%q: want a number of cores, such as 2 or 0.5", clip(value))
			return
		}
		r.cores, r.coresOK = c, true
	case "GPUS":
		g, err := strconv.Atoi(value)
		if err != nil || g < 0 {
			p.errorf(n, "GPUS=%q: want a whole number of GPUs, such as 1", clip(value))
			return
		}
		r.gpus, r.gpuOK = g, true
	default: // MEMORY and DISK, in MB as in Makeflow
		m, err := strconv.ParseInt(value, 10, 64)
		if err != nil || m < 0 || m > 1<<40 {
			p.errorf(n, "%s=%q: want a whole number of megabytes, such as 1000", name, clip(value))
			return
		}
		if name == "MEMORY" {
			r.memory, r.memOK = m, true
		} else {
			r.disk, r.diskOK = m, true
		}
	}
}

// directive handles ".MAKEFLOW WORD args".
func (p *parser) directive(n int, args []string) {
	if len(args) == 0 {
		p.errorf(n, ".MAKEFLOW needs a directive: CATEGORY NAME, or CORES, MEMORY, DISK or GPUS with a value")
		return
	}
	word := strings.ToUpper(args[0])
	switch word {
	case "CATEGORY", "CORES", "MEMORY", "DISK", "GPUS":
	default:
		p.errorf(n, ".MAKEFLOW %s is not supported by trellis: use CATEGORY, CORES, MEMORY, DISK or GPUS", clip(args[0]))
		return
	}
	if len(args) != 2 {
		p.errorf(n, ".MAKEFLOW %s takes one value, found %d", word, len(args)-1)
		return
	}
	v, ok := p.expand(n, args[1], nil)
	if !ok {
		return
	}
	if word == "CATEGORY" {
		p.setCategory(n, unquote(v))
		return
	}
	p.resource(n, word, unquote(v), p.categories[p.category])
}

// export handles "export NAME" and "export NAME=value".
func (p *parser) export(n int, rest string) {
	if m := assignment.FindStringSubmatch(rest); m != nil {
		if v, ok := p.expand(n, strings.TrimSpace(m[2]), nil); ok {
			p.set(n, m[1], v)
			p.exported[m[1]] = true
		}
		return
	}
	names := strings.Fields(rest)
	if len(names) == 0 {
		p.errorf(n, "export needs a variable name: export NAME or export NAME=value")
	}
	for _, name := range names {
		if !nameRE.MatchString(name) {
			p.errorf(n, "export %q: want a variable name of letters, digits and _", clip(name))
			continue
		}
		p.exported[name] = true
	}
}

// rule starts a rule from "targets : sources".
func (p *parser) rule(n int, text string) {
	text, ok := p.expand(n, text, nil)
	if !ok {
		return
	}
	i := strings.Index(text, ":")
	r := &rule{line: n, category: p.category}
	targets, sources := strings.Fields(text[:i]), strings.Fields(text[i+1:])
	if len(targets) == 0 {
		p.errorf(n, "rule has no target: write the files it creates before the colon")
		return
	}
	r.name, _, _ = strings.Cut(targets[0], "->")
	r.targets = p.files(n, "target", targets)
	r.sources = p.files(n, "source", sources)
	p.rules = append(p.rules, r)
	p.open, p.last = r, nil
}

// files reads the sources or targets of a rule.
func (p *parser) files(n int, kind string, words []string) []file {
	var out []file
	seen := map[string]bool{}
	for _, w := range words {
		local, remote, renamed := strings.Cut(w, "->")
		if !renamed {
			remote = local
		}
		if local == "" || remote == "" {
			p.errorf(n, "%s %q: want LOCAL->REMOTE with both names", kind, clip(w))
			continue
		}
		if strings.Contains(remote, "->") {
			p.errorf(n, "%s %q: one -> only, as in LOCAL->REMOTE", kind, clip(w))
			continue
		}
		clean := filepath.Clean(remote)
		if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") || clean == "." {
			if renamed {
				p.errorf(n, "%s %q: the name after -> is a path in the task's sandbox: make it relative, such as %s", kind, clip(w), filepath.Base(remote))
			} else {
				p.errorf(n, "%s %q is outside the task's sandbox: name it inside with %s->%s", kind, clip(w), clip(local), filepath.Base(local))
			}
			continue
		}
		if seen[clean] {
			p.errorf(n, "%s %q: two %ss of the rule have the name %q in the sandbox", kind, clip(w), kind, clean)
			continue
		}
		seen[clean] = true
		abs := local
		if !filepath.IsAbs(abs) {
			abs = filepath.Join(p.dir, local)
		}
		out = append(out, file{local: filepath.Clean(abs), remote: clean})
	}
	return out
}

// scoped handles "@NAME=value" under a rule: a variable for that rule only.
func (p *parser) scoped(n int, text string) {
	m := assignment.FindStringSubmatch(text)
	if m == nil {
		p.errorf(n, "cannot read @%s: want @NAME=value", clip(text))
		return
	}
	r := p.open
	v, ok := p.expand(n, strings.TrimSpace(m[2]), r.scoped)
	if !ok {
		return
	}
	if r.scoped == nil {
		r.scoped = map[string]string{}
	}
	r.scoped[m[1]] = v
	switch m[1] {
	case "CATEGORY":
		r.category = unquote(v)
		if r.category == "default" {
			r.category = ""
		}
	case "CORES", "MEMORY", "DISK", "GPUS":
		p.resource(n, m[1], unquote(v), &r.res)
	}
}

// command completes the open rule with its command line.
func (p *parser) command(n int, text string) {
	r := p.open
	p.open, p.last = nil, r
	if rest, ok := strings.CutPrefix(text, "LOCAL"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
		r.local, text = true, strings.TrimSpace(rest)
	}
	if text == "" {
		p.errorf(n, "rule %q has an empty command", r.name)
		return
	}
	cmd, ok := p.expand(n, text, r.scoped)
	if !ok {
		return
	}
	if strings.TrimSpace(cmd) == "" {
		p.errorf(n, "rule %q has an empty command once its variables are substituted: give them values", r.name)
		return
	}
	r.command, r.cmdLine = cmd, n
	base := resources{}
	if c := p.categories[r.category]; c != nil {
		base = *c
	} else {
		p.categories[r.category] = &resources{}
	}
	r.res = base.over(r.res)
	r.env = p.env(r.scoped)
}

// finishRule reports a rule at the end of the file without a command.
func (p *parser) finishRule() {
	if p.open != nil {
		p.errorf(p.open.line, "rule %q has no command: put its command on the next line, indented with a tab", p.open.name)
		p.open = nil
	}
}

// env is the environment of a rule: the exported variables that have a
// value, as KEY=VALUE sorted by key.
func (p *parser) env(scoped map[string]string) []string {
	var env []string
	for name := range p.exported {
		v, ok := scoped[name]
		if !ok {
			v, ok = p.vars[name]
		}
		if !ok {
			v, ok = p.getenv(name)
		}
		if ok {
			env = append(env, name+"="+v)
		}
	}
	sort.Strings(env)
	return env
}

// expand substitutes $(NAME) in s: a variable of the rule (scoped), of
// the file, or of the environment, in that order. Other $ are kept for
// the shell.
func (p *parser) expand(n int, s string, scoped map[string]string) (string, bool) {
	if !strings.Contains(s, "$(") {
		return s, true
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "$(")
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		j := strings.IndexByte(s[i:], ')')
		if j < 0 {
			p.errorf(n, "unterminated $( in %q: close it with )", clip(s[i:]))
			return "", false
		}
		name := s[i+2 : i+j]
		v, ok := scoped[name]
		if !ok {
			v, ok = p.vars[name]
		}
		if !ok {
			v, ok = p.getenv(name)
		}
		if !ok {
			p.errorf(n, "undefined variable $(%s): define %s=value above this line or in the environment", clip(name), clip(name))
			return "", false
		}
		b.WriteString(v)
		if b.Len() > maxValue {
			p.errorf(n, "expanded text is over %d bytes: check the variables for repeated self-reference", maxValue)
			return "", false
		}
		s = s[i+j+1:]
	}
	return b.String(), true
}

// unquote removes one pair of double quotes around a category name or a
// resource value, which the Makeflow manual writes as CATEGORY="name".
func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// clip shortens text quoted in a message.
func clip(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

// defaultName is the workflow's name: the file name without extension.
func defaultName(file string) string {
	base := filepath.Base(file)
	if ext := filepath.Ext(base); ext != "" && ext != base {
		base = strings.TrimSuffix(base, ext)
	}
	return base
}

// finishErrors orders the problems by line and cuts the list to
// maxErrors.
func (p *parser) finishErrors() workflow.ErrorList {
	l := p.errs
	sort.SliceStable(l, func(i, j int) bool { return l[i].Line < l[j].Line })
	if len(l) > maxErrors {
		l = append(l[:maxErrors:maxErrors], &workflow.Error{File: p.file, Msg: "too many errors"})
	}
	return l
}
