package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"trellis"
)

// TestManagerRecovers: a manager started with --state is killed with
// SIGKILL while a client's tasks run, and started again with the same
// --state on the same address. The client goes on waiting by itself and
// gets every result, with outputs byte for byte; a task whose result the
// client had before the kill does not run again (each task logs its
// TRELLIS_IDEMPOTENCY_KEY when it finishes its work).
func TestManagerRecovers(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	log := filepath.Join(dir, "effects.log")
	c := newCluster(t, "--state", state)
	c.worker("w1", nil, "--cores", "2")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := c.client()
	c.waitWorkers(cl, 1)

	const n = 12
	var tasks []*trellis.Task
	for i := range n {
		tk := trellis.NewTask(fmt.Sprintf(`sleep 0.3; printf 'result %d\n' > out; printf '%%s\n' "$TRELLIS_IDEMPOTENCY_KEY" >> "$LOG"; echo stdout %d`, i, i))
		tk.Name, tk.Key, tk.Env = fmt.Sprintf("t%02d", i), fmt.Sprintf("t%02d", i), []string{"LOG=" + log}
		tk.AddOutput(trellis.Output(filepath.Join(dir, fmt.Sprintf("out%02d", i))), "out")
		tasks = append(tasks, tk)
	}
	hs, err := cl.Submit(ctx, tasks...)
	if err != nil {
		t.Fatal(err)
	}
	ws := waitAll(ctx, hs)
	var before map[string]bool // results the client had before the kill
	waitFor(t, time.Minute, "3 results", func() bool {
		before = ws.had()
		return len(before) >= 3
	})
	// A second manager on the same state is refused, naming it.
	code, out := runTrellis(t, "manager", "--listen", "127.0.0.1:0", "--secret-file", c.secretFile, "--state", state)
	if want := "state directory in use by another manager: " + filepath.Join(state, "journal.db") + " is locked"; code == 0 || !strings.Contains(out, want) {
		t.Errorf("a second manager on the same --state: exit %d, output %q; want an error with %q", code, out, want)
	}
	c.manager.signal(t, 9)
	c.manager.wait(t, 10*time.Second)
	if len(before) == n {
		t.Fatalf("every task finished before the kill: the test tests nothing")
	}
	c.manager = start(t, nil, "manager", "--listen", c.addr, "--secret-file", c.secretFile, "--state", state)
	ws.wait()
	s, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Epoch != 2 || s.Journal == nil || s.Journal.Path != filepath.Join(state, "journal") || s.Journal.Error != "" {
		t.Errorf("status after the restart: epoch %d, journal %+v; want epoch 2 and %s without error", s.Epoch, s.Journal, filepath.Join(state, "journal"))
	}

	for i, h := range hs {
		r, err := ws.results[h.Name], ws.errs[h.Name]
		if err != nil {
			t.Fatalf("task %s: %v", h.Name, err)
		}
		if !r.OK() || string(r.Stdout) != fmt.Sprintf("stdout %d\n", i) {
			t.Errorf("task %s: %s %q (%s), want success with stdout %q", h.Name, r.Kind, r.Stdout, r.Message, fmt.Sprintf("stdout %d\n", i))
		}
		got, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("out%02d", i)))
		if want := fmt.Sprintf("result %d\n", i); err != nil || string(got) != want {
			t.Errorf("output of task %s: %q (%v), want %q", h.Name, got, err, want)
		}
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	runs := make(map[string]int) // by task key
	for _, line := range strings.Fields(string(data)) {
		_, key, _ := strings.Cut(line, "/")
		runs[key]++
	}
	for i, h := range hs {
		key := fmt.Sprintf("t%02d", i)
		switch {
		case runs[key] == 0:
			t.Errorf("task %s (key %s) never logged its effect", h.Name, key)
		case before[h.Name] && runs[key] != 1:
			t.Errorf("task %s finished before the kill but logged its effect %d times, want once", h.Name, runs[key])
		}
	}
	t.Logf("finished before the kill: %d of %d; effects logged: %d", len(before), n, len(strings.Fields(string(data))))
}

