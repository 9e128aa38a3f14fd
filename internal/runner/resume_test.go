package runner

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"trellis/internal/workflow"
)

func TestDecide(t *testing.T) {
	killed := &RunState{Manager: "m:1", File: "/w/wf.yaml", Digest: "sha256:aa", Session: "run-old"}
	tests := []struct {
		name     string
		prev     *RunState
		digest   string
		noResume bool
		want     Start
	}{
		{"no run before", nil, "sha256:aa", false, Start{Session: "run-new"}},
		{"a state without a session", &RunState{Digest: "sha256:aa"}, "sha256:aa", false, Start{Session: "run-new"}},
		{"a killed run of the same file", killed, "sha256:aa", false, Start{Session: "run-old", Resume: true}},
		{"the file changed", killed, "sha256:bb", false, Start{Session: "run-new", EndOld: "run-old",
			Note: "/w/wf.yaml changed since a run of it was killed (session run-old): that run's unfinished tasks are cancelled, and every task runs again"}},
		{"--no-resume", killed, "sha256:aa", true, Start{Session: "run-new", EndOld: "run-old",
			Note: "not resuming session run-old of a run killed before (--no-resume): its unfinished tasks are cancelled, and every task runs again"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Decide(tc.prev, tc.digest, "run-new", tc.noResume)); diff != "" {
				t.Errorf("Decide mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRunFile: a run's state file is locked while its run lives; released
// (the run was killed), the next run finds the state; finished, it finds
// none. Another file, or another manager, has a state of its own.
func TestRunFile(t *testing.T) {
	dir := t.TempDir()
	const m, file = "127.0.0.1:9000", "/w/wf.yaml"
	rf, prev, err := OpenRun(dir, m, file, "sha256:aa")
	if err != nil || prev != nil {
		t.Fatalf("first OpenRun: %v, %v; want no error and no state", prev, err)
	}
	if err := rf.Save(rf.State("run-1")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := OpenRun(dir, m, file, "sha256:aa"); err == nil || !strings.Contains(err.Error(), "is running /w/wf.yaml against 127.0.0.1:9000") {
		t.Errorf("OpenRun while the first run lives: %v; want an error naming it", err)
	}
	other, prev, err := OpenRun(dir, "127.0.0.1:9001", file, "sha256:aa")
	if err != nil || prev != nil {
		t.Errorf("OpenRun against another manager: %v, %v; want its own empty state", prev, err)
	} else {
		other.Release()
	}
	rf.Release() // as a kill does
	rf, prev, err = OpenRun(dir, m, file, "sha256:aa")
	if err != nil || prev == nil || prev.Session != "run-1" || prev.File != file || prev.Digest != "sha256:aa" {
		t.Fatalf("OpenRun after a kill: %+v, %v; want the state of run-1", prev, err)
	}
	if err := rf.Finish(); err != nil {
		t.Fatal(err)
	}
	rf, prev, err = OpenRun(dir, m, file, "sha256:aa")
	if err != nil || prev != nil {
		t.Errorf("OpenRun after a finished run: %+v, %v; want no state", prev, err)
	}
	rf.Release()
	if matches, _ := filepath.Glob(filepath.Join(dir, "*.json")); len(matches) != 0 {
		t.Errorf("state files left: %v", matches)
	}
}

// TestBuildKeys: every task and call gets a key that a build of the same
// file gives it again: its name, or, for a name used twice (calls without
// names of their own), its place and its name.
func TestBuildKeys(t *testing.T) {
	const file = `tasks:
  - {name: train, command: c}
  - {name: test, command: c, after: train}
libraries:
  - {name: lib, command: serve}
calls:
  - {name: late, library: lib, function: f}
  - {library: lib, function: h}
  - {library: lib, function: h}
  - {library: lib, function: g}
`
	wf, err := workflow.Parse("wf.yaml", t.TempDir(), []byte(file))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	keys := func() []string {
		plan := Build(wf)
		var out []string
		for _, tk := range append(plan.Tasks, plan.Calls...) {
			out = append(out, tk.Key)
		}
		return out
	}
	want := []string{"train", "test", "late", "#3.lib.h", "#4.lib.h", "lib.g"}
	if diff := cmp.Diff(want, keys()); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, keys()); diff != "" {
		t.Errorf("keys of a second build (-want +got):\n%s", diff)
	}
}
