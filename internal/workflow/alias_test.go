package workflow

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAliases(t *testing.T) {
	const file = `tasks:
- name: a
  command: &cmd echo hi
  tags: &tags [x, y]
  env: &env {A: b}
- name: b
  command: *cmd
  tags: *tags
  env: *env
`
	w, err := Parse("wf.yaml", "/base", []byte(file))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := []Task{
		{Name: "a", Line: 2, Command: "echo hi", Tags: []string{"x", "y"}, Env: []string{"A=b"}, Retries: DefaultRetries},
		{Name: "b", Line: 6, Command: "echo hi", Tags: []string{"x", "y"}, Env: []string{"A=b"}, Retries: DefaultRetries},
	}
	if diff := cmp.Diff(want, w.Tasks); diff != "" {
		t.Errorf("tasks mismatch (-want +got):\n%s", diff)
	}
}

func TestTooComplex(t *testing.T) {
	var b strings.Builder
	b.WriteString("tasks:\n- &t\n  name: t\n  command: c\n  inputs: &in\n")
	for i := range 1000 {
		fmt.Fprintf(&b, "    f%d: x\n", i)
	}
	for range 2000 {
		b.WriteString("- *t\n")
	}
	_, err := Parse("wf.yaml", "/base", []byte(b.String()))
	if got, want := errString(err), "wf.yaml: document is too complex: too many nodes after expanding aliases"; got != want {
		t.Errorf("Parse error = %q, want %q", got, want)
	}
}
