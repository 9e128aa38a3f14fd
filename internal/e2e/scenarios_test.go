package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"trellis"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/proto/trellisv1/trellisv1connect"
	"trellis/sdk/python"
)

// effectLibrary is a Python library whose function "apply" logs its call's
// idempotency key when it starts (and its process ID to args["pids"]);
// fails, as an injected failure, on the first attempt of one key in ten
// (args["fail"], by the CRC-32 of the client's part of the key); applies its effect once per key:
// it creates a file named after the key in args["dir"] (O_EXCL: a second
// application finds it there) and appends the key to args["log"]; then,
// effect applied, sleeps args["sleep"] seconds and waits for the file
// args["gate"] (if any) before it returns.
const effectLibrary = `import os, time, zlib
import trellis_library as tl
lib = tl.Library("effect")

@lib.function
def apply(args):
    key = tl.idempotency_key()
    with open(args["started"], "a") as f:
        f.write(key + "\n")
    if "pids" in args:
        with open(args["pids"], "a") as f:
            f.write("%d\n" % os.getpid())
    with open(args["started"]) as f:
        tries = f.read().split().count(key)
    if args.get("fail") and tries == 1 and zlib.crc32(key.split("/")[-1].encode()) % 10 == 0:
        raise RuntimeError("injected failure")
    marker = os.path.join(args["dir"], key.replace("/", "_"))
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        with open(args["log"], "a") as f:
            f.write(key + "\n")
    except FileExistsError:
        pass  # applied already, under this key
    time.sleep(args.get("sleep", 0))
    gate = args.get("gate")
    while gate and not os.path.exists(gate):
        time.sleep(0.05)
    return {"key": key, "pid": os.getpid()}

if __name__ == "__main__":
    lib.serve()
`

func effectLib() *trellis.Library {
	return &trellis.Library{Name: "effect", Command: "python3 lib.py", Slots: 4, Resources: trellis.Resources{Cores: 1},
		Inputs: []trellis.Mount{{File: trellis.Buffer(python.SDK), Path: "trellis_library.py"}, {File: trellis.Buffer([]byte(effectLibrary)), Path: "lib.py"}}}
}

// effectArgs are the arguments of effectLibrary's apply.
type effectArgs struct {
	Started string  `json:"started"`
	Log     string  `json:"log"`
	Dir     string  `json:"dir"`
	Gate    string  `json:"gate,omitempty"`
	PIDs    string  `json:"pids,omitempty"`
	Fail    bool    `json:"fail,omitempty"`
	Sleep   float64 `json:"sleep,omitempty"`
}

func (a effectArgs) call(t *testing.T, key string) *trellis.Task {
	t.Helper()
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	c := trellis.NewCall("effect", "apply", b)
	c.Name, c.Key, c.Effects = key, key, trellis.EffectsIdempotent
	return c
}

