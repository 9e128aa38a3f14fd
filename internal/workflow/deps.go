package workflow

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// linker resolves the dependencies of tasks, libraries and calls once
// they have all been read.
type linker struct {
	p       *parser
	files   *fileTable
	tasks   []*taskSpec
	calls   []*callSpec
	names   map[string]*item  // tasks and calls by name: they share "after"
	tasksBy []string          // task names in file order, for suggestions
	allBy   []string          // task and call names, for suggestions
	writers map[string]writer // client path -> the output that writes it
}

// link applies the defaults d to the tasks, resolves the dependencies of
// tasks, libraries and calls into w, and checks the workflow as a whole:
// unique names, one writer per client path and per temp file, known
// file, library and "after" names, and no cycles.
func (p *parser) link(w *Workflow, specs []*taskSpec, libs []*librarySpec, calls []*callSpec, d *taskSpec, files *fileTable) {
	l := &linker{p: p, files: files, tasks: specs, calls: calls, names: map[string]*item{}}
	l.addNames()
	l.writers = l.linkOutputs()
	p.linkTemps(specs, files)
	p.checkLocalFiles(files, l.writers)
	w.Tasks = l.linkTasks(d)
	w.Libraries = l.linkLibraries(libs)
	w.Calls = l.linkCalls(libs, w.Libraries)
}

// addNames indexes tasks and calls by name, reporting names used twice.
func (l *linker) addNames() {
	add := func(it *item) {
		if !it.validName {
			return
		}
		prev, dup := l.names[it.name]
		switch {
		case dup && prev.kind == it.kind:
			l.p.errorf(it.nameNode, "%s: duplicate %s name (first defined at line %d)", it.label(), it.kind, prev.line())
		case dup:
			l.p.errorf(it.nameNode, "%s: name already used by %s (line %d)", it.label(), prev.label(), prev.line())
		default:
			l.names[it.name] = it
			l.allBy = append(l.allBy, it.name)
			if it.kind == "task" {
				l.tasksBy = append(l.tasksBy, it.name)
			}
		}
	}
	for _, t := range l.tasks {
		add(&t.item)
	}
	for _, c := range l.calls {
		add(&c.item)
	}
}

// linkTasks builds the tasks with the defaults d and resolves what they
// wait for.
func (l *linker) linkTasks(d *taskSpec) []Task {
	tasks := make([]Task, len(l.tasks))
	for i, t := range l.tasks {
		tasks[i] = t.build(d)
		s := t.scope(l.p)
		unwritten := map[string]bool{} // temp files reported unwritten for this task
		for k := range t.inputs {
			in := &t.inputs[k]
			w, what, ok := l.inputWriter(&t.item, in, unwritten)
			switch {
			case !ok:
			case w.task == i:
				s.errorf(in.node, "input %s: reads its own output%s", quote(in.Name), what)
			default:
				in.Producer = w.task
				tasks[i].After = append(tasks[i].After, w.task)
			}
			tasks[i].Inputs = append(tasks[i].Inputs, in.Input)
		}
		for _, r := range t.after {
			it, ok := l.names[r.name]
			switch {
			case !ok:
				s.errorf(r.node, "after: unknown task %s%s", quote(r.name), didYouMean(r.name, l.tasksBy))
			case it.kind != "task":
				s.errorf(r.node, "after: %s is a call, and tasks cannot wait for calls", quote(r.name))
			case it.index == i:
				s.errorf(r.node, "after: a task cannot wait for itself")
			default:
				tasks[i].After = append(tasks[i].After, it.index)
			}
		}
		sortInputs(tasks[i].Inputs)
		tasks[i].After = sortedSet(tasks[i].After)
	}
	items := make([]*item, len(l.tasks))
	after := make([][]int, len(tasks))
	for i := range tasks {
		items[i], after[i] = &l.tasks[i].item, tasks[i].After
	}
	l.p.checkCycles(items, after)
	return tasks
}