// TestRunRecovers: the same with `trellis run --manager`: the run goes on
// by itself across the restart, exits 0, and every output file is right.
func TestRunRecovers(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	log := filepath.Join(dir, "effects.log")
	c := newCluster(t, "--state", state)
	c.worker("w1", nil, "--cores", "2")
	c.waitWorkers(c.client(), 1)
	const n = 10
	var wf strings.Builder
	wf.WriteString("tasks:\n")
	for i := range n {
		fmt.Fprintf(&wf, "  - name: t%02d\n    command: sleep 0.3; printf 'result %d\\n' > out; printf '%%s\\n' \"$TRELLIS_IDEMPOTENCY_KEY\" >> %s\n    outputs: {out: out/%02d}\n", i, i, log, i)
	}
	writeFile(t, filepath.Join(dir, "wf.yaml"), wf.String())
	run := start(t, nil, "run", "--manager", c.addr, "--secret-file", c.secretFile, filepath.Join(dir, "wf.yaml"))
	outs := func() []string {
		entries, _ := os.ReadDir(filepath.Join(dir, "out"))
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	waitFor(t, time.Minute, "3 outputs", func() bool { return len(outs()) >= 3 })
	before := outs()
	c.manager.signal(t, 9)
	c.manager.wait(t, 10*time.Second)
	if len(before) == n {
		t.Fatalf("every task finished before the kill: the test tests nothing")
	}
	c.manager = start(t, nil, "manager", "--listen", c.addr, "--secret-file", c.secretFile, "--state", state)
	if code := run.wait(t, time.Minute); code != 0 {
		t.Fatalf("trellis run exited %d after the manager's restart:\n%s", code, run.Output())
	}
	for i := range n {
		got, err := os.ReadFile(filepath.Join(dir, "out", fmt.Sprintf("%02d", i)))
		if want := fmt.Sprintf("result %d\n", i); err != nil || string(got) != want {
			t.Errorf("out/%02d: %q (%v), want %q", i, got, err, want)
		}
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	runs := make(map[string]int) // by idempotency key
	for _, line := range strings.Fields(string(data)) {
		runs[line]++
	}
	if len(runs) != n {
		t.Errorf("%d distinct idempotency keys logged, want %d: %q", len(runs), n, data)
	}
	// Only the attempts running at the kill (2 cores) may run again:
	// no task whose end was journaled does.
	if lines := len(strings.Fields(string(data))); lines > n+2 {
		t.Errorf("%d effects logged for %d tasks on 2 cores, want at most %d: %q", lines, n, n+2, data)
	}
	t.Logf("outputs before the kill: %d of %d; effects logged: %d; run's output:\n%s", len(before), n, len(strings.Fields(string(data))), run.Output())
}

// TestRunningTaskAdopted: a manager with --state is killed with SIGKILL
// while a task runs on a worker process; restarted on the same --state,
// it adopts the attempt the worker still runs instead of running the task
// again. The task logs its TRELLIS_IDEMPOTENCY_KEY when it starts and when
// its effect is applied: each log has one line, and the client gets the
// result of that one attempt.
func TestRunningTaskAdopted(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	started, effects, gate := filepath.Join(dir, "started.log"), filepath.Join(dir, "effects.log"), filepath.Join(dir, "gate")
	c := newCluster(t, "--state", state)
	c.worker("w1", nil, "--cores", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := c.client()
	c.waitWorkers(cl, 1)
	tk := trellis.NewTask(`printf '%s\n' "$TRELLIS_IDEMPOTENCY_KEY" >> "$STARTED"; while [ ! -e "$GATE" ]; do sleep 0.05; done; printf '%s\n' "$TRELLIS_IDEMPOTENCY_KEY" >> "$EFFECTS"; echo "attempt $TRELLIS_ATTEMPT"`)
	tk.Name, tk.Key, tk.Env = "long", "long", []string{"STARTED=" + started, "EFFECTS=" + effects, "GATE=" + gate}
	hs, err := cl.Submit(ctx, tk)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the task to start", func() bool { return len(fileLines(started)) == 1 })
	// Its Run went without waiting for its Dispatched record (it is not
	// at-most-once): kill once the record (the third: start, submit,
	// dispatch) is on disk, or there is nothing to adopt.
	waitFor(t, time.Minute, "the dispatch to be journaled", func() bool {
		s, err := cl.Status(ctx)
		return err == nil && s.Journal != nil && s.Journal.Durable >= 3
	})
	c.manager.signal(t, 9)
	c.manager.wait(t, 10*time.Second)
	c.manager = start(t, nil, "manager", "--listen", c.addr, "--secret-file", c.secretFile, "--state", state)
	waitFor(t, time.Minute, "the manager to adopt the attempt", func() bool {
		return strings.Contains(c.manager.Output(), "adopted an attempt dispatched before the restart")
	})
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := hs[0].Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || string(r.Stdout) != "attempt 1\n" {
		t.Errorf("result: %s %q (%s); want success of attempt 1", r.Kind, r.Stdout, r.Message)
	}
	if s, e := fileLines(started), fileLines(effects); len(s) != 1 || len(e) != 1 || s[0] != e[0] {
		t.Errorf("started %q, effects %q; want one line each, the same key", s, e)
	}
}

// TestAtMostOnceWorkerLost (RECOVERY.md scenario 10): the worker running an
// at-most-once task is killed with SIGKILL. The task is not run again by
// itself: trellis status lists it in unknown. Only after trellis reconcile
// --rerun does one new attempt run, on the other worker; its effect is
// logged once.
func TestAtMostOnceWorkerLost(t *testing.T) {
	dir := t.TempDir()
	started, effects, gate := filepath.Join(dir, "started.log"), filepath.Join(dir, "effects.log"), filepath.Join(dir, "gate")
	c := newCluster(t)
	w1 := c.worker("w1", nil, "--cores", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := c.client()
	c.waitWorkers(cl, 1)
	tk := trellis.NewTask(`printf '%s\n' "$TRELLIS_ATTEMPT" >> "$STARTED"; while [ ! -e "$GATE" ]; do sleep 0.05; done; printf '%s\n' "$TRELLIS_IDEMPOTENCY_KEY" >> "$EFFECTS"`)
	tk.Name, tk.Key, tk.Effects = "pay", "pay", trellis.EffectsAtMostOnce
	tk.Env = []string{"STARTED=" + started, "EFFECTS=" + effects, "GATE=" + gate}
	hs, err := cl.Submit(ctx, tk)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the task to start", func() bool { return len(fileLines(started)) == 1 })
	c.worker("w2", nil, "--cores", "1")
	w1.signal(t, 9)
	w1.wait(t, 10*time.Second)
	var unknown []trellis.UnknownTask
	waitFor(t, time.Minute, "the task in unknown", func() bool {
		s, err := cl.Status(ctx)
		if err != nil {
			return false
		}
		unknown = s.UnknownTasks
		return len(unknown) == 1 && len(s.Workers) == 1
	})
	if u := unknown[0]; u.Task != hs[0].ID || u.Attempt != 1 || u.Name != "pay" {
		t.Errorf("unknown %+v; want task %d (pay), attempt 1", u, hs[0].ID)
	}
	if s := fileLines(started); len(s) != 1 {
		t.Fatalf("started %q before the reconcile; want one attempt", s)
	}
	if code, out := runTrellis(t, "reconcile", c.addr, strconv.FormatUint(hs[0].ID, 10), "--failed", "--rerun", "--secret-file", c.secretFile); code == 0 || !strings.Contains(out, "exactly one of") {
		t.Errorf("reconcile with two verdicts: exit %d, %q; want an error", code, out)
	}
	if code, out := runTrellis(t, "reconcile", c.addr, strconv.FormatUint(hs[0].ID, 10), "--rerun", "--secret-file", c.secretFile); code != 0 {
		t.Fatalf("reconcile --rerun: exit %d: %s", code, out)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := hs[0].Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Attempts != 2 {
		t.Errorf("result: %s (%s) after %d attempts; want success of attempt 2", r.Kind, r.Message, r.Attempts)
	}
	if s, e := fileLines(started), fileLines(effects); strings.Join(s, " ") != "1 2" || len(e) != 1 {
		t.Errorf("started %q, effects %q; want attempts 1 and 2 started and one effect", s, e)
	}
}

// fileLines returns the words of the file at path (none if it is missing).
func fileLines(path string) []string {
	b, _ := os.ReadFile(path)
	return strings.Fields(string(b))
}

// waits collects the results of tasks as their waits end.
type waits struct {
	mu      sync.Mutex
	results map[string]*trellis.Result // by task name, guarded by mu until wait returns
	errs    map[string]error
	wg      sync.WaitGroup
}

// waitAll waits for every task of hs, each in a goroutine of its own.
func waitAll(ctx context.Context, hs []*trellis.Handle) *waits {
	w := &waits{results: make(map[string]*trellis.Result), errs: make(map[string]error)}
	for _, h := range hs {
		w.wg.Add(1)
		go func() { // exits when the task's wait ends (ctx bounds it)
			defer w.wg.Done()
			r, err := h.Wait(ctx)
			w.mu.Lock()
			defer w.mu.Unlock()
			w.results[h.Name], w.errs[h.Name] = r, err
		}()
	}
	return w
}

// had returns the names of the tasks whose wait has ended so far.
func (w *waits) had() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[string]bool, len(w.results))
	for k := range w.results {
		m[k] = true
	}
	return m
}

// wait waits until every wait has ended.
func (w *waits) wait() { w.wg.Wait() }
