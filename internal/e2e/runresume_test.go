package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// resumeWorkflow writes a workflow of n tasks to dir/wf.yaml. Each task
// logs its idempotency key to dir/runs.log when it starts, applies its
// effect once per key (a directory made under dir/effects, and a line in
// dir/effects.log), and writes out/NN.
func resumeWorkflow(t *testing.T, dir string, n int) string {
	t.Helper()
	var wf strings.Builder
	wf.WriteString("name: resume\ntasks:\n")
	for i := range n {
		fmt.Fprintf(&wf, "  - name: t%02d\n    effects: idempotent\n    command: >-\n      printf '%%s\\n' \"$TRELLIS_IDEMPOTENCY_KEY\" >> %[2]s/runs.log;\n      sleep 0.5;\n      if mkdir -p %[2]s/effects && mkdir \"%[2]s/effects/$(printf '%%s' \"$TRELLIS_IDEMPOTENCY_KEY\" | tr / _)\" 2>/dev/null;\n      then printf '%%s\\n' \"$TRELLIS_IDEMPOTENCY_KEY\" >> %[2]s/effects.log; fi;\n      printf 'result %[1]d\\n' > out\n    outputs: {out: out/%02[1]d}\n", i, dir)
	}
	path := filepath.Join(dir, "wf.yaml")
	writeFile(t, path, wf.String())
	return path
}

