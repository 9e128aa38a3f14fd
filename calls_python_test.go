package trellis_test

import (
	"bytes"
	"context"
	"crypto/sha3"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"trellis"
	"trellis/local"
	"trellis/sdk/python"
)

// The tests in this file run Python libraries (sdk/python/trellis_library.py)
// through an embedded cluster: a real manager, worker and library processes
// on 127.0.0.1. The library notes what it does (set-ups, calls starting) in
// files of a directory outside its sandbox, PYLIB_DIR, and its shell notes
// the pid of each start in PYLIB_DIR/starts before it becomes (exec) that
// Python process.

// pyLibSource is lib.py, the test library.
const pyLibSource = `import hashlib
import os
import sys
import time

import trellis_library as tl

lib = tl.Library("pylib")
DIR = os.environ["PYLIB_DIR"]


def note(name, text):
    with open(os.path.join(DIR, name), "a") as f:
        f.write(text + "\n")


@lib.setup
def setup():
    note("setups", str(os.getpid()))
    if os.environ.get("PYLIB_SETUP") == "fail":
        raise RuntimeError("the model is not there")
    if os.environ.get("PYLIB_SETUP") == "hang":
        time.sleep(60)
    return {"pid": os.getpid()}


@lib.function
def pid(args, state):
    """pid names the library process (the set-up's) and the one running the call."""
    return {"lib": state["pid"], "proc": os.getpid(), "parent": os.getppid()}


@lib.function
def interval(ms, state):
    start = time.monotonic()
    time.sleep(ms / 1000.0)
    return {"lib": state["pid"], "start": start, "end": time.monotonic()}


@lib.function
def sleep(args):
    """sleep notes its process in started-TAG, then sleeps; with coop it raises as
    soon as tl.cancelled() says the call was cancelled or ran out of time."""
    note("started-" + args["tag"], str(os.getpid()))
    end = time.monotonic() + args["ms"] / 1000.0
    while time.monotonic() < end:
        if args.get("coop") and tl.cancelled():
            raise TimeoutError("stopped early")
        time.sleep(0.005)
    return args["ms"]


def check(x):
    raise ValueError("bad input: %r" % (x,))


@lib.function
def fail(args):
    return check(args)


@lib.function
def crash(args):
    sys.stderr.write("crashing on purpose: %s\n" % args)
    sys.stderr.flush()
    os._exit(3)


@lib.function(raw=True)
def echo(body):
    return body


@lib.function(raw=True)
def key(body):
    return tl.idempotency_key().encode()


@lib.function(raw=True)
def blob(body):
    seed, n = body.split(b" ")
    return hashlib.shake_256(seed).digest(int(n))


if __name__ == "__main__":
    lib.serve()
`

// pyTestTimeout bounds each test of this file: a hung call fails it.
const pyTestTimeout = 30 * time.Second

// pyCancelGrace is the worker's grace for a cancelled call
// (libhost.DefaultCancelGrace): past it, the library is killed.
const pyCancelGrace = 2 * time.Second

// pythonInterpreter returns the path of the real python3 executable (not a
// version manager's shim, which would slow every start), or skips the test.
func pythonInterpreter(t *testing.T) string {
	t.Helper()
	py, err := findPython()
	if err != nil {
		t.Skip(err)
	}
	return py
}

// findPython asks python3 where it is, once: through a version manager's
// shim that takes a second here.
var findPython = sync.OnceValues(func() (string, error) {
	if _, err := exec.LookPath("python3"); err != nil {
		return "", errors.New("python3 is not installed")
	}
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		return "", fmt.Errorf("python3 does not run: %v", err)
	}
	return strings.TrimSpace(string(out)), nil
})

// pyCluster is an embedded cluster of one worker with two cores, and where
// the test library notes what it does.
type pyCluster struct {
	c   *trellis.Client
	py  string
	dir string
}

