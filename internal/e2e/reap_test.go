package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"trellis"
	"trellis/internal/bench"
)

// processesUnder lists the live processes whose working directory is dir
// or below it, as "PID COMMAND LINE".
func processesUnder(dir string) []string {
	ents, _ := os.ReadDir("/proc")
	var found []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)) // fails for a zombie: it is dead
		if err != nil || cwd != dir && !strings.HasPrefix(cwd, dir+"/") {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		found = append(found, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
	}
	return found
}

// enforcement waits for the worker's start-up line and returns what it
// says of cpu and processes ("" when it has no such line).
func enforcement(t *testing.T, w *proc) (cpu, processes string) {
	t.Helper()
	waitFor(t, 20*time.Second, "the worker's enforcement line", func() bool {
		return strings.Contains(w.Output(), "msg=connected")
	})
	for line := range strings.SplitSeq(w.Output(), "\n") {
		if _, rest, ok := strings.Cut(line, "msg=enforcement cpu="); ok {
			cpu, processes, _ = strings.Cut(rest, " processes=")
			return cpu, processes
		}
	}
	return "", ""
}

// TestKilledWorkerTakesItsProcesses: SIGKILL a worker whose tasks have
// background children and nested shells, and whose library has a child of
// its own; within 5 s no process is left working in its sandboxes.
func TestKilledWorkerTakesItsProcesses(t *testing.T) {
	c := newCluster(t)
	workdir := filepath.Join(t.TempDir(), "victim")
	victim := c.worker("victim", nil, "--cores", "8", "--workdir", workdir)
	cl := c.client()
	c.waitWorkers(cl, 1)
	_, procs := enforcement(t, victim)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	marks := t.TempDir()
	commands := []string{
		"sleep 300 & touch %s; sleep 300",                // a background child
		"sh -c 'sleep 300 & sleep 300' & touch %s; wait", // a nested shell with its own child
		"sh -c 'sleep 300 &'; touch %s; sleep 300",       // an orphan, adopted by init
	}
	if strings.Contains(procs, "cgroup") {
		// Only a cgroup holds a process that leaves its process group.
		commands = append(commands, "setsid sleep 300 & touch %s; sleep 300")
	}
	var tasks []*trellis.Task
	for i, cmd := range commands {
		tasks = append(tasks, trellis.NewTask(fmt.Sprintf(cmd, filepath.Join(marks, strconv.Itoa(i)))))
	}
	if _, err := cl.Submit(ctx, tasks...); err != nil {
		t.Fatal(err)
	}
	lib := &trellis.Library{Name: "bench", Command: "sleep 300 & exec " + binary + " " + bench.BenchLibraryArg, Resources: trellis.Resources{Cores: 1}}
	if err := cl.Install(ctx, lib); err != nil {
		t.Fatal(err)
	}
	call, err := cl.Submit(ctx, trellis.NewCall("bench", "echo", []byte("hi")))
	if err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, call[0], time.Minute); !r.OK() || string(r.Output) != "hi" {
		t.Fatalf("call: %v, output %q; want success, %q", r.Err(), r.Output, "hi")
	}
	waitFor(t, 30*time.Second, "every task to start its children", func() bool {
		ents, _ := os.ReadDir(marks)
		return len(ents) == len(commands)
	})
	sandboxes := filepath.Join(workdir, "sandboxes")
	// Each task has at least its shell and two sleeps; the library its
	// process and a sleep.
	if got, want := len(processesUnder(sandboxes)), 3*len(commands)+2; got < want {
		t.Fatalf("%d processes in the sandboxes before the kill; want at least %d:\n%s", got, want, strings.Join(processesUnder(sandboxes), "\n"))
	}

	victim.signal(t, syscall.SIGKILL)
	victim.wait(t, 10*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for left := processesUnder(sandboxes); len(left) > 0; left = processesUnder(sandboxes) {
		if time.Now().After(deadline) {
			t.Fatalf("5 s after the worker was killed, %d processes still work in its sandboxes:\n%s", len(left), strings.Join(left, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTaskCoresAreEnforced: a task of a fifth of a core that keeps two
// processes busy gets about a fifth of a core's CPU time, where the worker
// enforces CPU. (A fifth, not one core: on a loaded machine two busy
// processes without a quota may get less than two cores, but rarely less
// than a fifth, so the test can tell.) Where the quota is applied at the
// task's first overrun (a v1 quota beside v2 cells: quotagate_linux.go),
// a task may run over it until the gate's next check, up to a second
// after its start on a loaded machine; so the task first keeps two
// processes busy for longer than that, and only what its next two use is
// measured.
func TestTaskCoresAreEnforced(t *testing.T) {
	c := newCluster(t)
	w := c.worker("w", nil, "--cores", "2")
	cl := c.client()
	c.waitWorkers(cl, 1)
	if cpu, _ := enforcement(t, w); strings.HasPrefix(cpu, `"not enforced`) {
		t.Skipf("the worker does not enforce CPU here: %s", cpu)
	}
	const seconds, quota = 2, 0.2
	// `times` prints the CPU time of the shell, then of its children.
	busy := func(secs float64) string {
		return fmt.Sprintf("for i in 1 2; do timeout %g sh -c 'while :; do :; done' & done; wait; times", secs)
	}
	task := trellis.NewTask(busy(1.5) + "; " + busy(seconds))
	task.Resources.Cores = quota
	hs, err := cl.Submit(context.Background(), task)
	if err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, hs[0], time.Minute)
	if !r.OK() {
		t.Fatalf("task: %v; stderr %s", r.Err(), r.Stderr)
	}
	lines := strings.Split(strings.TrimSpace(string(r.Stdout)), "\n")
	if len(lines) != 4 {
		t.Fatalf("times printed %q; want four lines", r.Stdout)
	}
	children := func(line string) time.Duration { // user and system time, as 0m1.990000s
		var cpu time.Duration
		for f := range strings.FieldsSeq(line) {
			m, s, ok := strings.Cut(strings.TrimSuffix(f, "s"), "m")
			mins, err1 := strconv.Atoi(m)
			secs, err2 := strconv.ParseFloat(s, 64)
			if !ok || err1 != nil || err2 != nil {
				t.Fatalf("times printed %q; cannot parse %q", r.Stdout, f)
			}
			cpu += time.Duration((float64(mins)*60 + secs) * float64(time.Second))
		}
		return cpu
	}
	cpu := children(lines[3]) - children(lines[1])
	cores := cpu.Seconds() / seconds
	t.Logf("two busy processes of a task of %g cores used %.2f cores over %d s (the first two, before: %.2f s of CPU)",
		quota, cores, seconds, children(lines[1]).Seconds())
	if cores > 1.3*quota {
		t.Errorf("a task of %g cores used %.2f cores; want at most %.2f", quota, cores, 1.3*quota)
	}
	if cores < quota/4 {
		t.Errorf("a task of %g cores used %.2f cores: is the measurement broken?", quota, cores)
	}
}

// TestKilledEmbeddedRunTakesItsProcesses: SIGKILL `trellis run` with its
// embedded cluster while its tasks have children that left their process
// group; within 5 s none is left (its workers have guards too).
func TestKilledEmbeddedRunTakesItsProcesses(t *testing.T) {
	dir, tmp := t.TempDir(), t.TempDir()
	wf := fmt.Sprintf("name: victims\ntasks:\n"+
		"  - name: a\n    command: \"setsid sleep 300 & touch %[1]s/a; sleep 300\"\n"+
		"  - name: b\n    command: \"sh -c 'sleep 300 &'; touch %[1]s/b; sleep 300\"\n", dir)
	path := filepath.Join(dir, "wf.yaml")
	writeFile(t, path, wf)
	run := start(t, []string{"TMPDIR=" + tmp}, "run", "--local-workers", "2", "--local-cores", "2", path)
	waitFor(t, 30*time.Second, "both tasks to start their children", func() bool {
		_, errA := os.Stat(filepath.Join(dir, "a"))
		_, errB := os.Stat(filepath.Join(dir, "b"))
		return errA == nil && errB == nil
	})
	if got := len(processesUnder(tmp)); got < 4 {
		t.Fatalf("%d processes in the embedded workers' sandboxes before the kill; want at least 4:\n%s", got, strings.Join(processesUnder(tmp), "\n"))
	}
	run.signal(t, syscall.SIGKILL)
	run.wait(t, 10*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for left := processesUnder(tmp); len(left) > 0; left = processesUnder(tmp) {
		if time.Now().After(deadline) {
			t.Fatalf("5 s after trellis run was killed, %d processes still work in its sandboxes:\n%s", len(left), strings.Join(left, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWorkerProcsFollowCores: a worker runs Go code on as many threads as
// the cores it offers, rounded up (at most the machine's); GOMAXPROCS in
// its environment wins.
func TestWorkerProcsFollowCores(t *testing.T) {
	c := newCluster(t)
	for _, tt := range []struct {
		env   []string
		cores string
		want  int
	}{
		{nil, "1", 1},
		{nil, "1.5", min(2, runtime.GOMAXPROCS(0))},
		{[]string{"GOMAXPROCS=3"}, "1", 3},
	} {
		w := c.worker("w"+tt.cores, tt.env, "--cores", tt.cores)
		want := fmt.Sprintf("gomaxprocs=%d ", tt.want)
		waitFor(t, 20*time.Second, "the worker's go runtime line", func() bool {
			return strings.Contains(w.Output(), "msg=\"go runtime\"")
		})
		if out := w.Output(); !strings.Contains(out, want) {
			t.Errorf("worker with --cores %s and env %q logged:\n%s\nwant %q", tt.cores, tt.env, out, want)
		}
	}
}
