package workflow

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// exampleDir holds the example workflow that the docs point to.
const exampleDir = "../../examples/wordcount"

func TestWordcountExample(t *testing.T) {
	w, err := Load(filepath.Join(exampleDir, "wordcount.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var names []string
	after := map[string][]int{}
	for _, task := range w.Tasks {
		names = append(names, task.Name)
		after[task.Name] = task.After
	}
	if diff := cmp.Diff([]string{"split", "count-aa", "count-ab", "count-ac", "count-ad", "merge"}, names); diff != "" {
		t.Fatalf("task names mismatch (-want +got):\n%s", diff)
	}
	wantAfter := map[string][]int{
		"split": nil, "count-aa": {0}, "count-ab": {0}, "count-ac": {0}, "count-ad": {0}, "merge": {1, 2, 3, 4},
	}
	if diff := cmp.Diff(wantAfter, after); diff != "" {
		t.Errorf("dependencies mismatch (-want +got):\n%s", diff)
	}
}

// TestWordcountRuns runs the example's commands the way a worker would,
// one sandbox directory per task, to check that they work with the POSIX
// tools at hand.
func TestWordcountRuns(t *testing.T) {
	for _, tool := range []string{"sh", "split", "tr", "sort", "uniq", "awk", "cat", "touch"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: %v", tool, err)
		}
	}
	dir := t.TempDir()
	for _, f := range []string{"wordcount.yaml", "input.txt"} {
		copyFile(t, filepath.Join(exampleDir, f), filepath.Join(dir, f))
	}
	w, err := Load(filepath.Join(dir, "wordcount.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for i, task := range w.Tasks { // file order is a valid order here
		for _, a := range task.After {
			if a >= i {
				t.Fatalf("task %q waits for a later task", task.Name)
			}
		}
		sandbox := t.TempDir()
		for _, in := range task.Inputs {
			copyFile(t, in.Local, filepath.Join(sandbox, in.Name))
		}
		cmd := exec.Command("sh", "-c", task.Command)
		cmd.Dir = sandbox
		cmd.Env = append(os.Environ(), task.Env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("task %q: %v\n%s", task.Name, err, out)
		}
		for _, out := range task.Outputs {
			copyFile(t, filepath.Join(sandbox, out.Name), out.Local)
		}
	}
	summary, err := os.ReadFile(filepath.Join(dir, "out", "summary.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := "lines: 200\nwords: 2560\ndistinct words: 290\nmost common: the (328 times)\n"
	if diff := cmp.Diff(want, string(summary)); diff != "" {
		t.Errorf("summary.txt mismatch (-want +got):\n%s", diff)
	}
	top, err := os.ReadFile(filepath.Join(dir, "out", "top-words.txt"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(top), "\n"), "\n")
	if diff := cmp.Diff([]string{"328 the", "148 and", "68 a", "68 she", "68 to"}, lines[:min(5, len(lines))]); diff != "" {
		t.Errorf("top-words.txt mismatch (-want +got):\n%s", diff)
	}
	if got := len(lines); got != 20 {
		t.Errorf("top-words.txt has %d lines, want 20", got)
	}
}

// copyFile copies src to dst, creating dst's directory.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