func startPython(t *testing.T) *pyCluster {
	t.Helper()
	py := pythonInterpreter(t)
	ctx, cancel := context.WithTimeout(context.Background(), pyTestTimeout)
	defer cancel()
	c, err := local.Start(ctx, local.Config{Workers: 1, Cores: 2, Workdir: t.TempDir()})
	if err != nil {
		t.Fatalf("local.Start: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &pyCluster{c: c, py: py, dir: t.TempDir()}
}

// library returns the test library under name, noting into a directory of
// its own under the cluster's; env adds to its environment. Each instance
// holds a quarter of a core, so that the libraries of one test all fit.
func (pc *pyCluster) library(t *testing.T, name string, slots int, mode string, env ...string) (*trellis.Library, string) {
	t.Helper()
	dir := filepath.Join(pc.dir, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &trellis.Library{Name: name, Slots: slots, Mode: mode,
		// -S: no site-packages, whose .pth files cost 100 ms or more per start
		// here; the SDK needs only the standard library.
		Command: fmt.Sprintf(`echo $$ >> "$PYLIB_DIR/starts"; exec '%s' -S lib.py`, pc.py),
		Inputs: []trellis.Mount{
			{File: trellis.Buffer(python.SDK), Path: "trellis_library.py"},
			{File: trellis.Buffer([]byte(pyLibSource)), Path: "lib.py"},
		},
		Env:       append([]string{"PYLIB_DIR=" + dir}, env...),
		Resources: trellis.Resources{Cores: 0.25},
	}, dir
}

func (pc *pyCluster) install(ctx context.Context, t *testing.T, lib *trellis.Library) {
	t.Helper()
	if err := pc.c.Install(ctx, lib); err != nil {
		t.Fatalf("Install(%s): %v", lib.Name, err)
	}
}

// run submits one task and waits for its result.
func (pc *pyCluster) run(ctx context.Context, t *testing.T, task *trellis.Task) *trellis.Result {
	t.Helper()
	hs, err := pc.c.Submit(ctx, task)
	if err != nil {
		t.Fatalf("Submit(%s): %v", task.Name, err)
	}
	r, err := hs[0].Wait(ctx)
	if err != nil {
		t.Fatalf("Wait(%s): %v", task.Name, err)
	}
	return r
}

// pyPids is what the library's pid function returns.
type pyPids struct {
	Lib, Proc, Parent int
}

// pids calls the pid function of lib.
func (pc *pyCluster) pids(ctx context.Context, t *testing.T, lib string) pyPids {
	t.Helper()
	out, err := pc.c.Call(ctx, lib, "pid", nil)
	if err != nil {
		t.Fatalf("%s.pid: %v", lib, err)
	}
	var p pyPids
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("%s.pid returned %q: %v", lib, out, err)
	}
	return p
}

// pyLines returns the lines of a file the library notes into; none if it
// does not exist yet.
func pyLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[:i] // a line being written is not there yet
	} else {
		return nil
	}
	return strings.Split(s, "\n")
}

// pyWaitFor polls cond every 5 ms until it holds, failing the test at ctx's end.
func pyWaitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// pyStarted waits until the sleep call tagged tag has started and returns
// the process it runs in.
func pyStarted(ctx context.Context, t *testing.T, dir, tag string) int {
	t.Helper()
	path := filepath.Join(dir, "started-"+tag)
	pyWaitFor(ctx, t, "call "+tag+" to start", func() bool { return len(pyLines(t, path)) > 0 })
	pid, err := strconv.Atoi(pyLines(t, path)[0])
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// pyChildren returns the processes whose parent is pid.
func pyChildren(t *testing.T, pid int) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if i < 0 || len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		if kid, err := strconv.Atoi(filepath.Base(filepath.Dir(path))); err == nil {
			kids = append(kids, kid)
		}
	}
	return kids
}

// pyWaitGone waits until process pid no longer exists (it was killed and
// reaped).
func pyWaitGone(ctx context.Context, t *testing.T, what string, pid int) {
	t.Helper()
	pyWaitFor(ctx, t, what+fmt.Sprintf(" (pid %d) to be gone", pid), func() bool {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	})
}

func pySleepCall(lib, tag string, ms int, coop bool) *trellis.Task {
	args, _ := json.Marshal(map[string]any{"tag": tag, "ms": ms, "coop": coop})
	return trellis.NewCall(lib, "sleep", args)
}