// linkLibraries builds the libraries and resolves the tasks that write
// their inputs.
func (l *linker) linkLibraries(specs []*librarySpec) []Library {
	if len(specs) == 0 {
		return nil
	}
	libs := make([]Library, len(specs))
	first := map[string]*librarySpec{}
	for i, ls := range specs {
		libs[i] = ls.build()
		if prev, dup := first[ls.name]; dup && ls.validName {
			l.p.errorf(ls.nameNode, "%s: duplicate library name (first defined at line %d)", ls.label(), prev.line())
		} else if ls.validName {
			first[ls.name] = ls
		}
		unwritten := map[string]bool{}
		for k := range ls.inputs {
			in := &ls.inputs[k]
			if w, _, ok := l.inputWriter(&ls.item, in, unwritten); ok {
				in.Producer = w.task
				libs[i].After = append(libs[i].After, w.task)
			}
			libs[i].Inputs = append(libs[i].Inputs, in.Input)
		}
		sortInputs(libs[i].Inputs)
		libs[i].After = sortedSet(libs[i].After)
	}
	return libs
}

// linkCalls builds the calls and resolves what they wait for: the tasks
// and calls they name in "after", and the tasks that write their
// library's inputs.
func (l *linker) linkCalls(libSpecs []*librarySpec, libs []Library) []Call {
	if len(l.calls) == 0 {
		return nil
	}
	byName := map[string]int{} // every library with a name, valid or not, so that its problems are not repeated
	var libNames []string
	for i, ls := range libSpecs {
		if _, dup := byName[ls.name]; !dup && ls.nameNode != nil {
			byName[ls.name] = i
			libNames = append(libNames, ls.name)
		}
	}
	calls := make([]Call, len(l.calls))
	for i, cs := range l.calls {
		calls[i] = cs.build()
		s := cs.scope(l.p)
		if cs.libraryNode != nil {
			if j, ok := byName[cs.library.val]; ok {
				calls[i].After = append(calls[i].After, libs[j].After...)
			} else {
				s.errorf(cs.libraryNode, "library: unknown library %s%s", quote(cs.library.val), didYouMean(cs.library.val, libNames))
			}
		}
		for _, r := range cs.after {
			it, ok := l.names[r.name]
			switch {
			case !ok:
				s.errorf(r.node, "after: unknown task or call %s%s", quote(r.name), didYouMean(r.name, l.allBy))
			case it == &cs.item:
				s.errorf(r.node, "after: a call cannot wait for itself")
			case it.kind == "call":
				calls[i].AfterCalls = append(calls[i].AfterCalls, it.index)
			default:
				calls[i].After = append(calls[i].After, it.index)
			}
		}
		if cs.argsFile != "" {
			if w, ok := writerOf(l.writers, cs.argsFile); ok {
				s.errorf(cs.argsFileNode, "args_file: path %s is written by %s; arguments are read when the workflow starts",
					quote(cs.argsFilePath), w.describe(&cs.item))
			}
		}
		calls[i].After = sortedSet(calls[i].After)
		calls[i].AfterCalls = sortedSet(calls[i].AfterCalls)
	}
	items := make([]*item, len(calls))
	after := make([][]int, len(calls))
	for i := range calls {
		items[i], after[i] = &l.calls[i].item, calls[i].AfterCalls
	}
	l.p.checkCycles(items, after)
	return calls
}

// inputWriter returns the output that writes what input in of it reads,
// if any, and how to name what it reads in messages. It reports inputs
// that name unknown files, read temp files that nothing writes, or read
// the results of calls, which only calls may wait for.
func (l *linker) inputWriter(it *item, in *inputSpec, unwritten map[string]bool) (w writer, what string, ok bool) {
	switch {
	case in.File != "":
		w, ok = l.p.fileWriter(it, in, l.files, unwritten)
		what = ", temp file " + quote(w.temp)
	case in.Local != "":
		w, ok = writerOf(l.writers, in.Local)
		what = " " + quote(in.path)
	}
	if ok && w.task < 0 {
		it.scope(l.p).errorf(in.node, "input %s: path %s is written by %s, and a %s cannot wait for calls",
			quote(in.Name), quote(in.path), w.describe(it), it.kind)
		return w, what, false
	}
	return w, what, ok
}

// sortInputs sorts inputs by name.
func sortInputs(inputs []Input) {
	sort.Slice(inputs, func(a, b int) bool { return inputs[a].Name < inputs[b].Name })
}

// sortedSet sorts s and drops repeated values.
func sortedSet(s []int) []int {
	sort.Ints(s)
	return slices.Compact(s)
}

// writer identifies the output that writes a client path or a temp
// file: an output of task number task, or the output of a call (task is
// then -1).
type writer struct {
	task int
	by   *item // the task or call
	out  *outputSpec
	temp string // the temp file written, if that is what out writes
}

