package runner

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"trellis"
	"trellis/internal/workflow"
)

// Summary is how a workflow run ended.
type Summary struct {
	Tasks, Calls               int
	Succeeded, Failed, Skipped int // tasks and calls together
	Elapsed                    time.Duration
	Results                    []*trellis.Result // in workflow order: the tasks, then the calls
	// Rerun counts the tasks the manager ran again to recreate lost files
	// during the run, and HandedBack the attempts handed back for a full
	// cache (differences of the manager's counters: other clients' work
	// at the same time counts too).
	Rerun, HandedBack int
	// Resumed: the run took over a killed run's session, whose tasks the
	// manager knew; AlreadyFinished of them had finished then.
	Resumed         bool
	AlreadyFinished int
}

// OK reports whether every task and call succeeded.
func (s *Summary) OK() bool { return s.Succeeded == s.Tasks+s.Calls }

// Run installs the workflow's libraries, submits its tasks and calls, and
// waits for every one, reporting to p; it writes the results of calls
// that have an output path. Cancelling ctx cancels what is still running.
func Run(ctx context.Context, c *trellis.Client, wf *workflow.Workflow, p *Progress) (*Summary, error) {
	start := time.Now()
	plan := Build(wf)
	sum := &Summary{Tasks: len(plan.Tasks), Calls: len(plan.Calls), Results: make([]*trellis.Result, len(plan.Tasks)+len(plan.Calls))}
	p.Begin(wf.Name, len(sum.Results))
	defer p.End()
	// Calls name their library, so it must be installed before they are
	// submitted. Its inputs may be files that the tasks write: installing
	// declares them, and an instance waits for them as a task would.
	failed, err := install(ctx, c, wf, plan)
	if err != nil {
		return nil, err
	}
	js := jobs(wf)
	batch, index := submission(plan, holdBack(wf, plan, failed), sum, js, p)
	before, _ := c.Status(ctx) // nil if it fails: the counts are then left out
	if before != nil {
		p.Follow(func() (int, int, error) {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			st, err := c.Status(sctx)
			if err != nil {
				return 0, 0, err
			}
			return st.TasksRecreated - before.TasksRecreated, st.TasksHandedBack - before.TasksHandedBack, nil
		})
	}
	handles, err := c.Submit(ctx, batch...)
	if err != nil {
		return nil, err
	}
	for _, h := range handles {
		sum.Resumed = sum.Resumed || h.Resumed
		if h.AlreadyFinished {
			sum.AlreadyFinished++
		}
	}
	if sum.Resumed {
		p.line(fmt.Sprintf("trellis: resuming session %s: %d of %d tasks already finished", c.Session(), sum.AlreadyFinished, len(handles)))
	}
	p.Submitted(handles, dependencies(js, handles, index))
	if err := collect(ctx, c, wf, handles, index, sum); err != nil {
		return nil, fmt.Errorf("workflow %s interrupted: %w", wf.Name, err)
	}
	sum.count(js)
	sum.Elapsed = time.Since(start)
	if after, err := c.Status(ctx); err == nil && before != nil {
		sum.Rerun = after.TasksRecreated - before.TasksRecreated
		sum.HandedBack = after.TasksHandedBack - before.TasksHandedBack
	}
	p.Counters(sum.Rerun, sum.HandedBack) // the final line agrees with the summary
	return sum, nil
}

// submission returns what to submit: the tasks, and the calls that are
// not held back in unsent, whose results go straight into sum. index maps
// each submitted task or call to its place in sum.Results.
func submission(plan *Plan, unsent map[int]*trellis.Result, sum *Summary, js []job, p *Progress) (batch []*trellis.Task, index []int) {
	batch, index = slices.Clone(plan.Tasks), make([]int, len(plan.Tasks), len(sum.Results))
	for i := range plan.Tasks {
		index[i] = i
	}
	for i, call := range plan.Calls {
		if r := unsent[i]; r != nil {
			sum.Results[len(plan.Tasks)+i] = r
			continue
		}
		batch = append(batch, call)
		index = append(index, len(plan.Tasks)+i)
	}
	for i := range plan.Calls { // once all are in sum.Results, to tell the skipped
		if r := unsent[i]; r != nil {
			skippedFor := ""
			for _, a := range js[len(plan.Tasks)+i].after {
				if dep := sum.Results[a]; dep != nil && !dep.OK() {
					skippedFor = js[a].name
					break
				}
			}
			p.Unsent(r, skippedFor)
		}
	}
	return batch, index
}