// TestPythonSetupOncePerInstance: however many calls come, each library
// process runs its set-up once, before its first call, and its state
// reaches the calls.
func TestPythonSetupOncePerInstance(t *testing.T) {
	for _, tc := range []struct {
		mode         string
		calls        int
		maxInstances int
	}{
		{"direct", 200, 0},
		{"direct", 200, 1},
		{"fork", 24, 0},
	} {
		t.Run(fmt.Sprintf("%s, %d calls, at most %d instances", tc.mode, tc.calls, tc.maxInstances), func(t *testing.T) {
			t.Parallel()
			pc := startPython(t) // a cluster each: the instances of one library hold its two cores
			ctx, cancel := context.WithTimeout(context.Background(), pyTestTimeout)
			defer cancel()
			lib, dir := pc.library(t, fmt.Sprintf("setup-%s-%d", tc.mode, tc.maxInstances), 4, tc.mode)
			lib.MaxInstances = tc.maxInstances
			lib.Resources.Cores = 1 // at most two instances at once on the two cores
			pc.install(ctx, t, lib)
			var calls []*trellis.Task
			for range tc.calls {
				calls = append(calls, trellis.NewCall(lib.Name, "pid", nil))
			}
			hs, err := pc.c.Submit(ctx, calls...)
			if err != nil {
				t.Fatal(err)
			}
			answered := make(map[int]int) // library pid: calls
			for i, h := range hs {
				r, err := h.Wait(ctx)
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				var p pyPids
				if !r.OK() || json.Unmarshal(r.Output, &p) != nil {
					t.Fatalf("call %d: %v, output %q", i, r.Err(), r.Output)
				}
				switch {
				case tc.mode == "direct" && p.Proc != p.Lib:
					t.Fatalf("call %d ran in process %d, not in the library (%d), in direct mode", i, p.Proc, p.Lib)
				case tc.mode == "fork" && (p.Proc == p.Lib || p.Parent != p.Lib):
					t.Fatalf("call %d ran in process %d (parent %d); want a child of the library (%d) in fork mode", i, p.Proc, p.Parent, p.Lib)
				}
				answered[p.Lib]++
			}
			// Every process that answered ran the set-up once; a process
			// started for calls that no longer waited may have been stopped
			// before its set-up.
			started := make(map[string]bool)
			for _, pid := range pyLines(t, filepath.Join(dir, "starts")) {
				started[pid] = true
			}
			starts := len(started)
			setups := pyLines(t, filepath.Join(dir, "setups"))
			ranSetup := make(map[int]bool)
			for _, s := range setups {
				pid, _ := strconv.Atoi(s)
				if ranSetup[pid] {
					t.Errorf("process %d ran its set-up twice (set-ups %v)", pid, setups)
				}
				if !started[s] {
					t.Errorf("process %d ran a set-up but was not started as a library (starts %v)", pid, started)
				}
				ranSetup[pid] = true
			}
			for pid, n := range answered {
				if !ranSetup[pid] {
					t.Errorf("%d calls answered by library process %d, which ran no set-up (set-ups %v)", n, pid, setups)
				}
			}
			if tc.maxInstances > 0 && (starts != tc.maxInstances || len(setups) != tc.maxInstances) {
				t.Errorf("%d processes started and %d set-ups with MaxInstances %d; want %[3]d of each", starts, len(setups), tc.maxInstances)
			}
			t.Logf("%d calls: %d processes started, %d set-ups, calls by library process %v", tc.calls, starts, len(setups), answered)
		})
	}
}

