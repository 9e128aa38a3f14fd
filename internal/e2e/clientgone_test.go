package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"trellis"
)

// sleeper is a task that writes the ID of its process group (the shell
// leads it) to dir/pid-NAME, then sleeps for secs and says NAME.
func sleeper(dir, name string, secs int) string {
	return fmt.Sprintf("echo $$ > %s.tmp && mv %[1]s.tmp %[1]s; sleep %d; echo %s", filepath.Join(dir, "pid-"+name), secs, name)
}

func named(name, command string) *trellis.Task {
	t := trellis.NewTask(command)
	t.Name = name
	return t
}

// sleepersWorkflow writes a workflow of n tasks that sleep for 300 s.
func sleepersWorkflow(t *testing.T, dir string, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("name: sleepers\ntasks:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: t%d\n    command: %s\n", i, sleeper(dir, strconv.Itoa(i), 300))
	}
	path := filepath.Join(dir, "wf.yaml")
	writeFile(t, path, b.String())
	return path
}

// groups waits until the tasks named have written their process groups
// to dir, and returns them; the groups are killed when the test ends.
func groups(t *testing.T, dir string, names ...string) []int {
	t.Helper()
	pgids := make([]int, len(names))
	waitFor(t, 30*time.Second, fmt.Sprintf("tasks %v to start", names), func() bool {
		for i, name := range names {
			b, err := os.ReadFile(filepath.Join(dir, "pid-"+name))
			if err != nil {
				return false
			}
			if pgids[i], err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
				t.Fatalf("pid-%s holds %q", name, b)
			}
		}
		return true
	})
	t.Cleanup(func() { // a test that failed leaves no sleeper behind
		for _, g := range alive(t, pgids) {
			syscall.Kill(-g, syscall.SIGKILL)
		}
	})
	return pgids
}

// alive returns the process groups of pgids that still have a process
// that is not a zombie.
func alive(t *testing.T, pgids []int) []int {
	t.Helper()
	want := make(map[int]bool)
	for _, g := range pgids {
		want[g] = true
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	found := make(map[int]bool)
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 3 || f[0] == "Z" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); want[g] {
			found[g] = true
		}
	}
	var out []int
	for _, g := range pgids {
		if found[g] {
			out = append(out, g)
		}
	}
	return out
}

// waitGone waits until no process of pgids is left, failing the test at
// the deadline.
func waitGone(t *testing.T, pgids []int, deadline time.Time, what string) {
	t.Helper()
	for len(alive(t, pgids)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the process groups %v of the tasks still run", what, alive(t, pgids))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRunInterruptedCancelsTasks: SIGINT to `trellis run --manager` cancels
// the workflow's tasks, whose processes are gone within 10 s, and the run
// exits with 130 saying so.
func TestRunInterruptedCancelsTasks(t *testing.T) {
	c := newCluster(t)
	c.worker("w1", nil, "--cores", "2")
	dir := t.TempDir()
	run := start(t, nil, "run", "--quiet", "--manager", c.addr, "--secret-file", c.secretFile, sleepersWorkflow(t, dir, 2))
	pgids := groups(t, dir, "0", "1")
	run.signal(t, syscall.SIGINT)
	sent := time.Now()
	if code := run.wait(t, 10*time.Second); code != 130 {
		t.Errorf("trellis run exited with %d after SIGINT, want 130; output:\n%s", code, run.Output())
	}
	if want := "trellis: SIGINT: the workflow is interrupted and its unfinished tasks are cancelled\n"; !strings.HasSuffix(run.Output(), want) {
		t.Errorf("trellis run said:\n%s\nwant it to end with %q", run.Output(), want)
	}
	waitGone(t, pgids, sent.Add(10*time.Second), "10 s after SIGINT")
}

// TestClientKilledTasksCancelledAfterGrace: when `trellis run --manager` is
// killed with SIGKILL, its session is cancelled once the manager's client
// grace has passed.
func TestClientKilledTasksCancelledAfterGrace(t *testing.T) {
	const grace = 2 * time.Second
	c := newCluster(t, "--client-grace", grace.String())
	c.worker("w1", nil, "--cores", "2")
	dir := t.TempDir()
	run := start(t, nil, "run", "--quiet", "--manager", c.addr, "--secret-file", c.secretFile, sleepersWorkflow(t, dir, 2))
	pgids := groups(t, dir, "0", "1")
	run.signal(t, syscall.SIGKILL)
	run.wait(t, 10*time.Second)
	waitGone(t, pgids, time.Now().Add(grace+10*time.Second), "10 s past the grace after the client was killed")
	waitFor(t, 5*time.Second, "the manager to log why", func() bool {
		return strings.Contains(c.manager.Output(), "client away too long: its session ends and its unfinished tasks are cancelled")
	})
}

// TestClientAwayWithinGraceKeepsTasks: a Go client whose connection to the
// manager is down for 2 s of a 5 s client grace keeps its running tasks,
// which finish; once it is away for longer, its tasks are cancelled, and
// when it comes back its waits end with ErrSessionEnded saying why.
func TestClientAwayWithinGraceKeepsTasks(t *testing.T) {
	const grace = 5 * time.Second
	c := newCluster(t, "--client-grace", grace.String())
	c.worker("w1", nil, "--cores", "3")
	g := newProxy(t, c.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := trellis.Dial(ctx, g.ln.Addr().String(), trellis.WithSecret(c.secret()))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer cl.Close()
	dir := t.TempDir()

	// Away for less than the grace: the tasks run on and finish.
	hs, err := cl.Submit(ctx, named("a", sleeper(dir, "a", 4)), named("b", sleeper(dir, "b", 4)))
	if err != nil {
		t.Fatal(err)
	}
	groups(t, dir, "a", "b")
	g.shut()
	time.Sleep(2 * time.Second) // the outage: the manager sees the client's stream closed
	g.open()
	for _, h := range hs {
		if r := waitResult(t, h, 30*time.Second); !r.OK() || string(r.Stdout) != h.Name+"\n" {
			t.Errorf("task %s after an outage shorter than the grace: %s %q (%s); want success", h.Name, r.Kind, r.Stdout, r.Message)
		}
	}

	// Away for longer: the task is cancelled, and the client is told when it is back.
	hs, err = cl.Submit(ctx, named("c", sleeper(dir, "c", 300)))
	if err != nil {
		t.Fatal(err)
	}
	pgids := groups(t, dir, "c")
	g.shut()
	waitGone(t, pgids, time.Now().Add(grace+10*time.Second), "10 s past the grace after the client went")
	g.open()
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	_, err = hs[0].Wait(wctx)
	if want := "was ended by the manager: its client was away for more than 5s"; !errors.Is(err, trellis.ErrSessionEnded) || !strings.Contains(err.Error(), want) {
		t.Errorf("Wait once the client is back: %v; want ErrSessionEnded saying %q", err, want)
	}
}
