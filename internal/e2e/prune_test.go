package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"trellis"
)

// fullSize reports whether the tests of issue #18 run at the full
// sizes (TRELLIS_E2E_FULL_SIZE=1: GiB of intermediates, minutes), rather
// than scaled down.
func fullSize() bool { return os.Getenv("TRELLIS_E2E_FULL_SIZE") == "1" }

// waitAllOK waits for each of hs (taskWait each) and fails the test at the
// first that did not succeed.
func waitAllOK(t *testing.T, hs []*trellis.Handle) {
	t.Helper()
	for _, h := range hs {
		if r := waitResult(t, h, taskWait()); !r.OK() {
			t.Fatalf("task %s: %v: %s", h.Name, r.Kind, r.Message)
		}
	}
}

// status returns the cluster's status, or fails the test.
func status(t *testing.T, cl *trellis.Client) *trellis.Status {
	t.Helper()
	s, err := cl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// taskWait is how long a test of issue #18 waits for each task.
func taskWait() time.Duration {
	if fullSize() {
		return 10 * time.Minute
	}
	return 2 * time.Minute
}

// The chain of issue #18, scaled down: 12 tasks each copy the previous
// task's 8 MiB temp file on one worker whose cache holds 40 MiB. The 96 MiB
// of intermediates fit because each temp file is pruned once its reader is
// done; the last output comes back byte for byte. At full size, 64 MiB
// files through a 400 MiB cache.
func TestPrunedChainFitsSmallCache(t *testing.T) {
	size, disk := 8<<20, "40"
	if fullSize() {
		size, disk = 64<<20, "400"
	}
	c := newCluster(t)
	c.worker("small", nil, "--cores", "1", "--disk", disk)
	cl := c.client()
	c.waitWorkers(cl, 1)

	tasks, out := chain(t, 12, size, "cat in > out")
	hs, err := cl.Submit(context.Background(), tasks...)
	if err != nil {
		t.Fatal(err)
	}
	waitAllOK(t, hs)
	checkChain(t, out, size)
}

// chain returns a chain of steps tasks: the first writes size bytes of
// "trellis-chain\n" to a temp file, each next one runs command (reading
// "in", writing "out") on the previous one's file, and the last one's
// output goes to out at the client.
func chain(t *testing.T, steps, size int, command string) (tasks []*trellis.Task, out string) {
	out = filepath.Join(t.TempDir(), "last")
	prev := trellis.Temp()
	tasks = []*trellis.Task{trellis.NewTask(fmt.Sprintf("yes trellis-chain | head -c %d > out", size)).AddOutput(prev, "out")}
	for i := 2; i <= steps; i++ {
		next := trellis.Temp()
		if i == steps {
			next = trellis.Output(out)
		}
		tk := trellis.NewTask(command).AddInput(prev, "in").AddOutput(next, "out")
		tk.Name = fmt.Sprintf("t%d", i)
		tasks = append(tasks, tk)
		prev = next
	}
	return tasks, out
}

// checkChain checks that the chain's last output is its first, byte for byte.
func checkChain(t *testing.T, out string, size int) {
	t.Helper()
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("trellis-chain\n"), size/len("trellis-chain\n")+1)[:size]
	if !bytes.Equal(got, want) {
		t.Errorf("last output: %d bytes, want %d bytes of %q (first differ at %d)", len(got), len(want), "trellis-chain\n", firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// Two 12 MiB temp files on a worker whose cache holds 20 MiB: the second
// to be written does not fit while the first is still read, so its task
// is handed back, waits, and runs again once the first is pruned. Neither
// task fails.
func TestFullCacheWaits(t *testing.T) {
	const size = 12 << 20
	c := newCluster(t)
	c.worker("small", nil, "--cores", "2", "--disk", "20")
	cl := c.client()
	c.waitWorkers(cl, 1)

	var tasks []*trellis.Task
	for _, name := range []string{"x", "y"} {
		tmp := trellis.Temp()
		w := trellis.NewTask(fmt.Sprintf("head -c %d /dev/zero > out", size)).AddOutput(tmp, "out")
		w.Name = "write-" + name
		r := trellis.NewTask("sleep 1; wc -c < in").AddInput(tmp, "in")
		r.Name = "read-" + name
		tasks = append(tasks, w, r)
	}
	hs, err := cl.Submit(context.Background(), tasks...)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		r := waitResult(t, h, time.Minute)
		if !r.OK() {
			t.Fatalf("task %s: %v: %s", h.Name, r.Kind, r.Message)
		}
		if h.Name[:4] == "read" && string(bytes.TrimSpace(r.Stdout)) != fmt.Sprint(size) {
			t.Errorf("task %s: stdout %q, want %d", h.Name, r.Stdout, size)
		}
	}
}

// An output larger than any connected worker's cache fails at once, and
// says why, instead of waiting for ever.
func TestOutputLargerThanEveryCache(t *testing.T) {
	c := newCluster(t)
	c.worker("tiny", nil, "--cores", "1", "--disk", "5")
	cl := c.client()
	c.waitWorkers(cl, 1)
	tmp := trellis.Temp()
	w := trellis.NewTask("head -c 8388608 /dev/zero > out").AddOutput(tmp, "out")
	hs, err := cl.Submit(context.Background(), w, trellis.NewTask("wc -c < in").AddInput(tmp, "in"))
	if err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, hs[0], time.Minute)
	if want := "needs 8 MiB; the largest cache of a connected worker is 5 MiB"; r.Kind != trellis.ResourceExceeded || !strings.Contains(r.Message, want) {
		t.Errorf("got %v: %s; want resource exceeded: ...%s...", r.Kind, r.Message, want)
	}
}

// The 200-step chain of issue #18, scaled down to 256 KiB files (50 MiB of
// intermediates) on 2 workers whose caches hold 1 MiB each. At full size,
// 64 MiB files (12.5 GiB of intermediates) through caches of 400 MiB.
func TestPrunedLongChainTwoWorkers(t *testing.T) {
	size, disk := 256<<10, "1"
	if fullSize() {
		size, disk = 64<<20, "400"
	}
	const steps = 200
	c := newCluster(t)
	for _, name := range []string{"a", "b"} {
		c.worker(name, nil, "--cores", "1", "--disk", disk)
	}
	cl := c.client()
	c.waitWorkers(cl, 2)

	tasks, out := chain(t, steps, size, "cat in > out")
	hs, err := cl.Submit(context.Background(), tasks...)
	if err != nil {
		t.Fatal(err)
	}
	waitAllOK(t, hs)
	checkChain(t, out, size)
	s := status(t, cl)
	if min := int64(steps-3) * int64(size); s.BytesPruned < min {
		t.Errorf("bytes pruned = %d, want at least %d (all but the last few files)", s.BytesPruned, min)
	}
}

// Kept temp files are never pruned: an output that does not fit beside
// them fails and says why, instead of waiting for ever.
func TestKeptFilesLeaveNoRoom(t *testing.T) {
	c := newCluster(t)
	c.worker("small", nil, "--cores", "1", "--disk", "20")
	cl := c.client()
	c.waitWorkers(cl, 1)
	first := trellis.NewTask("head -c 12582912 /dev/zero > out").AddOutput(trellis.Temp().Keep(), "out")
	second := trellis.NewTask("head -c 12582912 /dev/zero > out").AddOutput(trellis.Temp(), "out")
	second.After = []*trellis.Task{first}
	hs, err := cl.Submit(context.Background(), first, second)
	if err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, hs[0], time.Minute); !r.OK() {
		t.Fatalf("first: %v: %s", r.Kind, r.Message)
	}
	r := waitResult(t, hs[1], time.Minute)
	if want := "needs 12 MiB, but every connected worker's cache is held by files kept for the session"; r.Kind != trellis.ResourceExceeded || !strings.Contains(r.Message, want) {
		t.Errorf("second: got %v: %s; want resource exceeded: ...%s...", r.Kind, r.Message, want)
	}
}