// TestPythonSlots: an instance with Slots N runs at most N calls at once
// (as the library sees them), and N when enough wait, in both modes.
func TestPythonSlots(t *testing.T) {
	pc := startPython(t)
	// Calls long enough to overlap on a loaded machine, where forks in
	// fork mode (one at a time) take 100 ms or more.
	const slots, calls, ms = 3, 6, 1000
	for _, mode := range []string{"direct", "fork"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), pyTestTimeout)
			defer cancel()
			lib, _ := pc.library(t, "slots-"+mode, slots, mode)
			lib.MaxInstances = 1
			pc.install(ctx, t, lib)
			var tasks []*trellis.Task
			for range calls {
				tasks = append(tasks, trellis.NewCall(lib.Name, "interval", []byte(strconv.Itoa(ms))))
			}
			hs, err := pc.c.Submit(ctx, tasks...)
			if err != nil {
				t.Fatal(err)
			}
			type edge struct {
				at    float64
				delta int
			}
			var edges []edge
			libs := make(map[int]bool)
			for i, h := range hs {
				r, err := h.Wait(ctx)
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				var iv struct {
					Lib        int
					Start, End float64
				}
				if !r.OK() || json.Unmarshal(r.Output, &iv) != nil {
					t.Fatalf("call %d: %v, output %q", i, r.Err(), r.Output)
				}
				libs[iv.Lib] = true
				edges = append(edges, edge{iv.Start, +1}, edge{iv.End, -1})
			}
			if len(libs) != 1 {
				t.Fatalf("calls ran in library processes %v; want one (MaxInstances 1)", libs)
			}
			// Ends before starts at the same instant: touching is not overlapping.
			sort.Slice(edges, func(i, j int) bool {
				return edges[i].at < edges[j].at || edges[i].at == edges[j].at && edges[i].delta < edges[j].delta
			})
			running, most := 0, 0
			for _, e := range edges {
				running += e.delta
				most = max(most, running)
			}
			if most != slots {
				t.Errorf("at most %d calls ran at once; want %d (the slots, with %d calls waiting)", most, slots, calls)
			}
		})
	}
}

// TestPythonTimeLimit: a call past its time limit ends TimedOut at the
// limit. In fork mode the library kills the call's child and goes on; in
// direct mode a call that does not stop keeps the library busy until the
// worker's cancel grace passes, and then the library is restarted, while a
// call that polls tl.cancelled() stops and the library goes on.
func TestPythonTimeLimit(t *testing.T) {
	pc := startPython(t)
	for _, tc := range []struct {
		name, mode string
		coop       bool
		restarted  bool
	}{
		{"fork", "fork", false, false},
		{"direct, the call stops", "direct", true, false},
		{"direct, the call does not stop", "direct", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), pyTestTimeout)
			defer cancel()
			lib, dir := pc.library(t, fmt.Sprintf("limit-%s-%t", tc.mode, tc.coop), 1, tc.mode)
			lib.MaxInstances = 1
			pc.install(ctx, t, lib)
			before := pc.pids(ctx, t, lib.Name)

			// A limit long enough for a loaded machine to fork and start the call.
			const limit = time.Second
			call := pySleepCall(lib.Name, "t", 30000, tc.coop)
			call.TimeLimit = limit
			start := time.Now()
			r := pc.run(ctx, t, call)
			if r.Kind != trellis.TimedOut || !strings.Contains(r.Message, "timed out after 1s") {
				t.Errorf("sleep past its time limit: %v (%q); want timed out after 1s", r.Kind, r.Message)
			}
			// A call holds its slot until the library answers the cancel or
			// is killed for not answering within the grace: it ends then.
			longest := limit + pyCancelGrace/2
			if tc.restarted {
				longest = limit + pyCancelGrace + pyCancelGrace/2
			}
			if r.RunTime < limit || r.RunTime >= longest {
				t.Errorf("the time-limited call ran %v; want its limit (%v), and less than %v", r.RunTime, limit, longest)
			}
			ranIn := pyStarted(ctx, t, dir, "t")
			if tc.mode == "fork" {
				if ranIn == before.Lib {
					t.Fatalf("in fork mode the call ran in the library process %d", ranIn)
				}
				pyWaitGone(ctx, t, "the timed-out call's child", ranIn)
				pyWaitFor(ctx, t, "the library to have no children", func() bool { return len(pyChildren(t, before.Lib)) == 0 })
			}

			// One slot: the next call waits for the library to give the slot
			// back, so it runs in the same process only if the library
			// answered the cancel. Otherwise the worker kills the library
			// after the grace and the call is retried in a new one (see
			// TestPythonCallBehindUnresponsiveCall).
			after := pc.pids(ctx, t, lib.Name)
			setups := pyLines(t, filepath.Join(dir, "setups"))
			if tc.restarted {
				if after.Lib == before.Lib {
					t.Errorf("the library %d still serves after a call that did not stop its time limit; want a restart", before.Lib)
				}
				pyWaitGone(ctx, t, "the unresponsive library", before.Lib)
				if len(setups) != 2 {
					t.Errorf("set-ups %v; want 2 (the restart ran it again)", setups)
				}
				if since := time.Since(start); since < limit+pyCancelGrace {
					t.Errorf("the library was replaced %v after the call started; want after its limit and the cancel grace, %v", since, limit+pyCancelGrace)
				}
			} else {
				if after.Lib != before.Lib {
					t.Errorf("library process %d, then %d after the time limit; want the same (the library survives)", before.Lib, after.Lib)
				}
				if len(setups) != 1 {
					t.Errorf("set-ups %v; want 1", setups)
				}
			}
		})
	}
}

