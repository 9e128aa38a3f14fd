package makeflow

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"trellis/internal/workflow"
)

// link turns the rules into tasks: a source that another rule targets
// makes the rule wait for that one. It reports targets made by two rules
// and cycles.
func (p *parser) link() []workflow.Task {
	producer := map[string]int{} // client path -> the rule that targets it
	for i, r := range p.rules {
		for _, t := range r.targets {
			if j, ok := producer[t.local]; ok {
				p.errorf(r.line, "target %q is already a target of rule %q (line %d): each file has one rule that makes it", t.remote, p.rules[j].name, p.rules[j].line)
				continue
			}
			producer[t.local] = i
		}
	}
	tasks := make([]workflow.Task, len(p.rules))
	for i, r := range p.rules {
		t := workflow.Task{Name: r.name, Line: r.line, Command: withTargetDirs(r.command, r.targets), Env: r.env,
			Cores: r.res.cores, MemoryMB: r.res.memory, DiskMB: r.res.disk, GPUs: r.res.gpus,
			Retries: workflow.DefaultRetries, Category: r.category}
		if r.local {
			t.Tags = []string{"LOCAL"}
		}
		for _, s := range r.sources {
			j, ok := producer[s.local]
			if !ok {
				j = -1
			} else if j == i {
				p.errorf(r.line, "rule %q has %q as both a source and a target: a rule cannot read what it makes", r.name, s.remote)
				continue
			} else {
				t.After = append(t.After, j)
			}
			t.Inputs = append(t.Inputs, workflow.Input{Name: s.remote, Local: s.local, Producer: j})
		}
		for _, o := range r.targets {
			t.Outputs = append(t.Outputs, workflow.Output{Name: o.remote, Local: o.local})
		}
		slices.SortFunc(t.Inputs, func(a, b workflow.Input) int { return strings.Compare(a.Name, b.Name) })
		slices.SortFunc(t.Outputs, func(a, b workflow.Output) int { return strings.Compare(a.Name, b.Name) })
		slices.Sort(t.After)
		t.After = slices.Compact(t.After)
		tasks[i] = t
	}
	if len(p.errs) == 0 {
		p.checkCycles(tasks)
	}
	return tasks
}

// checkCycles reports one cycle of rules, if there is any, as
// "a (line 1) -> b (line 4) -> a".
func (p *parser) checkCycles(tasks []workflow.Task) {
	const (
		unseen = iota
		onPath
		done
	)
	state := make([]int, len(tasks))
	type frame struct{ task, next int }
	for start := range tasks {
		if state[start] != unseen {
			continue
		}
		stack := []frame{{start, 0}}
		state[start] = onPath
		for len(stack) > 0 {
			f := &stack[len(stack)-1]
			if f.next == len(tasks[f.task].After) {
				state[f.task] = done
				stack = stack[:len(stack)-1]
				continue
			}
			a := tasks[f.task].After[f.next]
			f.next++
			switch state[a] {
			case unseen:
				state[a] = onPath
				stack = append(stack, frame{a, 0})
			case onPath:
				var names []string
				k := len(stack) - 1
				for stack[k].task != a {
					k--
				}
				for _, fr := range stack[k:] {
					names = append(names, describe(tasks[fr.task]))
				}
				// Each rule waits for the next one's target.
				p.errorf(tasks[a].Line, "rules form a cycle, each reading a target of the next: %s -> %s", strings.Join(names, " -> "), tasks[a].Name)
				return
			}
		}
	}
}

func describe(t workflow.Task) string {
	return t.Name + " (line " + strconv.Itoa(t.Line) + ")"
}

// withTargetDirs returns the command with a first line that makes the
// directories of its targets in the sandbox: the command may write
// out/x.txt, as it would in Makeflow's working directory, where out
// exists.
func withTargetDirs(command string, targets []file) string {
	var dirs []string
	for _, t := range targets {
		if d := filepath.Dir(t.remote); d != "." {
			dirs = append(dirs, "'"+strings.ReplaceAll(d, "'", `'\''`)+"'")
		}
	}
	if len(dirs) == 0 {
		return command
	}
	slices.Sort(dirs)
	return "mkdir -p -- " + strings.Join(slices.Compact(dirs), " ") + " || exit 1\n" + command
}
