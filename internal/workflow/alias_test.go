package workflow

import (
	"fmt"
	"strings"
	"testing"
	"time"

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
	// 1,000 inputs of two nodes each, 500 aliases in: over the limit.
	if got, want := errString(err), "wf.yaml:1504:3: document is too complex: its aliases stand for over 1000000 nodes"; got != want {
		t.Errorf("Parse error = %q, want %q", got, want)
	}
}

// TestBillionLaughs: nested aliases fail fast, at the alias, without
// expanding anything.
func TestBillionLaughs(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	b.WriteString("tasks:\n- name: t\n  command: c\n  tags: *a9\n")
	start := time.Now()
	_, err := Parse("wf.yaml", "/base", []byte(b.String()))
	// (The anchors' top-level keys are unknown fields, reported too.)
	if got, want := errString(err), "\nwf.yaml:14:9: document is too complex: its aliases stand for over 1000000 nodes"; !strings.HasSuffix(got, want) {
		t.Errorf("Parse error = %q, want it to end with %q", got, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Parse took %s; want it to fail fast", d)
	}
}

// TestLargePlainFile: a plain file of 100,000 tasks parses: only aliases
// count against the limit.
func TestLargePlainFile(t *testing.T) {
	if testing.Short() {
		t.Skip("parses a 100,000-task file")
	}
	var b strings.Builder
	b.WriteString("tasks:\n")
	for i := range 100_000 {
		fmt.Fprintf(&b, "- name: t%d\n  command: echo %d\n", i, i)
	}
	w, err := Parse("wf.yaml", "/base", []byte(b.String()))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(w.Tasks) != 100_000 {
		t.Errorf("got %d tasks, want 100000", len(w.Tasks))
	}
}