// TestPythonCallBehindUnresponsiveCall: a call that comes after a call
// that timed out but did not stop must not pay for that call: it never ran
// in the library that the worker then kills.
func TestPythonCallBehindUnresponsiveCall(t *testing.T) {
	pc := startPython(t)
	ctx, cancel := context.WithTimeout(context.Background(), pyTestTimeout)
	defer cancel()
	lib, dir := pc.library(t, "behind", 1, "direct")
	lib.MaxInstances = 1
	pc.install(ctx, t, lib)
	before := pc.pids(ctx, t, lib.Name)
	stuck := pySleepCall(lib.Name, "t", 30000, false)
	stuck.TimeLimit = 300 * time.Millisecond
	if r := pc.run(ctx, t, stuck); r.Kind != trellis.TimedOut {
		t.Fatalf("sleep past its time limit: %v (%q); want timed out", r.Kind, r.Message)
	}
	next := trellis.NewCall(lib.Name, "pid", nil)
	next.Retries = 0
	r := pc.run(ctx, t, next)
	var p pyPids
	if !r.OK() || json.Unmarshal(r.Output, &p) != nil || r.Attempts != 1 {
		t.Fatalf("a call (no retries) after one that timed out and did not stop: %v, %q in %d attempts; want it to succeed in 1", r.Err(), r.Output, r.Attempts)
	}
	if p.Lib == before.Lib {
		t.Errorf("the call ran in the library %d whose call did not stop; want a new one", p.Lib)
	}
	if ran := pyLines(t, filepath.Join(dir, "started-t")); len(ran) != 1 {
		t.Errorf("the stuck call started %d times; want once (a timed-out call is not retried)", len(ran))
	}
}

// TestPythonCancel: Handle.Cancel ends a running call Cancelled, with the
// same consequences for the library as a time limit.
func TestPythonCancel(t *testing.T) {
	pc := startPython(t)
	for _, tc := range []struct {
		name, mode string
		coop       bool
		restarted  bool
	}{
		{"fork", "fork", false, false},
		{"direct, the call stops", "direct", true, false},
		{"direct, the call does not stop", "direct", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), pyTestTimeout)
			defer cancel()
			lib, dir := pc.library(t, fmt.Sprintf("cancel-%s-%t", tc.mode, tc.coop), 1, tc.mode)
			lib.MaxInstances = 1
			pc.install(ctx, t, lib)
			before := pc.pids(ctx, t, lib.Name)

			hs, err := pc.c.Submit(ctx, pySleepCall(lib.Name, "c", 30000, tc.coop))
			if err != nil {
				t.Fatal(err)
			}
			ranIn := pyStarted(ctx, t, dir, "c")
			start := time.Now()
			if err := hs[0].Cancel(ctx); err != nil {
				t.Fatalf("Cancel: %v", err)
			}
			r, err := hs[0].Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// It ends when the library has let go of it: at once if it
			// stops, after the grace (the library killed) if it does not.
			longest := pyCancelGrace / 2
			if !tc.coop && tc.mode == "direct" {
				longest = pyCancelGrace + pyCancelGrace/2
			}
			if took := time.Since(start); took >= longest {
				t.Errorf("the cancelled call took %v to end; want under %v", took, longest)
			}
			if r.Kind != trellis.Cancelled {
				t.Errorf("cancelled call: %v (%q); want cancelled", r.Kind, r.Message)
			}
			if tc.mode == "fork" {
				if ranIn == before.Lib {
					t.Fatalf("in fork mode the call ran in the library process %d", ranIn)
				}
				pyWaitGone(ctx, t, "the cancelled call's child", ranIn)
				pyWaitFor(ctx, t, "the library to have no children", func() bool { return len(pyChildren(t, before.Lib)) == 0 })
			}

			after := pc.pids(ctx, t, lib.Name)
			setups := pyLines(t, filepath.Join(dir, "setups"))
			if tc.restarted {
				if after.Lib == before.Lib {
					t.Errorf("the library %d still serves after a cancelled call that did not stop; want a restart", before.Lib)
				}
				pyWaitGone(ctx, t, "the unresponsive library", before.Lib)
				if len(setups) != 2 {
					t.Errorf("set-ups %v; want 2 (the restart ran it again)", setups)
				}
			} else {
				if after.Lib != before.Lib {
					t.Errorf("library process %d, then %d after the cancel; want the same (the library survives)", before.Lib, after.Lib)
				}
				if len(setups) != 1 {
					t.Errorf("set-ups %v; want 1", setups)
				}
			}
		})
	}
}