// effectCluster starts a manager with flags and one worker process of one
// core, and installs effectLibrary.
func effectCluster(t *testing.T, flags ...string) (*cluster, *trellis.Client) {
	t.Helper()
	c := newCluster(t, flags...)
	c.worker("w1", nil, "--cores", "1")
	cl := c.client()
	c.waitWorkers(cl, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.Install(ctx, effectLib()); err != nil {
		t.Fatal(err)
	}
	return c, cl
}

// killManager kills the manager process (SIGKILL) and waits for its end.
func (c *cluster) killManager(t *testing.T) {
	t.Helper()
	c.manager.signal(t, 9)
	c.manager.wait(t, 10*time.Second)
}

// restartManager starts the manager again, on its address and --state,
// with flags.
func (c *cluster) restartManager(t *testing.T, state string, flags ...string) {
	t.Helper()
	c.manager = start(t, nil, append([]string{"manager", "--listen", c.addr, "--secret-file", c.secretFile, "--state", state}, flags...)...)
}

// waitDurable waits until the manager's journal holds n records on disk.
func waitDurable(ctx context.Context, t *testing.T, cl *trellis.Client, n uint64) {
	t.Helper()
	waitFor(t, time.Minute, fmt.Sprintf("%d journal records on disk", n), func() bool {
		s, err := cl.Status(ctx)
		return err == nil && s.Journal != nil && s.Journal.Durable >= n
	})
}

// effectResult is what apply returns.
type effectResult struct {
	Key string `json:"key"`
	PID int    `json:"pid"`
}

// TestCallsAdopted (docs/recovery.md, adoption of calls): a manager with
// --state is killed with SIGKILL while two calls run in a library instance
// on a worker process (their effects applied, waiting to return);
// restarted on the same --state, it adopts the instance and both calls
// instead of running them again. Each call logs its idempotency key when
// it starts and when it applies its effect: one line each per key, and
// both results come from the library process that ran before the kill, as
// does that of a third call submitted after the restart (the library is
// installed again from the journal).
func TestCallsAdopted(t *testing.T) {
	needPython(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	args := effectArgs{Started: filepath.Join(dir, "started.log"), Log: filepath.Join(dir, "effects.log"), Dir: dir, Gate: filepath.Join(dir, "gate")}
	c, cl := effectCluster(t, "--state", state)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hs, err := cl.Submit(ctx, args.call(t, "c1"), args.call(t, "c2"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "both calls to apply their effects", func() bool { return len(fileLines(args.Log)) == 2 })
	// Their Runs went without waiting for their Dispatched records: kill
	// once the records (start, install, submit, two dispatches) are on
	// disk, or there is nothing to adopt.
	waitDurable(ctx, t, cl, 5)
	c.killManager(t)
	c.restartManager(t, state)
	waitFor(t, time.Minute, "the manager to adopt the instance and both calls", func() bool {
		out := c.manager.Output()
		return strings.Contains(out, "adopted a library instance started before the restart") &&
			strings.Count(out, "adopted an attempt dispatched before the restart") == 2
	})
	if err := os.WriteFile(args.Gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pids := map[int]bool{}
	for _, h := range hs {
		r := waitResult(t, h, time.Minute)
		var res effectResult
		if !r.OK() || json.Unmarshal(r.Output, &res) != nil || r.Attempts != 1 {
			t.Fatalf("call %s: %s %s (%s) after %d attempts; want the success of attempt 1", h.Name, r.Kind, r.Output, r.Message, r.Attempts)
		}
		pids[res.PID] = true
	}
	// The library, installed again from the journal, takes a new call in
	// the adopted instance.
	more, err := cl.Submit(ctx, args.call(t, "c3"))
	if err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, more[0], time.Minute)
	var res effectResult
	if !r.OK() || json.Unmarshal(r.Output, &res) != nil {
		t.Fatalf("call c3 after the restart: %s %s (%s)", r.Kind, r.Output, r.Message)
	}
	pids[res.PID] = true
	if len(pids) != 1 {
		t.Errorf("results from library processes %v; want one, the instance started before the kill", pids)
	}
	s, e := fileLines(args.Started), fileLines(args.Log)
	if len(s) != 3 || len(e) != 3 || counts(e)[s[0]] != 1 || counts(e)[s[1]] != 1 || counts(e)[s[2]] != 1 {
		t.Errorf("started %q, effects %q; want each of the three keys once in both", s, e)
	}
	st, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l := st.Libraries; len(l) != 1 || len(l[0].Instances) != 1 || l[0].Instances[0].Worker != "w1" {
		t.Errorf("libraries %+v; want one instance, on w1", l)
	}
}

// counts counts the lines of a log by their text.
func counts(lines []string) map[string]int {
	m := make(map[string]int, len(lines))
	for _, l := range lines {
		m[l]++
	}
	return m
}

// TestPartitionedWorkerStale (RECOVERY.md scenario 6): a worker is cut off
// (SIGSTOP, past the liveness timeout) while it runs a task; the task runs
// again on another worker, and its result is delivered. Then the worker
// comes back (SIGCONT) with the old attempt: it is killed, and its report
// is rejected as stale ("ignored a stale report"). The client has one
// result, of attempt 2, and the output file is attempt 2's. (Duplicate
// completions, and a stale one before the new one: TestPartitionedWorker
// and TestStaleResults in internal/core.)
func TestPartitionedWorkerStale(t *testing.T) {
	dir := t.TempDir()
	started, gate := filepath.Join(dir, "started.log"), filepath.Join(dir, "gate")
	c := newCluster(t, "--heartbeat", "1s") // lost after 3 s of silence: not by mere load
	w1 := c.worker("w1", nil, "--cores", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := c.client()
	c.waitWorkers(cl, 1)
	tk := trellis.NewTask(`echo "$TRELLIS_ATTEMPT" >> "$STARTED"; echo "attempt $TRELLIS_ATTEMPT" > out; if [ "$TRELLIS_ATTEMPT" = 1 ]; then while [ ! -e "$GATE" ]; do sleep 0.05; done; fi; echo "stdout $TRELLIS_ATTEMPT"`)
	tk.Name, tk.Key, tk.Env = "cut", "cut", []string{"STARTED=" + started, "GATE=" + gate}
	out := filepath.Join(dir, "out")
	tk.AddOutput(trellis.Output(out), "out")
	hs, err := cl.Submit(ctx, tk)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "attempt 1 to start", func() bool { return len(fileLines(started)) == 1 })
	w1.signal(t, syscall.SIGSTOP)
	stopped := true
	defer func() {
		if stopped {
			w1.signal(t, syscall.SIGCONT)
		}
	}()
	c.worker("w2", nil, "--cores", "1")
	r := waitResult(t, hs[0], time.Minute)
	if !r.OK() || r.Attempts != 2 || string(r.Stdout) != "stdout 2\n" {
		t.Fatalf("result: %s %q (%s) after %d attempts; want the success of attempt 2", r.Kind, r.Stdout, r.Message, r.Attempts)
	}
	w1.signal(t, syscall.SIGCONT)
	stopped = false
	waitFor(t, time.Minute, "the old attempt's report to be rejected", func() bool {
		for _, l := range strings.Split(c.manager.Output(), "\n") {
			if strings.Contains(l, "ignored a stale report") && strings.Contains(l, fmt.Sprintf("task=%d attempt=1", hs[0].ID)) {
				return true
			}
		}
		return false
	})
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(out); err != nil || string(got) != "attempt 2\n" {
		t.Errorf("output file: %q (%v); want attempt 2's", got, err)
	}
	if s := fileLines(started); strings.Join(s, " ") != "1 2" {
		t.Errorf("attempts started: %q; want 1 and 2", s)
	}
	if s, err := cl.Status(ctx); err != nil || len(s.Workers) != 2 {
		t.Errorf("status: %v, workers %d; want both workers connected again", err, len(s.Workers))
	}
}

// rpcClient is a client of the manager's API on the wire, as any program
// may speak it, with a session name it chose (its workflow ID).
func rpcClient(c *cluster) trellisv1connect.ManagerClient {
	secret := c.secret()
	return trellisv1connect.NewManagerClient(http.DefaultClient, "http://"+c.addr, connect.WithInterceptors(connect.UnaryInterceptorFunc(
		func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				req.Header().Set("Authorization", "Bearer "+secret)
				return next(ctx, req)
			}
		})))
}

// TestResubmit (RECOVERY.md scenario 7): a client resubmits its workflow
// (the same session, the same task keys): at once, and again while the
// manager is being restarted after a SIGKILL, retrying until the new one
// answers. Every submit returns the same task IDs; the session's events
// after the restart hold one result per task; each task's effect (a file
// created once per idempotency key) is applied once.
func TestResubmit(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	log := filepath.Join(dir, "effects.log")
	c := newCluster(t, "--state", state)
	c.worker("w1", nil, "--cores", "2")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c.waitWorkers(c.client(), 1)
	rpc := rpcClient(c)
	const session = "wf-resubmit"
	req := &pb.SubmitRequest{Session: session}
	for i := range 6 {
		req.Tasks = append(req.Tasks, &pb.TaskSpec{Name: fmt.Sprintf("t%d", i), Key: fmt.Sprintf("k%d", i),
			Effects: pb.Effects_EFFECTS_IDEMPOTENT, Env: []string{"DIR=" + dir, "LOG=" + log},
			Command: fmt.Sprintf(`sleep 0.%d; m="$DIR/$(echo "$TRELLIS_IDEMPOTENCY_KEY" | tr / _)"; if mkdir "$m" 2>/dev/null; then echo "$TRELLIS_IDEMPOTENCY_KEY" >> "$LOG"; fi; echo done %d`, 2+i%3, i)})
	}
	submit := func() []uint64 {
		resp, err := rpc.Submit(ctx, connect.NewRequest(req))
		if err != nil {
			t.Fatalf("submit: %v", err)
		}
		return resp.Msg.TaskIds
	}
	first := submit()
	if again := submit(); fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatalf("resubmit: task IDs %v, want %v", again, first)
	}
	waitFor(t, time.Minute, "2 effects", func() bool { return len(fileLines(log)) >= 2 })
	c.killManager(t)
	if len(fileLines(log)) == len(req.Tasks) {
		t.Fatalf("every task finished before the kill: the test tests nothing")
	}
	during := make(chan []uint64, 1)
	go func() { // exits once a submit is answered, or ctx ends
		for ctx.Err() == nil {
			resp, err := rpc.Submit(ctx, connect.NewRequest(req))
			if err == nil {
				during <- resp.Msg.TaskIds
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		during <- nil
	}()
	c.restartManager(t, state)
	if ids := <-during; fmt.Sprint(ids) != fmt.Sprint(first) {
		t.Fatalf("resubmit during the restart: task IDs %v, want %v", ids, first)
	}
	// The session's events in the new epoch: one DONE per task.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wreq := connect.NewRequest(&pb.WatchRequest{Session: session})
	wreq.Header().Set("Authorization", "Bearer "+c.secret())
	stream, err := rpc.Watch(wctx, wreq)
	if err != nil {
		t.Fatal(err)
	}
	dones := map[uint64]int{}
	for len(dones) < len(first) && stream.Receive() {
		for _, ev := range stream.Msg().Events {
			if ev.State == pb.TaskState_TASK_STATE_DONE {
				dones[ev.TaskId]++
				if k := ev.GetOutcome().GetKind(); k != pb.ResultKind_RESULT_KIND_SUCCESS {
					t.Errorf("task %d: %s", ev.TaskId, k)
				}
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	// (A second DONE of a task counts while some task has none yet.)
	for _, id := range first {
		if dones[id] != 1 {
			t.Errorf("task %d: %d results, want 1 (all: %v)", id, dones[id], dones)
		}
	}
	if e := counts(fileLines(log)); len(e) != len(req.Tasks) {
		t.Errorf("effects %v: want each of %d keys", e, len(req.Tasks))
	} else {
		for k, n := range e {
			if n != 1 {
				t.Errorf("effect of %s applied %d times, want once", k, n)
			}
		}
	}
}

// TestIdempotentCallsUnderFaults (RECOVERY.md scenario 9): 40 idempotent
// calls of a Python library, with injected failures (the first attempt of
// one key in ten raises) and a SIGKILL of the library process while four
// calls that applied their effect wait to return. Calls that failed or
// died run again (retries, retry on error) with the same idempotency key:
// every call succeeds, and each key's effect is applied exactly once.
func TestIdempotentCallsUnderFaults(t *testing.T) {
	needPython(t)
	dir := t.TempDir()
	args := effectArgs{Started: filepath.Join(dir, "started.log"), Log: filepath.Join(dir, "effects.log"), Dir: dir,
		Gate: filepath.Join(dir, "gate"), PIDs: filepath.Join(dir, "pids"), Fail: true}
	_, cl := effectCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 40
	var calls []*trellis.Task
	for i := range n {
		call := args.call(t, fmt.Sprintf("k%02d", i))
		call.Retries, call.RetryOnError = 3, true
		calls = append(calls, call)
	}
	hs, err := cl.Submit(ctx, calls...)
	if err != nil {
		t.Fatal(err)
	}
	// Four slots: four calls apply their effect and wait at the gate.
	waitFor(t, time.Minute, "4 effects applied", func() bool { return len(fileLines(args.Log)) >= 4 })
	applied := fileLines(args.Log) // waiting at the gate, in the library killed now
	pids := fileLines(args.PIDs)
	victim, err := strconv.Atoi(pids[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the library process %d: %v", victim, err)
	}
	// The four run again in a new instance: they find their effect applied.
	waitFor(t, time.Minute, "a new library process", func() bool {
		for _, p := range fileLines(args.PIDs) {
			if p != pids[0] {
				return true
			}
		}
		return false
	})
	if err := os.WriteFile(args.Gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	again := 0
	for _, h := range hs {
		r := waitResult(t, h, time.Minute)
		var res effectResult
		if !r.OK() || json.Unmarshal(r.Output, &res) != nil {
			t.Fatalf("call %s: %s %s (%s)", h.Name, r.Kind, r.Output, r.Message)
		}
		if r.Attempts > 1 {
			again++
		}
	}
	effects, started := counts(fileLines(args.Log)), counts(fileLines(args.Started))
	if len(effects) != n {
		t.Errorf("effects of %d keys, want %d: %v", len(effects), n, effects)
	}
	for k, m := range effects {
		if m != 1 {
			t.Errorf("key %s: effect applied %d times, want once", k, m)
		}
	}
	injected := 0
	for k, m := range started {
		if _, user, _ := strings.Cut(k, "/"); crc32.ChecksumIEEE([]byte(user))%10 == 0 {
			injected++
			if m < 2 {
				t.Errorf("key %s: %d attempts started; its first fails by injection, want at least 2", k, m)
			}
		}
	}
	for _, k := range applied {
		if started[k] < 2 {
			t.Errorf("key %s: %d attempts started; it was in the library killed, want at least 2", k, started[k])
		}
	}
	if injected == 0 {
		t.Errorf("no key had an injected failure: the test tests less than it says")
	}
	t.Logf("%d calls ran more than once: %d keys with an injected failure, %d killed with the library", again, injected, len(applied))
}

// TestCallsNotAdopted: the manager (with --state) and the worker running
// two calls are both killed with SIGKILL; the manager restarts with
// another worker. Once the adopt window passes, the idempotent call runs
// again there (its effect, applied by the lost attempt under the same
// key, is not applied twice), and the at-most-once call goes to unknown,
// listed by trellis status, until trellis reconcile says what happened.
func TestCallsNotAdopted(t *testing.T) {
	needPython(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	args := effectArgs{Started: filepath.Join(dir, "started.log"), Log: filepath.Join(dir, "effects.log"), Dir: dir, Gate: filepath.Join(dir, "gate")}
	c := newCluster(t, "--state", state, "--adopt-window", "2s")
	w1 := c.worker("w1", nil, "--cores", "1")
	cl := c.client()
	c.waitWorkers(cl, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cl.Install(ctx, effectLib()); err != nil {
		t.Fatal(err)
	}
	amo := args.call(t, "once")
	amo.Effects = trellis.EffectsAtMostOnce
	hs, err := cl.Submit(ctx, args.call(t, "again"), amo)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "both calls to apply their effects", func() bool { return len(fileLines(args.Log)) == 2 })
	waitDurable(ctx, t, cl, 5)
	c.killManager(t)
	w1.signal(t, syscall.SIGKILL)
	w1.wait(t, 10*time.Second)
	c.worker("w2", nil, "--cores", "1")
	c.restartManager(t, state, "--adopt-window", "2s")
	var unknown []trellis.UnknownTask
	waitFor(t, time.Minute, "the at-most-once call in unknown", func() bool {
		s, err := cl.Status(ctx)
		if err != nil {
			return false
		}
		unknown = s.UnknownTasks
		return len(unknown) == 1
	})
	if u := unknown[0]; u.Task != hs[1].ID || u.Attempt != 1 {
		t.Errorf("unknown %+v; want call %d, attempt 1", u, hs[1].ID)
	}
	if err := os.WriteFile(args.Gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, hs[0], time.Minute)
	if !r.OK() || r.Attempts != 2 {
		t.Errorf("idempotent call: %s (%s) after %d attempts; want the success of attempt 2", r.Kind, r.Message, r.Attempts)
	}
	if code, out := runTrellis(t, "reconcile", c.addr, strconv.FormatUint(hs[1].ID, 10), "--failed", "--secret-file", c.secretFile); code != 0 {
		t.Fatalf("reconcile --failed: exit %d: %s", code, out)
	}
	if r := waitResult(t, hs[1], time.Minute); r.OK() {
		t.Errorf("at-most-once call: %s; want the failure the operator reconciled", r.Kind)
	}
	started, effects := counts(fileLines(args.Started)), counts(fileLines(args.Log))
	for key, n := range started {
		_, name, _ := strings.Cut(key, "/")
		want := map[string]int{"again": 2, "once": 1}[name]
		if n != want || effects[key] != 1 {
			t.Errorf("call %s: started %d times, effect applied %d times; want %d and 1", name, n, effects[key], want)
		}
	}
}
