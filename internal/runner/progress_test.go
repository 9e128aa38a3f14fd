package runner

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"trellis"
)

// TestProgressUnplaceable: a task that no connected worker could run is
// shown with the reason when it is told, and counted as such until its
// next event.
func TestProgressUnplaceable(t *testing.T) {
	var out bytes.Buffer
	p := NewProgress(&out, false)
	p.Begin("wf", 2)
	const why = "no connected worker has 64 cores (largest: 2)"
	p.Event(trellis.Event{Task: 1, Name: "big", State: trellis.StateWaiting, Unplaceable: why})
	p.Event(trellis.Event{Task: 2, Name: "small", State: trellis.StateRunning})
	p.draw(false)
	p.Event(trellis.Event{Task: 1, Name: "big", State: trellis.StateRunning})
	p.End()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"waiting big: " + why,
		"1 waiting (1 that no connected worker can run), 1 running, 0 done, 0 failed, 0 skipped (of 2, 0%)",
		"0 waiting, 2 running, 0 done, 0 failed, 0 skipped (of 2, 0%)",
	}
	if len(lines) != len(want) {
		t.Fatalf("progress:\n%s\nwant %d lines", out.String(), len(want))
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("progress line %d = %q, want it to contain %q", i, lines[i], w)
		}
	}
}

// TestProgressSkipped: a task whose input's producer failed is counted
// skipped, as the summary counts it, and its line names the producer by
// its name; the count line says the share ended.
func TestProgressSkipped(t *testing.T) {
	var out bytes.Buffer
	p := NewProgress(&out, false)
	p.Begin("wf", 4)
	hs := []*trellis.Handle{{ID: 11, Name: "make-data"}, {ID: 12, Name: "use-data"}, {ID: 13, Name: "after-use"}, {ID: 14, Name: "other"}}
	p.Submitted(hs, map[uint64][]uint64{12: {11}, 13: {12}})
	missing := &trellis.Result{Kind: trellis.InputMissing, Message: "input produced by task 11 is missing: that task ended with failed"}
	p.Event(trellis.Event{Task: 11, Name: "make-data", State: trellis.StateDone, Result: &trellis.Result{Kind: trellis.Failed, Message: "exit status 3"}})
	p.Event(trellis.Event{Task: 12, Name: "use-data", State: trellis.StateDone, Result: missing})
	p.Event(trellis.Event{Task: 13, Name: "after-use", State: trellis.StateDone, Result: &trellis.Result{Kind: trellis.InputMissing, Message: "after task 12"}})
	p.Event(trellis.Event{Task: 14, Name: "other", State: trellis.StateRunning})
	p.End()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"failed  make-data: failed: exit status 3",
		`skipped use-data: it depends on "make-data", which did not succeed`,
		`skipped after-use: it depends on "use-data", which did not succeed`,
		"wf: 0 waiting, 1 running, 0 done, 1 failed, 2 skipped (of 4, 75%, about ",
	}
	if len(lines) != len(want) {
		t.Fatalf("progress:\n%s\nwant %d lines", out.String(), len(want))
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("progress line %d = %q, want it to contain %q", i, lines[i], w)
		}
	}
}

func TestTimeLeft(t *testing.T) {
	for _, tc := range []struct {
		elapsed      time.Duration
		ended, total int
		want         string
	}{
		{10 * time.Second, 0, 4, ""},
		{10 * time.Second, 1, 4, ", about 30s left"},
		{10 * time.Second, 3, 4, ", about 3s left"},
		{10 * time.Second, 4, 4, ""},
	} {
		if got := timeLeft(tc.elapsed, tc.ended, tc.total); got != tc.want {
			t.Errorf("timeLeft(%s, %d, %d) = %q, want %q", tc.elapsed, tc.ended, tc.total, got, tc.want)
		}
	}
}

// TestProgressCounters: re-runs and attempts handed back show as they
// grow, each with a line off a terminal, and the final line has the
// summary's counts.
func TestProgressCounters(t *testing.T) {
	var out bytes.Buffer
	p := NewProgress(&out, false)
	p.Begin("wf", 1)
	reads := [][2]int{{0, 0}, {2, 0}, {2, 1}}
	p.Follow(func() (int, int, error) {
		r := reads[0]
		reads = reads[1:]
		return r[0], r[1], nil
	})
	for range 3 {
		p.countersRead = time.Time{} // a second has passed
		p.readCounters()
		p.draw(false)
	}
	p.Counters(3, 1)
	p.End()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"1 waiting, 0 running, 0 done, 0 failed, 0 skipped (of 1, 0%)",
		"re-run  2 tasks so far, to recreate lost files",
		"0 skipped, 2 re-run (of 1, 0%)",
		"waiting 1 attempts so far handed back for cache space",
		"0 skipped, 2 re-run, 1 handed back (of 1, 0%)",
		"0 skipped, 3 re-run, 1 handed back (of 1, 0%)",
	}
	if len(lines) != len(want) {
		t.Fatalf("progress:\n%s\nwant %d lines", out.String(), len(want))
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("progress line %d = %q, want it to contain %q", i, lines[i], w)
		}
	}
}