// TestPythonException: a function that raises fails its call with the
// exception as the message and the Python traceback, without the SDK's
// frames; the library goes on.
func TestPythonException(t *testing.T) {
	pc := startPython(t)
	for _, mode := range []string{"direct", "fork"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), pyTestTimeout)
			defer cancel()
			lib, dir := pc.library(t, "raise-"+mode, 2, mode)
			pc.install(ctx, t, lib)
			_, err := pc.c.Call(ctx, lib.Name, "fail", []byte("42"))
			var ce *trellis.CallError
			if !errors.As(err, &ce) {
				t.Fatalf("fail(42) = %v; want a *trellis.CallError", err)
			}
			r := ce.Result
			const msg = "ValueError: bad input: 42"
			if r.Kind != trellis.Failed || r.Message != msg || r.Attempts != 1 {
				t.Errorf("fail(42): %v (%q) in %d attempts; want failed (%q) in 1", r.Kind, r.Message, r.Attempts, msg)
			}
			tb := r.Traceback
			want := []string{
				"Traceback (most recent call last):\n",
				"lib.py\", line ", ", in fail\n", "    return check(args)\n",
				", in check\n", `    raise ValueError("bad input: %r" % (x,))` + "\n",
			}
			for _, w := range want {
				if !strings.Contains(tb, w) {
					t.Errorf("traceback %q lacks %q", tb, w)
				}
			}
			if !strings.HasSuffix(tb, msg+"\n") {
				t.Errorf("traceback %q does not end with the exception %q", tb, msg)
			}
			if strings.Contains(tb, "trellis_library.py") {
				t.Errorf("traceback %q shows the SDK's frames", tb)
			}
			if got, err := pc.c.Call(ctx, lib.Name, "echo", []byte("still here")); err != nil || string(got) != "still here" {
				t.Errorf("after the exception: %q, %v; want the library to answer", got, err)
			}
			if setups := pyLines(t, filepath.Join(dir, "setups")); len(setups) != 1 {
				t.Errorf("set-ups %v; want 1 (an exception is no crash)", setups)
			}
		})
	}
}

// TestPythonIdempotencyKey: trellis_library.idempotency_key() gives a
// call's key, SESSION/KEY, in both modes.
func TestPythonIdempotencyKey(t *testing.T) {
	pc := startPython(t)
	for _, mode := range []string{"direct", "fork"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), pyTestTimeout)
			defer cancel()
			lib, _ := pc.library(t, "key-"+mode, 1, mode)
			pc.install(ctx, t, lib)
			call := trellis.NewCall(lib.Name, "key", nil)
			call.Key = "pay-" + mode
			r := pc.run(ctx, t, call)
			if session, key, _ := strings.Cut(string(r.Output), "/"); !r.OK() || session == "" || key != call.Key {
				t.Errorf("idempotency_key(): %v %q (%s); want SESSION/%s", r.Kind, r.Output, r.Message, call.Key)
			}
		})
	}
}

