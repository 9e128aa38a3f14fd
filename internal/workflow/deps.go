package workflow

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// link applies the defaults d to the tasks, resolves their dependencies
// and checks the workflow as a whole: unique names, one writer per client
// path and per temp file, known file and "after" names, and no cycles.
func (p *parser) link(specs []*taskSpec, d *taskSpec, files *fileTable) []Task {
	tasks := make([]Task, len(specs))
	names := map[string]int{}
	var order []string
	for i, t := range specs {
		tasks[i] = t.build(d)
		if !t.validName {
			continue
		}
		if j, dup := names[t.name]; dup {
			p.errorf(t.nameNode, "task %q: duplicate task name (first defined at line %d)", t.name, specs[j].node.Line)
			continue
		}
		names[t.name] = i
		order = append(order, t.name)
	}
	writers := p.linkOutputs(specs)
	p.linkTemps(specs, files)
	p.checkLocalFiles(specs, files, writers)
	for i, t := range specs {
		s := t.scope(p)
		unwritten := map[string]bool{} // temp files reported unwritten for this task
		for k := range t.inputs {
			in := &t.inputs[k]
			var w writer
			var ok bool
			var what string // what the input reads, for messages
			switch {
			case in.File != "":
				w, ok = p.fileWriter(t, in, files, unwritten)
				what = ", temp file " + quote(w.temp)
			case in.Local != "":
				w, ok = writerOf(writers, in.Local)
				what = " " + quote(in.path)
			}
			switch {
			case !ok:
			case w.task == i:
				s.errorf(in.node, "input %s: reads its own output%s", quote(in.Name), what)
			default:
				in.Producer = w.task
				tasks[i].After = append(tasks[i].After, w.task)
			}
		}
		for _, r := range t.after {
			j, ok := names[r.name]
			switch {
			case !ok:
				s.errorf(r.node, "after: unknown task %s%s", quote(r.name), didYouMean(r.name, order))
			case j == i:
				s.errorf(r.node, "after: a task cannot wait for itself")
			default:
				tasks[i].After = append(tasks[i].After, j)
			}
		}
		for _, in := range t.inputs {
			tasks[i].Inputs = append(tasks[i].Inputs, in.Input)
		}
		sort.Slice(tasks[i].Inputs, func(a, b int) bool { return tasks[i].Inputs[a].Name < tasks[i].Inputs[b].Name })
		sort.Ints(tasks[i].After)
		tasks[i].After = slices.Compact(tasks[i].After)
	}
	p.checkCycles(specs, tasks)
	return tasks
}

// writer identifies the output that writes a client path or a temp
// file.
type writer struct {
	task int
	out  *outputSpec
	temp string // the temp file written, if that is what out writes
}

// linkOutputs maps every client path that is written to its writer,
// reporting paths written twice and paths inside another output.
func (p *parser) linkOutputs(specs []*taskSpec) map[string]writer {
	writers := map[string]writer{}
	for i, t := range specs {
		for k := range t.outputs {
			out := &t.outputs[k]
			if out.Local == "" {
				continue
			}
			if w, dup := writers[out.Local]; dup {
				t.scope(p).errorf(out.node, "output %s: path %s is also written by %s", quote(out.Name), quote(out.path), w.describe(specs, i))
				continue
			}
			writers[out.Local] = writer{task: i, out: out}
		}
	}
	for i, t := range specs {
		for k := range t.outputs {
			out := &t.outputs[k]
			if out.Local == "" {
				continue
			}
			if w, ok := writerOf(writers, filepath.Dir(out.Local)); ok && out.Local != filepath.Dir(out.Local) {
				t.scope(p).errorf(out.node, "output %s: path %s is inside %s, which is written by %s", quote(out.Name), quote(out.path), quote(w.out.path), w.describe(specs, i))
			}
		}
	}
	return writers
}

// describe names the writer for a message about task i.
func (w writer) describe(specs []*taskSpec, i int) string {
	if w.task == i {
		return "output " + quote(w.out.Name)
	}
	return fmt.Sprintf("%s (line %d)", specs[w.task].label(), w.out.node.Line)
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

// label names the task in messages: `task "name"`, or `task #N` when it
// has no valid name.
func (t *taskSpec) label() string {
	if t.validName {
		return fmt.Sprintf("task %q", t.name)
	}
	return fmt.Sprintf("task #%d", t.index+1)
}

// scope returns the scope for messages about the task.
func (t *taskSpec) scope(p *parser) scope {
	return scope{p: p, prefix: t.label() + ": "}
}

// checkCycles reports one cycle for each group of tasks that wait for
// each other.
func (p *parser) checkCycles(specs []*taskSpec, tasks []Task) {
	for _, comp := range components(tasks) {
		if len(comp) < 2 {
			continue
		}
		start := slices.Min(comp)
		path := cycleFrom(tasks, start, comp)
		names := make([]string, len(path))
		for i, t := range path {
			if specs[t].validName {
				names[i] = specs[t].name
			} else {
				names[i] = fmt.Sprintf("#%d", t+1)
			}
		}
		p.errorf(specs[start].node, "cycle: %s", strings.Join(names, " -> "))
	}
}

// components returns the strongly connected components of the graph
// whose edges go from each task to the tasks in its After list (Tarjan's
// algorithm).
func components(tasks []Task) [][]int {
	n := len(tasks)
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
		for _, w := range tasks[v].After {
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
	for v := range tasks {
		if index[v] < 0 {
			visit(v)
		}
	}
	return comps
}

// cycleFrom returns a shortest cycle start -> ... -> start that stays in
// comp, a strongly connected component holding start.
func cycleFrom(tasks []Task, start int, comp []int) []int {
	in := map[int]bool{}
	for _, v := range comp {
		in[v] = true
	}
	prev := map[int]int{start: -1}
	queue := []int{start}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range tasks[v].After {
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