// dependencies lists, by task ID, the IDs of the submitted tasks and calls
// that each submitted one waits for.
func dependencies(js []job, handles []*trellis.Handle, index []int) map[uint64][]uint64 {
	ids := make(map[int]uint64, len(handles)) // by job
	for k, h := range handles {
		ids[index[k]] = h.ID
	}
	deps := make(map[uint64][]uint64)
	for k, h := range handles {
		for _, a := range js[index[k]].after {
			if id, ok := ids[a]; ok {
				deps[h.ID] = append(deps[h.ID], id)
			}
		}
	}
	return deps
}

// collect waits for every handle, writing the results of calls, and puts
// the results in sum. When ctx ends first, it cancels what is left.
func collect(ctx context.Context, c *trellis.Client, wf *workflow.Workflow, handles []*trellis.Handle, index []int, sum *Summary) error {
	for k, h := range handles {
		r, err := h.Wait(ctx)
		if err != nil {
			ids := make([]uint64, 0, len(handles)-k)
			for _, h := range handles[k:] {
				ids = append(ids, h.ID)
			}
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c.Cancel(cctx, ids...)
			cancel()
			return err
		}
		if i := index[k] - len(wf.Tasks); i >= 0 {
			writeResult(wf.Calls[i], r)
		}
		sum.Results[index[k]] = r
	}
	return nil
}

// count adds up how the tasks and calls ended.
func (s *Summary) count(js []job) {
	for i, r := range s.Results {
		switch {
		case r.OK():
			s.Succeeded++
		case skipped(js, s.Results, i) != "":
			s.Skipped++
		default:
			s.Failed++
		}
	}
}

// job is a task or a call, as the summary shows it.
type job struct {
	name  string
	line  int
	after []int // the jobs it waits for, indexing the tasks, then the calls
}

// jobs lists the workflow's tasks, then its calls, as the summary shows
// them.
func jobs(wf *workflow.Workflow) []job {
	js := make([]job, 0, len(wf.Tasks)+len(wf.Calls))
	for _, t := range wf.Tasks {
		js = append(js, job{name: t.Name, line: t.Line, after: t.After})
	}
	for _, c := range wf.Calls {
		after := append([]int(nil), c.After...)
		for _, a := range c.AfterCalls {
			after = append(after, len(wf.Tasks)+a)
		}
		js = append(js, job{name: callName(c), line: c.Line, after: after})
	}
	return js
}

// skipped returns the name of a job that job i depends on and that did
// not succeed, when job i never ran because of it; else "".
func skipped(js []job, results []*trellis.Result, i int) string {
	if results[i].Kind != trellis.InputMissing {
		return ""
	}
	for _, a := range js[i].after {
		if !results[a].OK() {
			return js[a].name
		}
	}
	return ""
}

// WriteSummary prints the outcome of every task and call that did not
// succeed, with the tail of its stderr and a call's traceback, then one
// line of totals.
func WriteSummary(w io.Writer, wf *workflow.Workflow, s *Summary) {
	js := jobs(wf)
	for i, r := range s.Results {
		if r.OK() {
			continue
		}
		j := js[i]
		if dep := skipped(js, s.Results, i); dep != "" {
			fmt.Fprintf(w, "SKIPPED %s (line %d): it depends on %q, which did not succeed\n", j.name, j.line, dep)
			continue
		}
		where := ""
		if r.Worker != "" {
			where = fmt.Sprintf(", attempt %d on %s", r.Attempts, r.Worker)
		}
		fmt.Fprintf(w, "FAILED  %s (line %d%s): %s: %s\n", j.name, j.line, where, r.Kind, r.Message)
		writeTail(w, "stderr (last lines"+truncNote(r.StderrTruncated)+")", r.Stderr, 10)
		writeTail(w, "traceback", []byte(r.Traceback), 30)
	}
	status := "succeeded"
	if !s.OK() {
		status = "FAILED"
	}
	counts := fmt.Sprintf("%d tasks", s.Tasks)
	if s.Calls > 0 {
		counts += fmt.Sprintf(", %d calls", s.Calls)
	}
	extra := ""
	if s.Rerun > 0 {
		extra += fmt.Sprintf("; %d tasks re-run to recreate lost files", s.Rerun)
	}
	if s.HandedBack > 0 {
		extra += fmt.Sprintf("; %d attempts waited for cache space", s.HandedBack)
	}
	fmt.Fprintf(w, "workflow %s %s: %s, %d succeeded, %d failed, %d skipped, in %s%s\n",
		wf.Name, status, counts, s.Succeeded, s.Failed, s.Skipped, s.Elapsed.Round(time.Millisecond), extra)
}

// writeTail prints the last n lines of text under a title, if there are
// any.
func writeTail(w io.Writer, title string, text []byte, n int) {
	tail := lastLines(text, n)
	if tail == "" {
		return
	}
	fmt.Fprintf(w, "        %s:\n", title)
	for _, line := range strings.Split(tail, "\n") {
		fmt.Fprintf(w, "          %s\n", line)
	}
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