// TestPythonCrash: a library that dies in a call (os._exit) fails that call
// with "library crashed", its exit status and stderr tail, once its retries
// are spent; a call in flight beside it is retried in a new instance. In
// fork mode only the call's child dies: the call fails and the library
// goes on.
func TestPythonCrash(t *testing.T) {
	pc := startPython(t)
	t.Run("direct", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), pyTestTimeout)
		defer cancel()
		lib, dir := pc.library(t, "crash-direct", 2, "direct")
		lib.MaxInstances = 1
		pc.install(ctx, t, lib)
		first := pc.pids(ctx, t, lib.Name)

		// A call in flight when the library dies, with retries left.
		beside, err := pc.c.Submit(ctx, pySleepCall(lib.Name, "beside", 300, false))
		if err != nil {
			t.Fatal(err)
		}
		if pid := pyStarted(ctx, t, dir, "beside"); pid != first.Lib {
			t.Fatalf("the call beside started in process %d; want the library %d", pid, first.Lib)
		}
		crash := trellis.NewCall(lib.Name, "crash", []byte(`"boom"`))
		crash.Retries = 0
		r := pc.run(ctx, t, crash)
		for _, w := range []string{"library crashed", "exit status 3", "crashing on purpose: boom"} {
			if r.Kind != trellis.Failed || !strings.Contains(r.Message, w) {
				t.Errorf("crash: %v (%q); want failed, with %q", r.Kind, r.Message, w)
			}
		}
		rb, err := beside[0].Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !rb.OK() || string(rb.Output) != "300" || rb.Attempts != 2 {
			t.Errorf("the call beside the crash: %v, %q in %d attempts; want 300 in 2 (retried)", rb.Err(), rb.Output, rb.Attempts)
		}
		if ran := pyLines(t, filepath.Join(dir, "started-beside")); len(ran) != 2 || ran[1] == strconv.Itoa(first.Lib) {
			t.Errorf("the call beside started in processes %v; want twice, the second time in a new one", ran)
		}
		after := pc.pids(ctx, t, lib.Name)
		if after.Lib == first.Lib {
			t.Errorf("library process %d still serves after it crashed", first.Lib)
		}
		if setups := pyLines(t, filepath.Join(dir, "setups")); len(setups) != 2 {
			t.Errorf("set-ups %v; want 2 (one more after the crash)", setups)
		}

		// With retries, each attempt crashes a new instance.
		crash = trellis.NewCall(lib.Name, "crash", []byte(`"again"`))
		crash.Retries = 1
		r = pc.run(ctx, t, crash)
		if r.Kind != trellis.Failed || !strings.Contains(r.Message, "library crashed") || !strings.Contains(r.Message, "crashing on purpose: again") || r.Attempts != 2 {
			t.Errorf("crash with a retry: %v (%q) in %d attempts; want failed, library crashed, in 2", r.Kind, r.Message, r.Attempts)
		}
		if setups := pyLines(t, filepath.Join(dir, "setups")); len(setups) != 3 {
			t.Errorf("set-ups %v; want 3 (one more per crashed instance, none after the last)", setups)
		}
	})
	t.Run("fork", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), pyTestTimeout)
		defer cancel()
		lib, dir := pc.library(t, "crash-fork", 2, "fork")
		lib.MaxInstances = 1
		pc.install(ctx, t, lib)
		first := pc.pids(ctx, t, lib.Name)
		crash := trellis.NewCall(lib.Name, "crash", []byte(`"boom"`))
		r := pc.run(ctx, t, crash)
		const msg = "call process exited with status 3 without a result"
		if r.Kind != trellis.Failed || r.Message != msg || r.Attempts != 1 {
			t.Errorf("crash in fork mode: %v (%q) in %d attempts; want failed (%q) in 1", r.Kind, r.Message, r.Attempts, msg)
		}
		if after := pc.pids(ctx, t, lib.Name); after.Lib != first.Lib {
			t.Errorf("library process %d, then %d; want the same (only the child died)", first.Lib, after.Lib)
		}
		if setups := pyLines(t, filepath.Join(dir, "setups")); len(setups) != 1 {
			t.Errorf("set-ups %v; want 1", setups)
		}
	})
}

