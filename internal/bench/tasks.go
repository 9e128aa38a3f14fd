package bench

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"time"

	"trellis"
)

// TasksResult is the output of `trellis bench tasks`.
type TasksResult struct {
	Bench          string  `json:"bench"`
	Tasks          int     `json:"tasks"`
	Workers        int     `json:"workers"`
	Slots          int     `json:"slots"` // tasks run at once: the parallelism of the spawn baseline too
	TasksPerS      float64 `json:"tasks_per_s"`
	FilesTasksPerS float64 `json:"files_tasks_per_s"`
	SpawnPerS      float64 `json:"spawn_per_s"`
	TasksVsSpawn   float64 `json:"tasks_vs_spawn"`
	FilesVsSpawn   float64 `json:"files_vs_spawn"`
	TasksSeconds   float64 `json:"tasks_seconds"`
	FilesSeconds   float64 `json:"files_seconds"`
	SpawnSeconds   float64 `json:"spawn_seconds"`
	Manager        string  `json:"manager,omitempty"` // the running cluster it ran on (--manager); none: embedded
}

// Tasks runs n trivial command tasks on tg (an embedded manager and
// workers, or a running cluster), then n tasks with one small input and
// one output each, and measures the ceiling: the same processes spawned
// here in a plain loop with the same parallelism (the cores of tg's
// workers).
func Tasks(ctx context.Context, n int, tg Target, logf func(string, ...any)) (*TasksResult, error) {
	c, done, err := tg.open(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	slots := 0
	for _, w := range st.Workers {
		slots += int(w.Total.Cores)
	}
	if slots == 0 {
		return nil, fmt.Errorf("no worker with cores is connected to the manager: start workers first")
	}
	res := &TasksResult{Bench: "tasks", Tasks: n, Workers: len(st.Workers), Slots: slots, Manager: tg.Manager}
	// The ceiling is measured before and after, and the faster run kept:
	// a noisy machine should not flatter trellis.
	logf("spawning %d processes in a plain loop, %d at a time", n, slots)
	if res.SpawnSeconds, err = spawn(ctx, n, slots, "true"); err != nil {
		return nil, err
	}

	plain := make([]*trellis.Task, n)
	for i := range plain {
		plain[i] = trellis.NewTask("true")
	}
	logf("running %d plain tasks on %d workers (%d slots)", n, res.Workers, slots)
	if res.TasksSeconds, err = runAll(ctx, c, plain); err != nil {
		return nil, err
	}
	withFiles := make([]*trellis.Task, n)
	for i := range withFiles {
		// Shell built-ins only: one process per task, as in the baseline.
		t := trellis.NewTask(`read -r line < in.txt; printf '%s\n' "$line" > out.txt`)
		t.AddInput(trellis.Buffer([]byte(fmt.Sprintf("input of task %d\n", i))), "in.txt")
		t.AddOutput(trellis.Output(""), "out.txt")
		withFiles[i] = t
	}
	logf("running %d tasks with one input and one output each", n)
	if res.FilesSeconds, err = runAll(ctx, c, withFiles); err != nil {
		return nil, err
	}
	logf("spawning %d processes in a plain loop again", n)
	again, err := spawn(ctx, n, slots, "true")
	if err != nil {
		return nil, err
	}
	res.SpawnSeconds = min(res.SpawnSeconds, again)
	res.TasksPerS = float64(n) / res.TasksSeconds
	res.FilesTasksPerS = float64(n) / res.FilesSeconds
	res.SpawnPerS = float64(n) / res.SpawnSeconds
	res.TasksVsSpawn = res.TasksPerS / res.SpawnPerS
	res.FilesVsSpawn = res.FilesTasksPerS / res.SpawnPerS
	return res, nil
}

// runAll submits tasks in one call and waits for all; any failure is an error.
func runAll(ctx context.Context, c *trellis.Client, tasks []*trellis.Task) (float64, error) {
	start := time.Now()
	hs, err := c.Submit(ctx, tasks...)
	if err != nil {
		return 0, err
	}
	for _, h := range hs {
		r, err := h.Wait(ctx)
		if err != nil {
			return 0, err
		}
		if !r.OK() {
			return 0, r.Err()
		}
	}
	return time.Since(start).Seconds(), nil
}

// spawn runs /bin/sh -c script n times, slots at a time: what the workers
// do for each task, without trellis; it returns the seconds it took.
func spawn(ctx context.Context, n, slots int, script string) (float64, error) {
	start := time.Now()
	jobs := make(chan struct{}, n)
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	var wg sync.WaitGroup
	errs := make(chan error, slots)
	for range slots {
		wg.Add(1)
		go func() { // exits when jobs is drained
			defer wg.Done()
			for range jobs {
				if err := exec.CommandContext(ctx, "/bin/sh", "-c", script).Run(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return time.Since(start).Seconds(), nil
}
