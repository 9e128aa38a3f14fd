package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"trellis"
	"trellis/internal/txnlog"
	"trellis/sdk/python"
)

// TestLibraryInstallAndList: trellis library install reads a library file
// in the workflow syntax, and a Go client's calls run in what it installed;
// trellis library list shows it.
func TestLibraryInstallAndList(t *testing.T) {
	needPython(t)
	c := newCluster(t)
	cl := c.client()
	c.worker("w1", nil, "--cores", "2")
	c.waitWorkers(cl, 1)
	dir := t.TempDir()
	for name, data := range map[string][]byte{"trellis_library.py": python.SDK, "lib.py": []byte(slowLibrary)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	libs := filepath.Join(dir, "libs.yaml")
	if err := os.WriteFile(libs, []byte(`libraries:
  - name: slow
    command: python3 lib.py
    inputs:
      trellis_library.py: trellis_library.py
      lib.py: lib.py
    slots: 2
`), 0o644); err != nil {
		t.Fatal(err)
	}

	code, out := runTrellis(t, "library", "install", c.addr, libs, "--secret-file", c.secretFile)
	if code != 0 || out != "installed library slow\n" {
		t.Fatalf("trellis library install: exit %d, output %q; want 0, \"installed library slow\\n\"", code, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := cl.Call(ctx, "slow", "repeat", []byte("ab"))
	if err != nil || string(got) != "ababab" {
		t.Fatalf("Call(slow.repeat, ab) = %q, %v; want \"ababab\", nil", got, err)
	}
	code, out = runTrellis(t, "library", "list", c.addr, "--secret-file", c.secretFile)
	if code != 0 || !strings.Contains(out, "LIBRARY") || !strings.Contains(out, "\nslow ") {
		t.Errorf("trellis library list: exit %d, want 0 and a line for library slow:\n%s", code, out)
	}

	// Removed while a call runs and another waits: both fail saying so,
	// the instance stops, and the library is no longer listed.
	busy, err := cl.Submit(ctx, trellis.NewCall("slow", "nap", []byte(`{"s": 600, "i": 1}`)),
		trellis.NewCall("slow", "nap", []byte(`{"s": 600, "i": 2}`)), trellis.NewCall("slow", "nap", []byte(`{"s": 600, "i": 3}`)))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "two calls to run", func() bool {
		s, err := cl.Status(ctx)
		return err == nil && s.Calls.Running == 2
	})
	code, out = runTrellis(t, "library", "remove", c.addr, "slow", "--secret-file", c.secretFile)
	if code != 0 || out != "removed library slow\n" {
		t.Fatalf("trellis library remove: exit %d, output %q; want 0, \"removed library slow\\n\"", code, out)
	}
	const why = "library slow was removed (trellis library remove): install it again to call it"
	for _, h := range busy {
		if r := waitResult(t, h, 30*time.Second); r.Kind != trellis.Failed || r.Message != why {
			t.Errorf("call %d after trellis library remove: %v %q, want failed %q", h.ID, r.Kind, r.Message, why)
		}
	}
	waitFor(t, 20*time.Second, "the instances to stop", func() bool {
		s, err := cl.Status(ctx)
		return err == nil && s.Instances.Running == 0 && len(s.Libraries) == 0
	})
	code, out = runTrellis(t, "library", "remove", c.addr, "slow", "--secret-file", c.secretFile)
	if code == 0 || !strings.Contains(out, `library "slow" is not installed: trellis library list shows those that are`) {
		t.Errorf("trellis library remove of a removed library: exit %d, want non-zero saying it is not installed:\n%s", code, out)
	}
	code, out = runTrellis(t, "library", "list", c.addr, "--secret-file", c.secretFile)
	if code != 0 || out != "no libraries installed\n" {
		t.Errorf("trellis library list after remove: exit %d, output %q; want 0, \"no libraries installed\\n\"", code, out)
	}

	if err := os.WriteFile(libs, []byte("libraries: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out = runTrellis(t, "library", "install", c.addr, libs, "--secret-file", c.secretFile)
	if code == 0 || !strings.Contains(out, `missing required field "libraries"`) {
		t.Errorf("trellis library install of an empty list: exit %d, want non-zero naming the missing libraries:\n%s", code, out)
	}
}

// TestCancelByID: trellis cancel stops another client's running task,
// which that client sees end as cancelled, and leaves its other task be.
func TestCancelByID(t *testing.T) {
	c := newCluster(t)
	cl := c.client()
	c.worker("w1", nil, "--cores", "2")
	c.waitWorkers(cl, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hs, err := cl.Submit(ctx, named("long", "sleep 600"), named("short", "echo done"))
	if err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, hs[1], time.Minute); !r.OK() {
		t.Fatalf("task short: %v, want success", r.Err())
	}
	waitRunning(t, cl, 1, "task long to run")

	code, out := runTrellis(t, "cancel", c.addr, strconv.FormatUint(hs[0].ID, 10), "--secret-file", c.secretFile)
	if code != 0 || out != "asked the manager to cancel 1 task\n" {
		t.Fatalf("trellis cancel: exit %d, output %q; want 0, \"asked the manager to cancel 1 task\\n\"", code, out)
	}
	if r := waitResult(t, hs[0], 30*time.Second); r.Kind != trellis.Cancelled {
		t.Errorf("task long after trellis cancel: %v, want cancelled", r.Kind)
	}

	code, out = runTrellis(t, "cancel", c.addr, "x1", "--secret-file", c.secretFile)
	if code == 0 || !strings.Contains(out, `task "x1": give a task ID, a number`) {
		t.Errorf("trellis cancel x1: exit %d, want non-zero asking for a number:\n%s", code, out)
	}
}

// TestCancelSession: trellis cancel --session cancels every unfinished
// task of another client's session, running and waiting, and leaves its
// finished task and a third client's task alone.
func TestCancelSession(t *testing.T) {
	c := newCluster(t)
	cl, other := c.client(), c.client()
	c.worker("w1", nil, "--cores", "1")
	c.waitWorkers(cl, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done, err := cl.Submit(ctx, named("quick", "echo done"))
	if err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, done[0], time.Minute); !r.OK() {
		t.Fatalf("task quick: %v, want success", r.Err())
	}
	hs, err := cl.Submit(ctx, named("long", "sleep 600"), named("queued", "sleep 600"))
	if err != nil {
		t.Fatal(err)
	}
	waitRunning(t, cl, 1, "task long to run")
	keep, err := other.Submit(ctx, named("other", "echo other"))
	if err != nil {
		t.Fatal(err)
	}

	code, out := runTrellis(t, "cancel", c.addr, "--session", cl.Session(), "--secret-file", c.secretFile)
	if want := "asked the manager to cancel 2 unfinished tasks of session " + cl.Session() + "\n"; code != 0 || out != want {
		t.Fatalf("trellis cancel --session: exit %d, output %q; want 0, %q", code, out, want)
	}
	for _, h := range hs {
		if r := waitResult(t, h, 30*time.Second); r.Kind != trellis.Cancelled {
			t.Errorf("task %d after trellis cancel --session: %v, want cancelled", h.ID, r.Kind)
		}
	}
	if r := waitResult(t, keep[0], time.Minute); !r.OK() {
		t.Errorf("the other client's task: %v, want success", r.Err())
	}
	code, out = runTrellis(t, "cancel", c.addr, "--session", cl.Session(), "--secret-file", c.secretFile)
	if code == 0 || !strings.Contains(out, "session "+cl.Session()+" has no unfinished task at the manager") {
		t.Errorf("trellis cancel --session again: exit %d, want non-zero saying it has none:\n%s", code, out)
	}
	code, out = runTrellis(t, "cancel", c.addr, "--secret-file", c.secretFile)
	if code == 0 || !strings.Contains(out, "give the manager's HOST:PORT and task IDs, or --session SESSION, or --workflow WORKFLOW") {
		t.Errorf("trellis cancel with nothing to cancel: exit %d, want non-zero saying what to give:\n%s", code, out)
	}
}

// TestStatusWatchJSON: trellis status --watch --json prints the snapshot
// as one line when it changes, sees a task end, and stops on SIGINT.
func TestStatusWatchJSON(t *testing.T) {
	c := newCluster(t)
	cl := c.client()
	c.worker("w1", nil, "--cores", "1")
	c.waitWorkers(cl, 1)
	w := start(t, nil, "status", c.addr, "--watch", "--json", "--secret-file", c.secretFile)
	lines := func() []string {
		out := w.Output()
		if i := strings.LastIndexByte(out, '\n'); i >= 0 {
			return strings.Split(out[:i], "\n") // whole lines only
		}
		return nil
	}
	waitFor(t, 20*time.Second, "the first snapshot", func() bool { return len(lines()) > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hs, err := cl.Submit(ctx, named("hi", "echo hi"))
	if err != nil {
		t.Fatal(err)
	}
	waitResult(t, hs[0], time.Minute)
	waitFor(t, 20*time.Second, "a snapshot with the task succeeded", func() bool {
		ls := lines()
		var s trellis.Status
		return json.Unmarshal([]byte(ls[len(ls)-1]), &s) == nil && s.Succeeded == 1
	})
	w.signal(t, syscall.SIGINT)
	if code := w.wait(t, 20*time.Second); code != 0 {
		t.Errorf("trellis status --watch after SIGINT: exit %d, want 0", code)
	}
	prev := ""
	for i, l := range lines() {
		var s trellis.Status
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			t.Fatalf("line %d of trellis status --watch --json: %v: %q", i+1, err, l)
		}
		s.SnapshotTime = time.Time{}
		b, _ := json.Marshal(s)
		if string(b) == prev {
			t.Errorf("line %d of trellis status --watch --json is the line before it again, its time aside", i+1)
		}
		prev = string(b)
	}

	// For people: the terminal cleared and the status drawn again each second.
	h := start(t, nil, "status", c.addr, "--watch", "--secret-file", c.secretFile)
	draw := "\x1b[H\x1b[2Jmanager " + c.addr
	waitFor(t, 20*time.Second, "two drawings of the status", func() bool { return strings.Count(h.Output(), draw) >= 2 })
	h.signal(t, syscall.SIGINT)
	if code := h.wait(t, 20*time.Second); code != 0 || !strings.Contains(h.Output(), "tasks: 0 waiting for inputs, 0 ready, 0 staging inputs, 0 running, 1 finished (1 succeeded, 0 failed)") {
		t.Errorf("trellis status --watch: exit %d, want 0 and the finished task counted:\n%q", code, h.Output())
	}
}

// TestCallTimeoutSaysWhat: trellis call --timeout names what did not end
// in time: reaching the manager, or the call itself.
func TestCallTimeoutSaysWhat(t *testing.T) {
	c := newCluster(t) // no worker: the call never gets a slot
	dir := t.TempDir()
	libs := filepath.Join(dir, "libs.yaml")
	if err := os.WriteFile(libs, []byte("libraries:\n  - {name: slow, command: sleep 100}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := runTrellis(t, "library", "install", c.addr, libs, "--secret-file", c.secretFile); code != 0 {
		t.Fatalf("trellis library install: exit %d:\n%s", code, out)
	}
	code, out := runTrellis(t, "call", c.addr, "slow", "nap", "{}", "--timeout", "500ms", "--secret-file", c.secretFile)
	if want := "trellis: call slow.nap: no result within --timeout 500ms; the call was cancelled\n"; code != 1 || out != want {
		t.Errorf("trellis call --timeout with no worker: exit %d, output %q; want 1, %q", code, out, want)
	}

	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	code, out = runTrellis(t, "call", silent.Addr().String(), "slow", "nap", "{}", "--timeout", "500ms", "--secret-file", c.secretFile)
	if want := "trellis: connect to the manager at " + silent.Addr().String() + ": no answer within --timeout 500ms\n"; code != 1 || out != want {
		t.Errorf("trellis call --timeout to a silent address: exit %d, output %q; want 1, %q", code, out, want)
	}
}

// TestRunProgressAgreesWithSummary: trellis run names a skipped task's
// failed producer by its name as it happens, and its last count line
// agrees with the summary.
func TestRunProgressAgreesWithSummary(t *testing.T) {
	wf := filepath.Join(t.TempDir(), "wf.yaml")
	if err := os.WriteFile(wf, []byte(`files:
  d: {temp: true}
tasks:
  - name: make-data
    command: exit 3
    outputs: {out.txt: {file: d}}
  - name: use-data
    command: cat in.txt
    inputs: {in.txt: {file: d}}
  - name: after-use
    command: "true"
    after: [use-data]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runTrellis(t, "run", wf)
	for _, want := range []string{
		"\nskipped use-data: it depends on \"make-data\", which did not succeed\n",
		"\nskipped after-use: it depends on \"use-data\", which did not succeed\n",
		"] wf: 0 waiting, 0 running, 0 done, 1 failed, 2 skipped (of 3, 100%)\n",
		"\nworkflow wf FAILED: 3 tasks, 0 succeeded, 1 failed, 2 skipped, in ",
	} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("trellis run: exit %d, want 1 and %q in:\n%s", code, want, out)
		}
	}
	if strings.Contains(out, "task 1") {
		t.Errorf("trellis run names a task by its internal ID:\n%s", out)
	}
}

// TestRunTxnLog: trellis run --txn-log writes the embedded cluster's
// transaction log, which holds the run's task from submission to its end;
// with --manager the flag is refused, saying where it belongs.
func TestRunTxnLog(t *testing.T) {
	dir := t.TempDir()
	wf, path := filepath.Join(dir, "wf.yaml"), filepath.Join(dir, "txn.jsonl")
	// A 1 MiB input is too large to travel inline: a transfer brings it.
	if err := os.WriteFile(filepath.Join(dir, "data.bin"), bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wf, []byte("tasks:\n  - {name: hello, command: wc -c in.bin, inputs: {in.bin: data.bin}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := runTrellis(t, "run", "--local-workers", "1", "--txn-log", path, wf); code != 0 {
		t.Fatalf("trellis run --txn-log: exit %d:\n%s", code, out)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("the transaction log of trellis run --txn-log: %v", err)
	}
	defer f.Close()
	recs, err := txnlog.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var hello uint64
	for _, r := range recs {
		if r.Task != 0 {
			got = append(got, strings.Join(strings.Fields(r.Event+" "+r.Name+" "+r.Result), " "))
		}
		if r.Event == txnlog.TaskSubmitted {
			hello = r.Task
		}
	}
	want := []string{"task_submitted hello", "task_placed", "task_staging", "task_running", "task_done success"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("task records of the run's transaction log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	got = got[:0]
	for _, r := range recs {
		if r.Transfer != 0 {
			got = append(got, fmt.Sprintf("%s %s %d %s", r.Event, r.Route, r.Bytes, r.Result))
			if r.File == "" || r.Worker == "" {
				t.Errorf("transfer record %+v lacks its file or worker", r)
			}
		}
		if r.Event == txnlog.TaskStaging && (r.Task != hello || r.Transfer == 0 || r.File == "") {
			t.Errorf("staging record %+v: want task %d (hello), its transfer and file", r, hello)
		}
	}
	// The task stages: its input starts to travel, named for it.
	want = []string{"task_staging manager_to_worker 1048576 ", "transfer_started manager_to_worker 1048576 ", "transfer_ended manager_to_worker 1048576 success"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("transfer records of the run's transaction log (-want +got):\n%s", diff)
	}

	// trellis plot draws it.
	fig := filepath.Join(dir, "run.svg")
	if code, out := runTrellis(t, "plot", path, "-o", fig); code != 0 || !strings.Contains(out, "1 tasks and 0 calls submitted, 1 attempts placed on 1 workers") ||
		!strings.Contains(out, "staging inputs") {
		t.Errorf("trellis plot: exit %d, want 0 and the run's summary:\n%s", code, out)
	}
	if b, err := os.ReadFile(fig); err != nil || !bytes.HasPrefix(b, []byte("<?xml")) {
		t.Errorf("trellis plot's figure: %d bytes, %v; want an SVG file", len(b), err)
	}

	code, out := runTrellis(t, "run", "--manager", "127.0.0.1:1", "--secret-file", path, "--txn-log", path, wf)
	if want := "--txn-log " + path + ": the manager at 127.0.0.1:1 writes its own: give --txn-log to trellis manager there"; code != 1 || !strings.Contains(out, want) {
		t.Errorf("trellis run --manager --txn-log: exit %d, want 1 and %q in:\n%s", code, want, out)
	}
}

// TestRunLogs: trellis run --logs DIR writes each task's stdout and
// stderr tails, failed ones too; a skipped task has none.
func TestRunLogs(t *testing.T) {
	dir := t.TempDir()
	wf, logs := filepath.Join(dir, "wf.yaml"), filepath.Join(dir, "logs")
	if err := os.WriteFile(wf, []byte(`tasks:
  - name: chatty
    command: "echo out; echo err >&2"
  - name: bad.one
    command: "echo before; exit 3"
  - name: never
    command: "true"
    after: [bad.one]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := runTrellis(t, "run", "--local-workers", "1", "--logs", logs, wf); code != 1 || !strings.Contains(out, "1 succeeded, 1 failed, 1 skipped") {
		t.Fatalf("trellis run --logs: exit %d, want 1 and 1 succeeded, 1 failed, 1 skipped:\n%s", code, out)
	}
	got := map[string]string{}
	entries, err := os.ReadDir(logs)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(logs, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got[e.Name()] = string(b)
	}
	want := map[string]string{"chatty.stdout": "out\n", "chatty.stderr": "err\n", "bad.one.stdout": "before\n", "bad.one.stderr": ""}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files under --logs (-want +got):\n%s", diff)
	}
}

// TestTxnLogInstances: the transaction log follows a library instance
// from its start to its end (here by trellis library remove).
func TestTxnLogInstances(t *testing.T) {
	needPython(t)
	path := filepath.Join(t.TempDir(), "txn.jsonl")
	c := newCluster(t, "--txn-log", path)
	cl := c.client()
	c.worker("w1", nil, "--cores", "2")
	c.waitWorkers(cl, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.Install(ctx, pythonLibrary("slow")); err != nil {
		t.Fatal(err)
	}
	if got, err := cl.Call(ctx, "slow", "repeat", []byte("ab")); err != nil || string(got) != "ababab" {
		t.Fatalf("Call(slow.repeat, ab) = %q, %v; want \"ababab\", nil", got, err)
	}
	// One set-up and one call: one observation in each histogram.
	m := c.scrape(t)
	for _, name := range []string{"trellis_library_cold_start_seconds_count", "trellis_call_seconds_count"} {
		if m[name] != 1 {
			t.Errorf("/metrics %s = %v, want 1", name, m[name])
		}
	}
	// The status (and so the overview) shows the library's cold start:
	// mean and latest the one observed, within the histogram's sum.
	st, err := cl.Status(ctx)
	if err != nil || len(st.Libraries) != 1 {
		t.Fatalf("status: %v libraries, %v; want slow", st.Libraries, err)
	}
	l, sum := st.Libraries[0], time.Duration(m["trellis_library_cold_start_seconds_sum"]*float64(time.Second))
	if l.ColdStartMean <= 0 || l.ColdStartMean != l.ColdStartLatest || (l.ColdStartMean-sum).Abs() > time.Millisecond {
		t.Errorf("library slow: cold start mean %v, latest %v; want both the one observed, %v", l.ColdStartMean, l.ColdStartLatest, sum)
	}
	if err := cl.RemoveLibrary(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
	var got []string
	waitFor(t, 20*time.Second, "the log to show the instance's end", func() bool {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		recs, err := txnlog.Read(f)
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, r := range recs {
			if r.Instance != 0 {
				got = append(got, strings.Join(strings.Fields(fmt.Sprintf("%s %d %s %d %s %s", r.Event, r.Instance, r.Library, r.Attempt, r.Worker, r.Result)), " "))
			}
		}
		return len(got) == 3
	})
	want := []string{"instance_started 1 slow 1 w1", "instance_ready 1 slow 1 w1", "instance_ended 1 slow 1 w1 success"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("instance records of the transaction log (-want +got):\n%s", diff)
	}
}

// TestCancelWorkflow: two workflows run at once on one manager, each
// from its own trellis run process; trellis cancel --workflow cancels the
// unfinished tasks of one, and the other finishes with its output
// byte-identical. A workflow the manager never saw is a clear error.
func TestCancelWorkflow(t *testing.T) {
	c := newCluster(t)
	cl := c.client()
	c.worker("w1", nil, "--cores", "4")
	c.waitWorkers(cl, 1)
	alpha, beta := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(alpha, "wf.yaml"), fmt.Sprintf("name: alpha\ntasks:\n  - {name: s0, command: %q}\n  - {name: s1, command: %q}\n",
		sleeper(alpha, "0", 300), sleeper(alpha, "1", 300)))
	gate := filepath.Join(beta, "open")
	writeFile(t, filepath.Join(beta, "wf.yaml"), fmt.Sprintf("name: beta\ntasks:\n  - name: gen\n    command: %q\n    outputs: {nums.txt: out/nums.txt}\n",
		"while [ ! -e "+gate+" ]; do sleep 0.05; done; seq 1 20000 > nums.txt"))
	runA := start(t, nil, "run", "--quiet", "--manager", c.addr, "--secret-file", c.secretFile, filepath.Join(alpha, "wf.yaml"))
	runB := start(t, nil, "run", "--quiet", "--manager", c.addr, "--secret-file", c.secretFile, filepath.Join(beta, "wf.yaml"))
	groups(t, alpha, "0", "1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	waitFor(t, 20*time.Second, "the three tasks to run", func() bool {
		s, err := cl.Status(ctx)
		return err == nil && s.Running == 3
	})

	code, out := runTrellis(t, "cancel", c.addr, "--workflow", "alpha", "--secret-file", c.secretFile)
	if want := "asked the manager to cancel 2 unfinished tasks of workflow alpha\n"; code != 0 || out != want {
		t.Fatalf("trellis cancel --workflow alpha: exit %d, output %q; want 0, %q", code, out, want)
	}
	if code := runA.wait(t, 30*time.Second); code != 1 {
		t.Errorf("trellis run of the cancelled workflow: exit %d, want 1:\n%s", code, runA.Output())
	}
	writeFile(t, gate, "")
	if code := runB.wait(t, time.Minute); code != 0 {
		t.Fatalf("trellis run of the other workflow: exit %d, want 0:\n%s", code, runB.Output())
	}
	var want strings.Builder
	for i := 1; i <= 20000; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	if got, err := os.ReadFile(filepath.Join(beta, "out", "nums.txt")); err != nil || string(got) != want.String() {
		t.Errorf("the other workflow's output: %d bytes (%v), want the %d bytes of seq 1 20000", len(got), err, want.Len())
	}

	code, out = runTrellis(t, "cancel", c.addr, "--workflow", "nosuch", "--secret-file", c.secretFile)
	if wantErr := `no task of workflow "nosuch" was submitted to this manager; the workflows it knows: "alpha", "beta"`; code == 0 || !strings.Contains(out, wantErr) {
		t.Errorf("trellis cancel --workflow nosuch: exit %d, want non-zero and %q in:\n%s", code, wantErr, out)
	}
	code, out = runTrellis(t, "cancel", c.addr, "--workflow", "alpha", "--secret-file", c.secretFile)
	if code == 0 || !strings.Contains(out, `workflow "alpha" has no unfinished task at the manager`) {
		t.Errorf("trellis cancel --workflow alpha again: exit %d, want non-zero saying it has none:\n%s", code, out)
	}
}
