package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trellis"
)

var (
	chaosKills = flag.Int("chaos-kills", 3, "TestChaos: how many times it kills a process (the manager or a worker); more for a longer run")
	chaosSeed  = flag.Uint64("chaos-seed", 0, "TestChaos: the seed of the kills (0: from the clock; the test logs it)")
)

// TestChaos (bounded; -chaos-kills N for a longer run): tasks with no
// effects and idempotent ones, and idempotent calls of a Python library
// (with python3), run through a manager with --state and two worker
// processes while, after a seeded random number of results each
// time, the test kills the manager (SIGKILL, then starts it again on the
// same state and address) or a worker (SIGKILL, then starts a new one).
// Every task must end with success and its output byte for byte; every
// task whose result the client had before a manager's kill must not run
// again after it; an idempotent task's or call's effect (a file named by
// its TRELLIS_IDEMPOTENCY_KEY, written once) is there exactly once.
func TestChaos(t *testing.T) {
	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano()%1000) + 1
	}
	t.Logf("seed %d (-chaos-seed %d replays the kills' schedule)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	state, runs, effects := filepath.Join(dir, "state"), filepath.Join(dir, "runs.log"), filepath.Join(dir, "effects")
	if err := os.Mkdir(effects, 0o755); err != nil {
		t.Fatal(err)
	}
	// A snapshot every 16 records: the journal is compacted again and
	// again while the manager is killed.
	c := newCluster(t, "--state", state, "--snapshot-records", "16")
	workers := []*proc{c.worker("w1", nil, "--cores", "2"), c.worker("w2", nil, "--cores", "2")}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl := c.client()
	c.waitWorkers(cl, 2)

	n := 12 * (*chaosKills + 1)
	var tasks []*trellis.Task
	for i := range n {
		// Every task logs each run; an idempotent one applies its effect
		// once per key: it links a file named after the key into place
		// with its content (a link fails when the name exists), so that a
		// kill at any point leaves either no effect or the whole one.
		cmd := fmt.Sprintf(`printf '%%s\n' "$TRELLIS_IDEMPOTENCY_KEY" >> "$RUNS"; sleep 0.1; printf 'result %d\n' > out`, i)
		tk := trellis.NewTask(cmd)
		tk.Name, tk.Key, tk.Env = fmt.Sprintf("t%03d", i), fmt.Sprintf("t%03d", i), []string{"RUNS=" + runs, "EFFECTS=" + effects}
		if i%2 == 1 {
			tk.Effects = trellis.EffectsIdempotent
			tk.Command += `; f="$EFFECTS/$(printf '%s' "$TRELLIS_IDEMPOTENCY_KEY" | tr / _)"; echo applied > "$f.$$"; ln "$f.$$" "$f" 2>/dev/null; rm -f "$f.$$"`
		}
		tk.AddOutput(trellis.Output(filepath.Join(dir, fmt.Sprintf("out%03d", i))), "out")
		tasks = append(tasks, tk)
	}
	hs, err := cl.Submit(ctx, tasks...)
	if err != nil {
		t.Fatal(err)
	}
	// Idempotent calls of a Python library beside the tasks (where there
	// is python3): they log each run to the same log, and apply their
	// effect once per key in the same directory (effectLibrary).
	var calls []*trellis.Handle
	callArgs := effectArgs{Started: runs, Log: filepath.Join(dir, "call-effects.log"), Dir: effects, Sleep: 0.1}
	if _, err := exec.LookPath("python3"); err == nil {
		if err := cl.Install(ctx, effectLib()); err != nil {
			t.Fatal(err)
		}
		var cs []*trellis.Task
		for i := range n / 2 {
			call := callArgs.call(t, fmt.Sprintf("c%03d", i))
			call.Retries = *chaosKills + 1 // each kill of a worker may take it
			cs = append(cs, call)
		}
		if calls, err = cl.Submit(ctx, cs...); err != nil {
			t.Fatal(err)
		}
	}
	all := n + len(calls)
	ws := waitAll(ctx, append(hs, calls...))
	had := ws.had
	// runsOf counts each task's runs so far, from the log.
	runsOf := func() map[string]int {
		data, _ := os.ReadFile(runs)
		count := make(map[string]int)
		for _, line := range strings.Fields(string(data)) {
			_, key, _ := strings.Cut(line, "/")
			count[key]++
		}
		return count
	}
	type kill struct {
		had  map[string]bool // results the client had before a manager kill
		runs map[string]int  // and how many times each task had run then
	}
	var protected []kill
	next := 0
	for k := range *chaosKills {
		next += 1 + rng.IntN(all/(*chaosKills+1))
		waitFor(t, 2*time.Minute, fmt.Sprintf("%d results before kill %d", next, k+1), func() bool { return len(had()) >= min(next, all) })
		if len(had()) == all {
			break
		}
		if rng.IntN(3) > 0 {
			before := had()
			c.killManager(t)
			protected = append(protected, kill{before, runsOf()})
			c.restartManager(t, state, "--snapshot-records", "16")
			t.Logf("kill %d: the manager, after %d results", k+1, len(before))
		} else {
			i := rng.IntN(len(workers))
			workers[i].signal(t, 9)
			workers[i].wait(t, 10*time.Second)
			workers[i] = c.worker(fmt.Sprintf("w%d-%d", i+1, k), nil, "--cores", "2")
			t.Logf("kill %d: worker %d, after %d results", k+1, i+1, len(had()))
		}
	}
	ws.wait()

	for _, h := range calls {
		r, err := ws.results[h.Name], ws.errs[h.Name]
		var res effectResult
		switch {
		case err != nil:
			t.Fatalf("call %s: %v", h.Name, err)
		case !r.OK() || json.Unmarshal(r.Output, &res) != nil || !strings.HasSuffix(res.Key, "/"+h.Name):
			t.Errorf("call %s: %s %s (%s); want success", h.Name, r.Kind, r.Output, r.Message)
		}
	}
	applied := map[string]int{} // by the client's part of the key
	for _, key := range fileLines(callArgs.Log) {
		_, name, _ := strings.Cut(key, "/")
		applied[name]++
	}
	for _, h := range calls {
		entries, _ := filepath.Glob(filepath.Join(effects, "*_"+h.Name))
		if len(entries) != 1 || applied[h.Name] != 1 {
			t.Errorf("idempotent call %s: %d effect files, applied %d times; want 1 and 1", h.Name, len(entries), applied[h.Name])
		}
	}
	for i, h := range hs {
		r, err := ws.results[h.Name], ws.errs[h.Name]
		if err != nil {
			t.Fatalf("task %s: %v", h.Name, err)
		}
		if !r.OK() {
			t.Errorf("task %s: %s (%s); want success", h.Name, r.Kind, r.Message)
			continue
		}
		got, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("out%03d", i)))
		if want := fmt.Sprintf("result %d\n", i); err != nil || string(got) != want {
			t.Errorf("output of task %s: %q (%v); want %q", h.Name, got, err, want)
		}
	}
	count := runsOf()
	for _, k := range protected {
		for name := range k.had {
			if count[name] != k.runs[name] {
				t.Errorf("task %s had its result before a manager's kill, having run %d times, but ran %d times in all; want no run after", name, k.runs[name], count[name])
			}
		}
	}
	for i := 1; i < n; i += 2 {
		name := fmt.Sprintf("t%03d", i)
		entries, _ := filepath.Glob(filepath.Join(effects, "*_"+name))
		if len(entries) != 1 {
			t.Errorf("idempotent task %s: %d effect files; want 1", name, len(entries))
			continue
		}
		if b, _ := os.ReadFile(entries[0]); string(b) != "applied\n" {
			t.Errorf("idempotent task %s: effect %q; want applied once", name, b)
		}
	}
	total := 0
	for _, v := range count {
		total += v
	}
	// The journal holds far more than 16 records: the manager snapshots
	// it within a second or so of its start, if no earlier life did.
	var j *trellis.JournalStatus
	waitFor(t, 30*time.Second, "a snapshot of the journal in the status", func() bool {
		st, err := cl.Status(ctx)
		if err == nil {
			j = st.Journal
		}
		return j != nil && j.LastSnapshot != nil
	})
	t.Logf("%d tasks, %d calls, %d runs, %d manager kills; the last snapshot folds records 1..%d into %d",
		n, len(calls), total, len(protected), j.LastSnapshot.Folded, j.LastSnapshot.Records)
}
