package worker

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	pb "trellis/internal/proto/trellisv1"
)

// TestAheadReportsGoOnceNoneHeld: a report held while runs sent ahead wait
// goes as soon as the last of them starts, not when the hold ends.
func TestAheadReportsGoOnceNoneHeld(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, func(c *Config) { c.aheadHold = time.Hour })
	m, _ := h.connect(t, 60_000)
	gate := filepath.Join(t.TempDir(), "go")
	m.send(t, cores(run(1, waitFor(gate)), 4, false))
	m.send(t, cores(run(2, waitFor(gate+".2")), 2, true))
	m.send(t, cores(run(3, waitFor(gate+".3")), 2, true))
	waitBoxes(t, h.w, 1)
	writeGate(t, gate, "one\n")
	// 1 ends with two runs held: its report is held, and both start.
	if got := m.next(t).GetDone(); got.GetTaskId() != 1 || string(got.Outcome.GetStdout()) != "one\n" {
		t.Fatalf("got %v; want task 1's report", got)
	}
	writeGate(t, gate+".2", "two\n")
	writeGate(t, gate+".3", "three\n")
	for range 2 { // ended before the worker stops
		m.next(t)
	}
}

// writeGate writes file, which a command made by waitFor waits for.
func writeGate(t *testing.T, file, content string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAheadDrainSendsHeldReports: a drain hands the runs held ahead back
// and sends the reports held for them at once, not when the hold ends or
// the attempts still running end.
func TestAheadDrainSendsHeldReports(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, func(c *Config) { c.aheadHold = time.Hour })
	m, _ := h.connect(t, 60_000)
	gate := filepath.Join(t.TempDir(), "go")
	started := gate + ".3.started"
	m.send(t, cores(run(1, waitFor(gate)), 2, false))
	m.send(t, cores(run(2, waitFor(gate+".2")), 2, false))
	m.send(t, cores(run(3, "touch "+started+"; "+waitFor(gate+".3")), 1, true)) // held: 1 and 2 take every core
	m.send(t, cores(run(4, "true"), 4, true))
	waitBoxes(t, h.w, 2)
	writeGate(t, gate, "one\n")
	waitFile(t, started) // 1 ended (its report held: 4 waits behind 2 and 3) and 3 started
	h.w.Drain()
	if got := m.next(t); got.GetDraining() == nil {
		t.Fatalf("got %v; want Draining", got)
	}
	if got := m.next(t).GetReturned(); got.GetTaskId() != 4 {
		t.Fatalf("got %v; want task 4 returned", got)
	}
	// 2 and 3 still run: 1's report must not wait for them.
	if got := m.next(t).GetDone(); got.GetTaskId() != 1 || string(got.Outcome.GetStdout()) != "one\n" {
		t.Fatalf("got %v; want task 1's report", got)
	}
	writeGate(t, gate+".2", "two\n")
	writeGate(t, gate+".3", "three\n")
	for range 2 { // ended before the worker stops
		if got := m.next(t).GetDone(); got.GetTaskId() != 2 && got.GetTaskId() != 3 {
			t.Fatalf("got %v; want the report of task 2 or 3", got)
		}
	}
}

// TestAheadStartsWhileOutputsAreTaken: a run held ahead starts on the cores
// of the run before it once that one's command has exited, while its
// outputs are still taken (here 256 MiB hashed into the cache), so its
// report comes first.
func TestAheadStartsWhileOutputsAreTaken(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, func(c *Config) { c.aheadHold = time.Hour })
	m, _ := h.connect(t, 60_000)
	big := run(1, "head -c 256M /dev/zero > big")
	big.GetRun().Spec.Outputs = []*pb.FileRef{{Name: "big-1", Path: "big", Keep: true}}
	m.send(t, cores(big, 4, false))
	m.send(t, cores(run(2, "true"), 4, true))
	var order []uint64
	for len(order) < 2 {
		if d := m.next(t).GetDone(); d != nil {
			if d.Outcome.GetKind() != pb.ResultKind_RESULT_KIND_SUCCESS {
				t.Fatalf("task %d: %v", d.TaskId, d.Outcome)
			}
			order = append(order, d.TaskId)
		}
	}
	if want := []uint64{2, 1}; !slices.Equal(order, want) {
		t.Errorf("reports of tasks %v; want %v (2 started while 1's output was taken)", order, want)
	}
}

// TestAheadPreparedSandbox: a run held ahead waits with its sandbox made
// and its inline input in place, and runs in it; one handed back gives its
// sandbox back, emptied, for the next run.
func TestAheadPreparedSandbox(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, func(c *Config) { c.aheadHold = time.Hour })
	m, _ := h.connect(t, 60_000)
	gate := filepath.Join(t.TempDir(), "go")
	inline := func(s string) *pb.FileRef {
		return &pb.FileRef{Name: "inline-" + s, Path: "in.txt", Content: []byte(s + "\n")}
	}
	m.send(t, cores(run(1, waitFor(gate)), 4, false))
	m.send(t, cores(run(2, "cat in.txt", inline("two")), 4, true))
	m.send(t, cores(run(3, "cat in.txt", inline("three")), 4, true))
	inputs := func() []string { // the inputs in the worker's sandboxes
		var got []string
		files, _ := filepath.Glob(filepath.Join(h.w.boxes.dir, "*", "in.txt"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			got = append(got, string(b))
		}
		slices.Sort(got)
		return got
	}
	pollFor(t, "both held runs' inputs in their sandboxes", func() bool {
		return slices.Equal(inputs(), []string{"three\n", "two\n"})
	})
	m.send(t, revoke(3))
	if got := m.next(t).GetReturned(); got.GetTaskId() != 3 {
		t.Fatalf("got %v; want task 3 handed back", got)
	}
	if got := inputs(); !slices.Equal(got, []string{"two\n"}) {
		t.Errorf("inputs in the sandboxes after 3 was handed back: %q; want only 2's", got)
	}
	writeGate(t, gate, "one\n")
	want := map[uint64]string{1: "one\n", 2: "two\n"}
	for len(want) > 0 {
		d := m.next(t).GetDone()
		if d == nil {
			continue
		}
		if s, ok := want[d.TaskId]; !ok || string(d.Outcome.GetStdout()) != s {
			t.Fatalf("report %v; want one of %v by task", d, want)
		}
		delete(want, d.TaskId)
	}
}

// pollFor waits up to 20 s for cond.
func pollFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in 20s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAheadSimulatedNoSandbox: a simulated worker's held runs wait without
// a sandbox (its runs use none).
func TestAheadSimulatedNoSandbox(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, func(c *Config) { c.Simulate = &Simulation{Delay: 20 * time.Millisecond} })
	m, _ := h.connect(t, 60_000)
	m.send(t, cores(run(1, "true"), 4, false))
	for task := uint64(2); task <= 4; task++ {
		m.send(t, cores(run(task, "true"), 4, true))
	}
	for done := 0; done < 4; {
		if m.next(t).GetDone() != nil {
			done++
		}
	}
	if entries, _ := os.ReadDir(h.w.boxes.dir); len(entries) != 0 {
		t.Errorf("%d sandboxes made for a simulated worker's runs; want none", len(entries))
	}
}
