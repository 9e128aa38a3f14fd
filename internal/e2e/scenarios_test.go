package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trellis"
	"trellis/sdk/python"
)

// effectLibrary is a Python library whose function "apply" logs its call's
// idempotency key when it starts, waits for the file args["gate"] (if any),
// and then applies its effect once per key: it creates a file named after
// the key in args["dir"] (O_EXCL: a second application fails to create
// it), and appends the key to args["log"] every time it applies. It fails
// first with probability args["fail"] (an injected failure), before any
// effect.
const effectLibrary = `import os, random, time
import trellis_library as tl
lib = tl.Library("effect")

@lib.function
def apply(args):
    key = tl.idempotency_key()
    with open(args["started"], "a") as f:
        f.write(key + "\n")
    if random.random() < args.get("fail", 0):
        raise RuntimeError("injected failure")
    gate = args.get("gate")
    while gate and not os.path.exists(gate):
        time.sleep(0.05)
    marker = os.path.join(args["dir"], key.replace("/", "_"))
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        with open(args["log"], "a") as f:
            f.write(key + "\n")
    except FileExistsError:
        pass  # applied already, under this key
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
	Fail    float64 `json:"fail,omitempty"`
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

// effectResult is what apply returns.
type effectResult struct {
	Key string `json:"key"`
	PID int    `json:"pid"`
}

// TestCallsAdopted (docs/recovery.md, adoption of calls): a manager with
// --state is killed with SIGKILL while two calls run in a library instance
// on a worker process; restarted on the same --state, it adopts the
// instance and both calls instead of running them again. Each call logs
// its idempotency key when it starts and when it applies its effect: one
// line each per key, and both results come from the library process that
// ran before the kill.
func TestCallsAdopted(t *testing.T) {
	needPython(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	args := effectArgs{Started: filepath.Join(dir, "started.log"), Log: filepath.Join(dir, "effects.log"), Dir: dir, Gate: filepath.Join(dir, "gate")}
	c := newCluster(t, "--state", state)
	c.worker("w1", nil, "--cores", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := c.client()
	c.waitWorkers(cl, 1)
	if err := cl.Install(ctx, effectLib()); err != nil {
		t.Fatal(err)
	}
	hs, err := cl.Submit(ctx, args.call(t, "c1"), args.call(t, "c2"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "both calls to start", func() bool { return len(fileLines(args.Started)) == 2 })
	// Their Runs went without waiting for their Dispatched records: kill
	// once the records (start, install, submit, two dispatches) are on
	// disk, or there is nothing to adopt.
	waitFor(t, time.Minute, "the dispatches to be journaled", func() bool {
		s, err := cl.Status(ctx)
		return err == nil && s.Journal != nil && s.Journal.Durable >= 5
	})
	c.manager.signal(t, 9)
	c.manager.wait(t, 10*time.Second)
	c.manager = start(t, nil, "manager", "--listen", c.addr, "--secret-file", c.secretFile, "--state", state)
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
	if len(pids) != 1 {
		t.Errorf("results from library processes %v; want one, the instance started before the kill", pids)
	}
	s, e := fileLines(args.Started), fileLines(args.Log)
	if len(s) != 2 || len(e) != 2 || counts(e)[s[0]] != 1 || counts(e)[s[1]] != 1 {
		t.Errorf("started %q, effects %q; want each of the two keys once in both", s, e)
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