// kill -9 of the worker in the middle of a pruned chain: the files behind
// it were pruned, so the core re-runs the chain's producers back to its
// start on the worker that replaces it; the output is still right, and
// the status counts the tasks re-run.
func TestPrunedChainSurvivesKill(t *testing.T) {
	const size, steps = 64 << 10, 30
	c := newCluster(t)
	a := c.worker("a", nil, "--cores", "1", "--disk", "1")
	cl := c.client()
	c.waitWorkers(cl, 1)

	tasks, out := chain(t, steps, size, "sleep 0.05; cat in > out")
	hs, err := cl.Submit(context.Background(), tasks...)
	if err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, hs[steps/2], time.Minute); !r.OK() {
		t.Fatalf("task %s: %v: %s", hs[steps/2].Name, r.Kind, r.Message)
	}
	a.signal(t, syscall.SIGKILL)
	a.wait(t, 10*time.Second)
	c.worker("b", nil, "--cores", "1", "--disk", "1")
	waitAllOK(t, hs)
	checkChain(t, out, size)
	s := status(t, cl)
	if s.TasksRecreated < steps/2 {
		t.Errorf("tasks re-run = %d, want at least %d: the chain behind the kill was pruned", s.TasksRecreated, steps/2)
	}
}

// kill -9 of a worker in the middle of a chain whose steps alternate
// between two workers (even steps need the 2 cores of worker a, odd steps
// the memory of worker b): step k+1 (k = half the steps, even) waits behind
// a gate until step k's output, on a, is lost with it. With prune_depth 0
// every file behind it was pruned, and the chain runs again from its
// start (k tasks); with prune_depth 2, step k-1's output is still held on
// b, and only step k runs again. 12 steps of 64 KiB; at full size
// (TRELLIS_E2E_FULL_SIZE=1), the 200 steps of 64 MiB.
func TestPruneDepthBoundsRerunsAfterKill(t *testing.T) {
	size, steps, disk := 64<<10, 12, "64"
	if fullSize() {
		size, steps, disk = 64<<20, 200, "400"
	}
	reruns := map[int]int{}
	for _, depth := range []int{0, 2} {
		t.Run(fmt.Sprintf("prune_depth=%d", depth), func(t *testing.T) {
			reruns[depth] = killChainMidway(t, depth, steps, size, disk)
		})
	}
	t.Logf("tasks re-run: %d with prune_depth 0, %d with prune_depth 2", reruns[0], reruns[2])
	if t.Failed() {
		return
	}
	if reruns[0] != steps/2 || reruns[2] != 1 {
		t.Errorf("tasks re-run: %d with prune_depth 0, %d with prune_depth 2; want %d (back to the start) and 1", reruns[0], reruns[2], steps/2)
	}
}