// outputs lists the output files the runs wrote (names of dir/out).
func outputs(dir string) []string {
	entries, _ := os.ReadDir(filepath.Join(dir, "out"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// checkOutputs checks that every task's output file holds its result.
func checkOutputs(t *testing.T, dir string, n int) {
	t.Helper()
	for i := range n {
		got, err := os.ReadFile(filepath.Join(dir, "out", fmt.Sprintf("%02d", i)))
		if want := fmt.Sprintf("result %d\n", i); err != nil || string(got) != want {
			t.Errorf("out/%02d: %q (%v), want %q", i, got, err, want)
		}
	}
}

var resumedLine = regexp.MustCompile(`trellis: resuming session (run-[0-9a-f]+): (\d+) of (\d+) tasks already finished`)

// killRunMidway starts trellis run --manager on wf, waits until at least
// 3 of its n outputs are written, and kills it with SIGKILL. It returns
// the keys logged by the tasks whose outputs were written (they had
// finished).
func killRunMidway(t *testing.T, c *cluster, env []string, dir, wf string, n int) (finished []string) {
	t.Helper()
	run := start(t, env, "run", "--manager", c.addr, "--secret-file", c.secretFile, wf)
	waitFor(t, time.Minute, "3 outputs", func() bool { return len(outputs(dir)) >= 3 })
	done := outputs(dir)
	run.signal(t, 9)
	run.wait(t, 10*time.Second)
	if len(done) == n {
		t.Fatalf("every task finished before the kill: the test tests nothing")
	}
	session := regexp.MustCompile(`trellis: session (run-[0-9a-f]+) at`).FindStringSubmatch(run.Output())
	if session == nil {
		t.Fatalf("the first run named no session:\n%s", run.Output())
	}
	for _, name := range done {
		i, _ := strconv.Atoi(name)
		finished = append(finished, fmt.Sprintf("%s/t%02d", session[1], i))
	}
	return finished
}

// resumeRun runs trellis run again on wf and checks that it resumed the
// killed run's session with at least min tasks already finished, that it
// succeeded, and its summary.
func resumeRun(t *testing.T, c *cluster, env []string, wf string, n, min int) {
	t.Helper()
	run := start(t, env, "run", "--manager", c.addr, "--secret-file", c.secretFile, wf)
	if code := run.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("the second run exited %d:\n%s", code, run.Output())
	}
	out := run.Output()
	m := resumedLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the second run did not say it resumed:\n%s", out)
	}
	if got, _ := strconv.Atoi(m[2]); got < min || m[3] != strconv.Itoa(n) {
		t.Errorf("resumed with %s of %s tasks already finished; want at least %d of %d", m[2], m[3], min, n)
	}
	if want := fmt.Sprintf("workflow resume succeeded: %d tasks, %d succeeded, 0 failed, 0 skipped", n, n); !strings.Contains(out, want) {
		t.Errorf("the second run's summary: want %q in:\n%s", want, out)
	}
	t.Logf("second run:\n%s", out)
}

// checkResumed checks, after a resumed run, that every output is right,
// that each of the n tasks ran, and that those that had finished before
// the kill (their keys in finished) ran once in all; it returns how many
// times each key ran.
func checkResumed(t *testing.T, dir string, n int, finished []string) map[string]int {
	t.Helper()
	checkOutputs(t, dir, n)
	runs := counts(fileLines(filepath.Join(dir, "runs.log")))
	if len(runs) != n {
		t.Errorf("%d tasks ran, want %d: %v", len(runs), n, runs)
	}
	for _, key := range finished {
		if runs[key] != 1 {
			t.Errorf("task %s, finished before the kill, ran %d times in all, want once", key, runs[key])
		}
	}
	return runs
}

// TestRunResumesAfterKill: a trellis run --manager is killed with SIGKILL
// midway and started again on the same file: it takes the first run's
// session over, says how many tasks had finished, and succeeds with every
// output right; every task ran exactly once in all (those that finished
// are not run again, and those that were running went on at the manager,
// not started again); every effect is applied once. A third run, after
// that normal finish, runs every task again, in a new session.
func TestRunResumesAfterKill(t *testing.T) {
	dir := t.TempDir()
	env := []string{"XDG_STATE_HOME=" + filepath.Join(dir, "xdg")}
	const n = 8
	c := newCluster(t)
	c.worker("w1", nil, "--cores", "2")
	c.waitWorkers(c.client(), 1)
	wf := resumeWorkflow(t, dir, n)
	finished := killRunMidway(t, c, env, dir, wf, n)
	resumeRun(t, c, env, wf, n, len(finished))
	runs := checkResumed(t, dir, n, finished)
	for key, times := range runs {
		if times != 1 {
			t.Errorf("task %s ran %d times, want once", key, times)
		}
	}
	if effects := counts(fileLines(filepath.Join(dir, "effects.log"))); len(effects) != n {
		t.Errorf("effects of %d keys, want %d", len(effects), n)
	}

	// After a normal finish nothing is left to resume: all runs again.
	third := start(t, env, "run", "--manager", c.addr, "--secret-file", c.secretFile, wf)
	code := third.wait(t, 2*time.Minute)
	if out := third.Output(); code != 0 || strings.Contains(out, "resuming") {
		t.Fatalf("third run: exit %d, want 0 and no resume:\n%s", code, out)
	}
	again := counts(fileLines(filepath.Join(dir, "runs.log")))
	if len(again) != 2*n {
		t.Errorf("after the third run %d keys ran, want %d (each task again, in a new session)", len(again), 2*n)
	}
	checkOutputs(t, dir, n)
}

// TestRunResumesAcrossManagerRestart: as TestRunResumesAfterKill, but the
// manager (with --state) is killed too, after the run, and restarted on
// its state before the second run: the second run takes the session over
// from the restarted manager, which knows the finished tasks' results
// from its journal. Tasks that finished before the kill did not run
// again; every effect is applied once.
func TestRunResumesAcrossManagerRestart(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	env := []string{"XDG_STATE_HOME=" + filepath.Join(dir, "xdg")}
	const n = 8
	c := newCluster(t, "--state", state)
	c.worker("w1", nil, "--cores", "2")
	c.waitWorkers(c.client(), 1)
	wf := resumeWorkflow(t, dir, n)
	finished := killRunMidway(t, c, env, dir, wf, n)
	c.killManager(t)
	c.restartManager(t, state, "--store", c.store)
	waitFor(t, 20*time.Second, "the manager to listen again", func() bool {
		conn, err := net.Dial("tcp", c.addr)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	resumeRun(t, c, env, wf, n, len(finished))
	checkResumed(t, dir, n, finished)
	effects := counts(fileLines(filepath.Join(dir, "effects.log")))
	if len(effects) != n {
		t.Errorf("effects of %d keys, want %d", len(effects), n)
	}
	for key, times := range effects {
		if times != 1 {
			t.Errorf("effect of %s applied %d times, want once", key, times)
		}
	}
}

// TestRunAfterSessionEnded: a trellis run --manager killed with SIGKILL
// whose session the manager has ended since (its client was away past
// --client-grace, and its unfinished tasks were cancelled) is not resumed:
// the next run says why and runs every task again, in a new session, and
// succeeds.
func TestRunAfterSessionEnded(t *testing.T) {
	dir := t.TempDir()
	env := []string{"XDG_STATE_HOME=" + filepath.Join(dir, "xdg")}
	const n = 8
	c := newCluster(t, "--client-grace", "1s")
	c.worker("w1", nil, "--cores", "2")
	c.waitWorkers(c.client(), 1)
	wf := resumeWorkflow(t, dir, n)
	finished := killRunMidway(t, c, env, dir, wf, n)
	waitFor(t, 30*time.Second, "the manager to end the killed run's session", func() bool {
		return strings.Contains(c.manager.Output(), "client away too long: its session ends")
	})
	run := start(t, env, "run", "--manager", c.addr, "--secret-file", c.secretFile, wf)
	if code := run.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("the second run exited %d:\n%s", code, run.Output())
	}
	out := run.Output()
	if !strings.Contains(out, "trellis: not resuming session run-") || !strings.Contains(out, "was ended by the manager: its client was away") || resumedLine.MatchString(out) {
		t.Errorf("the second run should say it does not resume the ended session, and why:\n%s", out)
	}
	t.Logf("second run:\n%s", out)
	checkOutputs(t, dir, n)
	runs := counts(fileLines(filepath.Join(dir, "runs.log")))
	second := 0
	for key := range runs {
		if !strings.HasPrefix(key, strings.Split(finished[0], "/")[0]+"/") {
			second++
		}
	}
	if second != n {
		t.Errorf("%d tasks ran in the second run's session, want all %d: %v", second, n, runs)
	}
}

// TestRunRefusedWhileFirstLives: a second trellis run of the same file
// against the same manager, while the first still runs, is refused, naming
// the first; the first goes on and succeeds.
func TestRunRefusedWhileFirstLives(t *testing.T) {
	dir := t.TempDir()
	env := []string{"XDG_STATE_HOME=" + filepath.Join(dir, "xdg")}
	c := newCluster(t)
	c.worker("w1", nil, "--cores", "2")
	wf := resumeWorkflow(t, dir, 8)
	first := start(t, env, "run", "--manager", c.addr, "--secret-file", c.secretFile, wf)
	waitFor(t, 30*time.Second, "the first run's session", func() bool { return strings.Contains(first.Output(), "trellis: session run-") })
	second := start(t, env, "run", "--manager", c.addr, "--secret-file", c.secretFile, wf)
	code := second.wait(t, time.Minute)
	if want := fmt.Sprintf("is running %s against %s: wait for it to end, or stop it", wf, c.addr); code != 1 || !strings.Contains(second.Output(), want) {
		t.Errorf("second run: exit %d, want 1 and %q in:\n%s", code, want, second.Output())
	}
	if code := first.wait(t, 2*time.Minute); code != 0 {
		t.Errorf("the first run exited %d:\n%s", code, first.Output())
	}
	checkOutputs(t, dir, 8)
}

// TestRunAfterFileChanged: a trellis run killed while one of its tasks
// waits for a gate, then the workflow file changed: the next run does not
// resume; it says why, the killed run's unfinished task is cancelled (the
// manager says so), and every task runs in the new session, which
// succeeds once the gate opens.
func TestRunAfterFileChanged(t *testing.T) {
	dir := t.TempDir()
	env := []string{"XDG_STATE_HOME=" + filepath.Join(dir, "xdg")}
	c := newCluster(t)
	c.worker("w1", nil, "--cores", "2")
	c.waitWorkers(c.client(), 1)
	wf := filepath.Join(dir, "wf.yaml")
	gate := filepath.Join(dir, "gate")
	const tasks = `tasks:
  - {name: a, command: "echo a > out", outputs: {out: out/a}}
  - {name: b, command: "echo b > out", outputs: {out: out/b}}
  - {name: slow, command: "while [ ! -e %s ]; do sleep 0.05; done; echo slow > out", outputs: {out: out/slow}}
`
	writeFile(t, wf, fmt.Sprintf(tasks, gate))
	first := start(t, env, "run", "--manager", c.addr, "--secret-file", c.secretFile, wf)
	waitFor(t, time.Minute, "a and b", func() bool { return len(outputs(dir)) == 2 })
	first.signal(t, 9)
	first.wait(t, 10*time.Second)
	writeFile(t, wf, fmt.Sprintf(tasks, gate)+"# changed\n")
	run := start(t, env, "run", "--manager", c.addr, "--secret-file", c.secretFile, wf)
	waitFor(t, time.Minute, "the killed run's slow task to be cancelled", func() bool {
		return strings.Contains(c.manager.Output(), "cancelling unfinished tasks, as an operator asked")
	})
	writeFile(t, gate, "")
	if code := run.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("the second run exited %d:\n%s", code, run.Output())
	}
	out := run.Output()
	if want := wf + " changed since a run of it was killed"; !strings.Contains(out, want) || resumedLine.MatchString(out) {
		t.Errorf("the second run should say %q and not resume:\n%s", want, out)
	}
	t.Logf("second run:\n%s", out)
	if !strings.Contains(out, "workflow wf succeeded: 3 tasks, 3 succeeded") {
		t.Errorf("the second run's summary:\n%s", out)
	}
}

// TestRunWithoutStateDir: a trellis run --manager that has nowhere to keep
// its state (the state directory cannot be made) says that it cannot be
// resumed, and runs.
func TestRunWithoutStateDir(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	writeFile(t, notDir, "")
	c := newCluster(t)
	c.worker("w1", nil, "--cores", "2")
	wf := resumeWorkflow(t, dir, 2)
	run := start(t, []string{"XDG_STATE_HOME=" + notDir}, "run", "--manager", c.addr, "--secret-file", c.secretFile, wf)
	if code := run.wait(t, time.Minute); code != 0 || !strings.Contains(run.Output(), "trellis: this run cannot be resumed if it is killed: run state: mkdir ") {
		t.Errorf("exit %d, want 0 and a warning that the run cannot be resumed:\n%s", code, run.Output())
	}
	checkOutputs(t, dir, 2)
}
