package workflow

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestEffects: "deterministic" and "effects" are set by a task, by the
// workflow's defaults, or by a call; unset, a task has no effects ("")
// and is not deterministic. A misspelt effect is an error that names the
// choices.
func TestEffects(t *testing.T) {
	src := `
defaults:
  effects: idempotent
libraries:
  - name: lib
    command: serve
calls:
  - {name: c1, library: lib, function: f, effects: at-most-once, deterministic: true}
  - {name: c2, library: lib, function: f}
tasks:
  - {name: a, command: "true"}
  - {name: b, command: "true", effects: at-most-once}
  - {name: c, command: "true", effects: none, deterministic: true}
`
	wf, err := Parse("wf.yaml", t.TempDir(), []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	type ann struct {
		Effects       string
		Deterministic bool
	}
	got := map[string]ann{}
	for _, task := range wf.Tasks {
		got[task.Name] = ann{task.Effects, task.Deterministic}
	}
	for _, c := range wf.Calls {
		got[c.Name] = ann{c.Effects, c.Deterministic}
	}
	want := map[string]ann{"a": {"idempotent", false}, "b": {"at-most-once", false}, "c": {"none", true},
		"c1": {"at-most-once", true}, "c2": {"", false}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("annotations mismatch (-want +got):\n%s", diff)
	}
	_, err = Parse("wf.yaml", t.TempDir(), []byte("tasks:\n  - {name: a, command: \"true\", effects: at-most-one}\n"))
	if err == nil || !strings.Contains(err.Error(), "at-most-once") {
		t.Errorf("a misspelt effect: error %v; want one naming at-most-once", err)
	}
}

// TestKeep: "keep" is set by a task or by the workflow's defaults; a bad
// value is an error that names the choices.
func TestKeep(t *testing.T) {
	src := `
defaults:
  keep: checkpoint
tasks:
  - {name: a, command: "true"}
  - {name: b, command: "true", keep: lineage}
  - {name: c, command: "true", keep: replicate 3}
  - {name: d, command: "true", keep: checkpoint sync}
`
	wf, err := Parse("wf.yaml", t.TempDir(), []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	got := map[string]string{}
	for _, task := range wf.Tasks {
		got[task.Name] = task.Keep
	}
	want := map[string]string{"a": "checkpoint async", "b": "lineage", "c": "replicate 3", "d": "checkpoint sync"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("keep mismatch (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"replicate 1", "checkpoint later", "lineages"} {
		_, err = Parse("wf.yaml", t.TempDir(), []byte("tasks:\n  - {name: a, command: \"true\", keep: "+bad+"}\n"))
		if err == nil || !strings.Contains(err.Error(), "keep") {
			t.Errorf("keep: %s: error %v; want one about keep", bad, err)
		}
	}
}
