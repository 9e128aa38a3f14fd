package runner

import (
	"bytes"
	"strings"
	"testing"

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
		"1 waiting (1 that no connected worker can run), 1 running, 0 done, 0 failed (of 2)",
		"0 waiting, 2 running, 0 done, 0 failed (of 2)",
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
