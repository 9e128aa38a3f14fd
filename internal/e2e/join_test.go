package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trellis"
)

// TestWorkerJoiningWhileTasksWait: a worker process that connects while
// tasks wait is welcomed at once, and its tasks run once each, round after
// round (it used to get its welcome batched with its first runs, refuse it,
// and reconnect, the tasks retried as "worker lost").
func TestWorkerJoiningWhileTasksWait(t *testing.T) {
	c := newCluster(t)
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for round := range 20 {
		var tasks []*trellis.Task
		for i := range 4 {
			tasks = append(tasks, trellis.NewTask(fmt.Sprintf("echo %d", i)))
		}
		hs, err := cl.Submit(ctx, tasks...)
		if err != nil {
			t.Fatal(err)
		}
		w := c.worker(fmt.Sprintf("w%d", round), nil, "--cores", "2")
		for _, h := range hs {
			r, err := h.Wait(ctx)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if !r.OK() || r.Attempts != 1 {
				t.Fatalf("round %d: task %s: %s in %d attempts (%s); want success in 1", round, h.Name, r.Kind, r.Attempts, r.Message)
			}
		}
		w.signal(t, 9)
		w.wait(t, 10*time.Second)
		if out := w.Output(); strings.Contains(out, "did not welcome") {
			t.Fatalf("round %d: the worker was refused:\n%s", round, out)
		}
		c.waitWorkers(cl, 0) // the next round's tasks must not go to this one
	}
}

// TestRunEmbeddedTrivialWorkflow: `trellis run` with its embedded cluster
// runs a 2-task workflow right, round after round.
func TestRunEmbeddedTrivialWorkflow(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "wf.yaml")
	writeFile(t, path, `
tasks:
  - name: a
    command: echo a
  - name: b
    command: echo b
`)
	for round := range 20 {
		code, out := runTrellis(t, "run", path)
		if code != 0 || strings.Contains(out, "worker lost") || strings.Contains(out, "did not welcome") {
			t.Fatalf("round %d: exit %d:\n%s", round, code, out)
		}
	}
}
