package runner

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"trellis"
	"trellis/internal/workflow"
)

// Summary is how a workflow run ended.
type Summary struct {
	Tasks, Succeeded, Failed, Skipped int
	Elapsed                           time.Duration
	Results                           []*trellis.Result // in workflow order
}

// OK reports whether every task succeeded.
func (s *Summary) OK() bool { return s.Succeeded == s.Tasks }

// Build turns the workflow's tasks into trellis tasks, in the same order.
// Each declared file becomes one *trellis.File, shared by every task that
// names it; so does each client path that a task writes and others read.
// The workflow must come from workflow.Load or workflow.Parse. Building
// an unpacked local file reads the archive, to name the unpacked
// directory after its content.
func Build(wf *workflow.Workflow) []*trellis.Task {
	tasks := make([]*trellis.Task, len(wf.Tasks))
	files := declare(wf.Files)
	outputs := make(map[string]*trellis.File) // client path -> the output that writes it
	for i, wt := range wf.Tasks {
		t := &trellis.Task{Name: wt.Name, Command: wt.Command, Env: wt.Env,
			Resources: trellis.Resources{Cores: wt.Cores, MemoryMB: wt.MemoryMB, DiskMB: wt.DiskMB, GPUs: wt.GPUs},
			Retries:   wt.Retries, RetryOnError: wt.RetryOnError, TimeLimit: wt.TimeLimit, Priority: wt.Priority,
			Category: wt.Category, Tags: wt.Tags}
		for _, o := range wt.Outputs {
			if o.File != "" {
				t.AddOutput(files[o.File], o.Name)
				continue
			}
			f := trellis.Output(o.Local)
			outputs[o.Local] = f
			t.AddOutput(f, o.Name)
		}
		tasks[i] = t
	}
	for i, wt := range wf.Tasks {
		t := tasks[i]
		for _, in := range wt.Inputs {
			switch {
			case in.File != "":
				t.AddInput(files[in.File], in.Name)
			case in.Buffer != nil:
				t.AddInput(trellis.Buffer(in.Buffer), in.Name)
			case outputs[in.Local] != nil:
				t.AddInput(outputs[in.Local], in.Name)
			default:
				t.AddInput(trellis.LocalFile(in.Local), in.Name)
			}
		}
		for _, a := range wt.After {
			t.After = append(t.After, tasks[a])
		}
	}
	return tasks
}

// cacheLevels maps the values of a file's "cache" to trellis cache levels.
var cacheLevels = map[string]trellis.CacheLevel{
	"task":     trellis.CacheTask,
	"workflow": trellis.CacheWorkflow,
	"worker":   trellis.CacheWorker,
	"forever":  trellis.CacheForever,
}

// declare makes one trellis file for each declared file, by name. An
// unpacked file is made after the file it unpacks, whatever their order
// in the workflow; the workflow package has ruled out loops.
func declare(decls []workflow.File) map[string]*trellis.File {
	byName := make(map[string]*workflow.File, len(decls))
	for i := range decls {
		byName[decls[i].Name] = &decls[i]
	}
	files := make(map[string]*trellis.File, len(decls))
	var get func(d *workflow.File) *trellis.File
	get = func(d *workflow.File) *trellis.File {
		if f := files[d.Name]; f != nil {
			return f
		}
		var f *trellis.File
		switch d.Kind {
		case workflow.Local:
			f = trellis.LocalFile(d.Local)
		case workflow.Buffer:
			f = trellis.Buffer(d.Buffer)
		case workflow.URL:
			f = trellis.URL(d.URL)
		case workflow.Temp:
			f = trellis.Temp()
			if d.Replicas > 0 {
				f.Replicas(d.Replicas)
			}
		case workflow.Unpack:
			f = trellis.Unpack(get(byName[d.Unpack]), d.Format)
		default:
			panic(fmt.Sprintf("runner: file %q has unknown kind %v", d.Name, d.Kind))
		}
		if level, ok := cacheLevels[d.Cache]; ok {
			f.Cache(level)
		}
		files[d.Name] = f
		return f
	}
	for i := range decls {
		get(&decls[i])
	}
	return files
}

// Run submits the workflow and waits for every task, reporting to p.
// Cancelling ctx cancels the tasks still running.
func Run(ctx context.Context, c *trellis.Client, wf *workflow.Workflow, p *Progress) (*Summary, error) {
	start := time.Now()
	tasks := Build(wf)
	p.Begin(wf.Name, len(tasks))
	handles, err := c.Submit(ctx, tasks...)
	if err != nil {
		return nil, err
	}
	p.Submitted(handles)
	sum := &Summary{Tasks: len(tasks), Results: make([]*trellis.Result, len(tasks))}
	for i, h := range handles {
		r, err := h.Wait(ctx)
		if err != nil {
			// Interrupted: cancel what is left, and report what we know.
			ids := make([]uint64, 0, len(handles)-i)
			for _, h := range handles[i:] {
				ids = append(ids, h.ID)
			}
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c.Cancel(cctx, ids...)
			cancel()
			p.End()
			return nil, fmt.Errorf("workflow %s interrupted: %w", wf.Name, err)
		}
		sum.Results[i] = r
	}
	p.End()
	for i, r := range sum.Results {
		switch {
		case r.OK():
			sum.Succeeded++
		case skipped(wf, sum.Results, i) != "":
			sum.Skipped++
		default:
			sum.Failed++
		}
	}
	sum.Elapsed = time.Since(start)
	return sum, nil
}

// skipped reports whether task i never ran because a task it depends on failed.
func skipped(wf *workflow.Workflow, results []*trellis.Result, i int) string {
	if results[i].Kind != trellis.InputMissing {
		return ""
	}
	for _, a := range wf.Tasks[i].After {
		if !results[a].OK() {
			return wf.Tasks[a].Name
		}
	}
	return ""
}

// WriteSummary prints the outcome of every task that did not succeed, with
// the tail of its stderr, then one line of totals.
func WriteSummary(w io.Writer, wf *workflow.Workflow, s *Summary) {
	for i, r := range s.Results {
		if r.OK() {
			continue
		}
		wt := wf.Tasks[i]
		if dep := skipped(wf, s.Results, i); dep != "" {
			fmt.Fprintf(w, "SKIPPED %s (line %d): it depends on %q, which did not succeed\n", wt.Name, wt.Line, dep)
			continue
		}
		where := ""
		if r.Worker != "" {
			where = fmt.Sprintf(", attempt %d on %s", r.Attempts, r.Worker)
		}
		fmt.Fprintf(w, "FAILED  %s (line %d%s): %s: %s\n", wt.Name, wt.Line, where, r.Kind, r.Message)
		if tail := lastLines(r.Stderr, 10); tail != "" {
			fmt.Fprintf(w, "        stderr (last lines%s):\n", truncNote(r.StderrTruncated))
			for _, line := range strings.Split(tail, "\n") {
				fmt.Fprintf(w, "          %s\n", line)
			}
		}
	}
	status := "succeeded"
	if !s.OK() {
		status = "FAILED"
	}
	fmt.Fprintf(w, "workflow %s %s: %d tasks, %d succeeded, %d failed, %d skipped, in %s\n",
		wf.Name, status, s.Tasks, s.Succeeded, s.Failed, s.Skipped, s.Elapsed.Round(time.Millisecond))
}

func truncNote(truncated bool) string {
	if truncated {
		return "; earlier output dropped"
	}
	return ""
}

func lastLines(b []byte, n int) string {
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
