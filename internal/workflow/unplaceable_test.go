package workflow

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestUnplaceableTimeout: "unplaceable_timeout" is set by a task, by the
// workflow's defaults, or by a call; unset leaves it to the manager (0),
// and 0 waits for ever (negative).
func TestUnplaceableTimeout(t *testing.T) {
	src := `
defaults:
  unplaceable_timeout: 2m
libraries:
  - name: lib
    command: serve
calls:
  - {name: c1, library: lib, function: f, unplaceable_timeout: 30s}
  - {name: c2, library: lib, function: f}
  - {name: c3, library: lib, function: f, unplaceable_timeout: 0s}
tasks:
  - {name: a, command: "true"}
  - {name: b, command: "true", unplaceable_timeout: 10s}
  - {name: c, command: "true", unplaceable_timeout: 0s}
`
	wf, err := Parse("wf.yaml", t.TempDir(), []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	got := map[string]time.Duration{}
	for _, task := range wf.Tasks {
		got[task.Name] = task.Unplaceable
	}
	for _, c := range wf.Calls {
		got[c.Name] = c.Unplaceable
	}
	want := map[string]time.Duration{"a": 2 * time.Minute, "b": 10 * time.Second, "c": -1, "c1": 30 * time.Second, "c2": 0, "c3": -1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Unplaceable by task and call (-want +got):\n%s", diff)
	}

	_, err = Parse("wf.yaml", t.TempDir(), []byte("tasks:\n  - name: x\n    command: c\n    unplaceable_timeout: -1s\n  - name: y\n    command: c\n    unplaceable_timeout: soon\n"))
	wantErr := `wf.yaml:4:26: task "x": unplaceable_timeout: must not be negative, got -1s` + "\n" +
		`wf.yaml:7:26: task "y": unplaceable_timeout: want a duration like "30s" or "1h30m", got "soon"`
	if err == nil || !strings.Contains(err.Error(), wantErr) {
		t.Errorf("Parse of bad unplaceable_timeout: got %v, want %q", err, wantErr)
	}
}
