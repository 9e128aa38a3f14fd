package worker

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
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