// killChainMidway runs a chain of temp files of depth (see
// TestPruneDepthBoundsRerunsAfterKill), kills worker a once step steps/2
// is done, and returns how many tasks ran again.
func killChainMidway(t *testing.T, depth, steps, size int, disk string) int {
	k := steps / 2
	c := newCluster(t)
	even := []string{"--cores", "2", "--memory", "1000", "--disk", disk}
	a := c.worker("a", nil, even...)
	c.worker("b", nil, "--cores", "1", "--memory", "4000", "--disk", disk)
	c.worker("c", nil, "--cores", "0.5", "--memory", "8000", "--disk", disk)
	cl := c.client()
	c.waitWorkers(cl, 3)

	gateFile := filepath.Join(t.TempDir(), "open")
	gate := trellis.NewTask(fmt.Sprintf("while [ ! -e %s ]; do sleep 0.05; done", gateFile))
	gate.Name, gate.Resources = "gate", trellis.Resources{Cores: 0.5, MemoryMB: 6000} // only c
	out := filepath.Join(t.TempDir(), "last")
	tasks := []*trellis.Task{gate}
	var prev *trellis.File
	for i := 1; i <= steps; i++ {
		next := trellis.Temp().PruneDepth(depth)
		if i == steps {
			next = trellis.Output(out)
		}
		tk := trellis.NewTask("cat in > out").AddOutput(next, "out")
		if i == 1 {
			tk.Command = fmt.Sprintf("yes trellis-chain | head -c %d > out", size)
		} else {
			tk.AddInput(prev, "in")
		}
		tk.Name = fmt.Sprintf("t%d", i)
		tk.Resources = trellis.Resources{Cores: 1, MemoryMB: 2000} // odd: only b
		if i%2 == 0 {
			tk.Resources = trellis.Resources{Cores: 2} // even: only a
		}
		if i == k+1 {
			tk.After = []*trellis.Task{gate}
		}
		tasks = append(tasks, tk)
		prev = next
	}
	hs, err := cl.Submit(context.Background(), tasks...)
	if err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, hs[k], taskWait()); !r.OK() { // step k, on a (hs[0] is the gate)
		t.Fatalf("task %s: %v: %s", hs[k].Name, r.Kind, r.Message)
	}
	a.signal(t, syscall.SIGKILL)
	a.wait(t, 10*time.Second)
	c.worker("a2", nil, even...)
	if err := os.WriteFile(gateFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitAllOK(t, hs)
	checkChain(t, out, size)
	s := status(t, cl)
	return s.TasksRecreated
}