// TestPythonLibraryThatCannotStart: a library whose set-up fails, or never
// ends, is started StartFailures (3) times; then the calls waiting for it,
// and later ones, fail with the reason instead of waiting.
func TestPythonLibraryThatCannotStart(t *testing.T) {
	pc := startPython(t)
	for _, tc := range []struct {
		setup        string
		startTimeout time.Duration
		want         []string
	}{
		{"fail", 0, []string{"library failed to start 3 times: ", "exit status 1", "RuntimeError: the model is not there"}},
		{"hang", 500 * time.Millisecond, []string{"library failed to start 3 times: ", "no handshake within 500ms"}},
	} {
		t.Run(tc.setup, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), pyTestTimeout)
			defer cancel()
			lib, dir := pc.library(t, "broken-"+tc.setup, 1, "direct", "PYLIB_SETUP="+tc.setup)
			lib.StartTimeout = tc.startTimeout
			lib.MaxInstances = 1 // one try at a time: exactly StartFailures of them
			pc.install(ctx, t, lib)
			var calls []*trellis.Task
			for range 5 {
				calls = append(calls, trellis.NewCall(lib.Name, "pid", nil))
			}
			hs, err := pc.c.Submit(ctx, calls...)
			if err != nil {
				t.Fatal(err)
			}
			check := func(i int, h *trellis.Handle) {
				t.Helper()
				r, err := h.Wait(ctx)
				if err != nil {
					t.Fatalf("call %d of a library that cannot start: %v", i, err)
				}
				for _, w := range tc.want {
					if r.Kind != trellis.Failed || !strings.Contains(r.Message, w) {
						t.Errorf("call %d: %v (%q); want failed, with %q", i, r.Kind, r.Message, w)
					}
				}
			}
			for i, h := range hs {
				check(i, h)
			}
			starts := pyLines(t, filepath.Join(dir, "starts"))
			if len(starts) != 3 {
				t.Errorf("library processes started %v; want 3 tries", starts)
			}
			if setups := pyLines(t, filepath.Join(dir, "setups")); tc.setup == "fail" && len(setups) != 3 {
				t.Errorf("set-ups %v; want 3 tries", setups)
			}
			// A call after the library broke fails too, with no new try.
			hs, err = pc.c.Submit(ctx, trellis.NewCall(lib.Name, "pid", nil))
			if err != nil {
				t.Fatal(err)
			}
			check(len(calls), hs[0])
			if again := pyLines(t, filepath.Join(dir, "starts")); len(again) != len(starts) {
				t.Errorf("library processes started %v after the library broke; want still %v", again, starts)
			}
		})
	}
}

// TestPythonLargeData: raw arguments and results of several MiB go through
// byte for byte in both modes, inline up to 1 MiB and as files above.
func TestPythonLargeData(t *testing.T) {
	pc := startPython(t)
	data := make([]byte, 4<<20)
	rand.NewChaCha8([32]byte{1}).Read(data)
	for _, mode := range []string{"direct", "fork"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), pyTestTimeout)
			defer cancel()
			lib, _ := pc.library(t, "large-"+mode, 2, mode)
			pc.install(ctx, t, lib)
			for _, n := range []int{1 << 20, 1<<20 + 1, 4 << 20} {
				args := data[:n]
				got, err := pc.c.Call(ctx, lib.Name, "echo", args)
				if err != nil || !bytes.Equal(got, args) {
					t.Errorf("echo of %d bytes: %d bytes back (first difference at %d), %v; want them all", n, len(got), pyFirstDiff(got, args), err)
				}
			}
			const n = 4 << 20
			want := sha3.SumSHAKE256([]byte("seed"), n)
			got, err := pc.c.Call(ctx, lib.Name, "blob", []byte(fmt.Sprintf("seed %d", n)))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("a result of %d bytes: %d bytes back (first difference at %d), %v", n, len(got), pyFirstDiff(got, want), err)
			}
		})
	}
}

// pyFirstDiff returns the first index where a and b differ, or -1.
func pyFirstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}
