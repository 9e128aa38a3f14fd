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
func Build(wf *workflow.Workflow) []*trellis.Task {
	tasks := make([]*trellis.Task, len(wf.Tasks))
	outputs := make(map[string]*trellis.File) // client path -> the output that writes it
	for i, wt := range wf.Tasks {
		t := &trellis.Task{Name: wt.Name, Command: wt.Command, Env: wt.Env,
			Resources: trellis.Resources{Cores: wt.Cores, MemoryMB: wt.MemoryMB, DiskMB: wt.DiskMB, GPUs: wt.GPUs},
			Retries:   wt.Retries, RetryOnError: wt.RetryOnError, TimeLimit: wt.TimeLimit, Priority: wt.Priority,
			Category: wt.Category, Tags: wt.Tags}
		for _, o := range wt.Outputs {
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