// The map/reduce of issue #18, scaled down: 64 maps of 1 MiB into 16
// reduces of 4 and one gather, on 2 workers whose caches hold 10 MiB each
// (64 MiB of map output through 20 MiB of disk). Before the core decided
// what workers may evict (internal/core/pins.go), a worker sometimes
// evicted an input staged for a reduce before its Run arrived, and the
// reduce failed its 4 attempts with "not staged in the cache"; or both
// caches filled with map outputs whose reduces each had to fetch one from
// the other, and the run waited for ever (now broken, full.go).
func TestPrunedMapReduceFitsSmallCaches(t *testing.T) {
	const maps, reduces = 64, 16
	size, disk := 1<<20, "10"
	if fullSize() { // 4 GiB of map output through 2 x 1000 MiB
		size, disk = 64<<20, "1000"
	}
	c := newCluster(t)
	for _, name := range []string{"a", "b"} {
		c.worker(name, nil, "--cores", "2", "--disk", disk)
	}
	cl := c.client()
	c.waitWorkers(cl, 2)

	out := filepath.Join(t.TempDir(), "total")
	gather := trellis.NewTask("cat r* > total").AddOutput(trellis.Output(out), "total")
	gather.Name = "gather"
	var tasks []*trellis.Task
	per := maps / reduces
	for r := range reduces {
		red := trellis.NewTask("cat p* | wc -c > n")
		red.Name = fmt.Sprintf("reduce-%d", r)
		for j := range per {
			part := trellis.Temp()
			m := trellis.NewTask(fmt.Sprintf("head -c %d /dev/zero > part", size)).AddOutput(part, "part")
			m.Name = fmt.Sprintf("map-%d", r*per+j)
			tasks = append(tasks, m)
			red.AddInput(part, fmt.Sprintf("p%d", j))
		}
		n := trellis.Temp()
		red.AddOutput(n, "n")
		gather.AddInput(n, fmt.Sprintf("r%02d", r))
		tasks = append(tasks, red)
	}
	hs, err := cl.Submit(context.Background(), append(tasks, gather)...)
	if err != nil {
		t.Fatal(err)
	}
	waitAllOK(t, hs)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat(fmt.Sprintf("%d\n", per*size), reduces); string(got) != want {
		t.Errorf("gather output %q, want %q", got, want)
	}
}