// linkOutputs maps every client path that is written, by a task's
// output or a call's, to its writer, reporting paths written twice and
// paths inside another output.
func (l *linker) linkOutputs() map[string]writer {
	var all []writer
	for i, t := range l.tasks {
		for k := range t.outputs {
			if t.outputs[k].Local != "" {
				all = append(all, writer{task: i, by: &t.item, out: &t.outputs[k]})
			}
		}
	}
	for _, c := range l.calls {
		if c.output.Local != "" {
			all = append(all, writer{task: -1, by: &c.item, out: &c.output})
		}
	}
	writers := map[string]writer{}
	for _, w := range all {
		if prev, dup := writers[w.out.Local]; dup {
			w.by.scope(l.p).errorf(w.out.node, "%s: path %s is also written by %s", w.out.what(), quote(w.out.path), prev.describe(w.by))
			continue
		}
		writers[w.out.Local] = w
	}
	for _, w := range all {
		dir := filepath.Dir(w.out.Local)
		if prev, ok := writerOf(writers, dir); ok && w.out.Local != dir {
			w.by.scope(l.p).errorf(w.out.node, "%s: path %s is inside %s, which is written by %s", w.out.what(), quote(w.out.path), quote(prev.out.path), prev.describe(w.by))
		}
	}
	return writers
}

// what names the output in messages: `output "name"` for a task's, and
// `output` for a call's, which has no sandbox name.
func (o *outputSpec) what() string {
	if o.Name == "" {
		return "output"
	}
	return "output " + quote(o.Name)
}

// describe names the writer for a message about from.
func (w writer) describe(from *item) string {
	if w.by == from {
		if w.out.Name == "" {
			return "its own output"
		}
		return "output " + quote(w.out.Name)
	}
	return fmt.Sprintf("%s (line %d)", w.by.label(), w.out.node.Line)
}

// writerOf returns the writer of path or of the nearest directory that
// contains it.
func writerOf(writers map[string]writer, path string) (writer, bool) {
	for {
		if w, ok := writers[path]; ok {
			return w, true
		}
		parent := filepath.Dir(path)
		if parent == path {
			return writer{}, false
		}
		path = parent
	}
}

// checkCycles reports one cycle for each group of items that wait for
// each other, where after[i] lists the items that items[i] waits for.
func (p *parser) checkCycles(items []*item, after [][]int) {
	for _, comp := range components(after) {
		if len(comp) < 2 {
			continue
		}
		start := slices.Min(comp)
		path := cycleFrom(after, start, comp)
		names := make([]string, len(path))
		for i, t := range path {
			if items[t].validName {
				names[i] = items[t].name
			} else {
				names[i] = fmt.Sprintf("#%d", t+1)
			}
		}
		p.errorf(items[start].node, "cycle: %s", strings.Join(names, " -> "))
	}
}

// components returns the strongly connected components of the graph
// whose edges go from each node i to the nodes in after[i] (Tarjan's
// algorithm).
func components(after [][]int) [][]int {
	n := len(after)
	index := make([]int, n)
	low := make([]int, n)
	onStack := make([]bool, n)
	for i := range index {
		index[i] = -1
	}
	var stack []int
	var comps [][]int
	next := 0
	var visit func(v int)
	visit = func(v int) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range after[v] {
			if index[w] < 0 {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			var comp []int
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				comp = append(comp, w)
				if w == v {
					break
				}
			}
			comps = append(comps, comp)
		}
	}
	for v := range after {
		if index[v] < 0 {
			visit(v)
		}
	}
	return comps
}

// cycleFrom returns a shortest cycle start -> ... -> start that stays in
// comp, a strongly connected component holding start.
func cycleFrom(after [][]int, start int, comp []int) []int {
	in := map[int]bool{}
	for _, v := range comp {
		in[v] = true
	}
	prev := map[int]int{start: -1}
	queue := []int{start}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range after[v] {
			if w == start {
				var path []int
				for u := v; u != -1; u = prev[u] {
					path = append(path, u)
				}
				slices.Reverse(path)
				return append(path, start)
			}
			if _, seen := prev[w]; !seen && in[w] {
				prev[w] = v
				queue = append(queue, w)
			}
		}
	}
	return []int{start, start} // not reached for a real component
}
