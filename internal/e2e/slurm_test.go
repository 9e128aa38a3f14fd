package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"trellis"
)

// slurmUp skips the test unless a Slurm whose node localhost takes jobs
// runs here (.ci/slurm-up starts one).
func slurmUp(t *testing.T) {
	t.Helper()
	out, err := exec.Command("sinfo", "--noheader", "--nodes", "localhost", "--format", "%t").Output()
	state := strings.TrimSpace(string(out))
	if err != nil || !(strings.HasPrefix(state, "idle") || strings.HasPrefix(state, "mix") || strings.HasPrefix(state, "alloc")) {
		t.Skipf("no Slurm with node localhost taking jobs here (sinfo: %q, %v): run .ci/slurm-up as root to install and start one", state, err)
	}
}

// slurmJobs returns the Slurm jobs whose names start with prefix, by name.
func slurmJobs(t *testing.T, prefix string) map[string]string {
	t.Helper()
	out, err := exec.Command("squeue", "--noheader", "--format", "%i|%j").Output()
	if err != nil {
		t.Fatalf("squeue: %v", err)
	}
	ids := make(map[string]string)
	for line := range strings.Lines(string(out)) {
		id, name, _ := strings.Cut(strings.TrimSpace(line), "|")
		if strings.HasPrefix(name, prefix) {
			ids[name] = id
		}
	}
	return ids
}

// TestFactorySlurm: a factory with --batch slurm runs a workflow on
// workers that only Slurm started; stopped, it scancels them and no job of
// it is left in Slurm.
func TestFactorySlurm(t *testing.T) {
	slurmUp(t)
	prefix := fmt.Sprintf("trellis-test-%d", os.Getpid())
	t.Cleanup(func() { // exits no job behind, even when the test fails
		for _, id := range slurmJobs(t, prefix) {
			exec.Command("scancel", id).Run()
		}
	})
	c := newCluster(t)
	cl := c.client()
	logs := t.TempDir()
	f := start(t, nil, "factory", c.addr, "--secret-file", c.secretFile, "--batch", "slurm", "--max", "2",
		"--cores", "1", "--memory", "300", "--time-limit", "5m", "--output-dir", logs,
		"--interval", "300ms", "--idle-exit", "30s", "--drain-timeout", "1s", "--name", prefix)
	var tasks []*trellis.Task
	for i := range 6 {
		tasks = append(tasks, trellis.NewTask(fmt.Sprintf("sleep 0.5; echo %d", i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hs, err := cl.Submit(ctx, tasks...)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		r := waitResult(t, h, time.Minute)
		if !r.OK() || string(r.Stdout) != fmt.Sprintf("%d\n", i) {
			t.Fatalf("task %d: %v, stdout %q", i, r.Err(), r.Stdout)
		}
		// The workers idle-exit after 30 s: their jobs are still in Slurm.
		if _, ok := slurmJobs(t, prefix)[r.Worker]; !ok {
			t.Errorf("task %d ran on %q, which is no Slurm job of the factory (squeue: %v)", i, r.Worker, slurmJobs(t, prefix))
		}
	}
	if out, err := filepath.Glob(filepath.Join(logs, prefix+"-*.out")); err != nil || len(out) == 0 {
		t.Errorf("no job output file in --output-dir (%v)", err)
	}
	// Stop the factory while a worker runs a long task: only scancel ends
	// its job.
	if _, err := cl.Submit(ctx, trellis.NewTask("sleep 300")); err != nil {
		t.Fatal(err)
	}
	waitRunning(t, cl, 1, "the long task to run")
	f.signal(t, syscall.SIGTERM)
	f.wait(t, 20*time.Second)
	if ids := slurmJobs(t, prefix); len(ids) > 0 {
		t.Errorf("Slurm jobs %v of the factory are left after it stopped", ids)
	}
	waitFor(t, 20*time.Second, "the factory's workers to leave the manager", func() bool {
		s, err := cl.Status(ctx)
		return err == nil && len(s.Workers) == 0
	})
	if !strings.Contains(f.Output(), "factory stopped") {
		t.Errorf("the factory did not say it stopped:\n%s", f.Output())
	}
}
