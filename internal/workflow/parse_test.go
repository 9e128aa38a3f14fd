package workflow

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const goodFile = `version: 1
name: demo
defaults:
  cores: 1
  memory: 256MB
  retries: 5
  env: {LC_ALL: C, MODE: default}
tasks:
  - name: split
    command: split -n l/2 input.txt part_
    inputs:
      input.txt: data/input.txt
      notes.txt: {buffer: "inline bytes\n"}
      bin: {buffer: !!binary aGVsbG8=}
      abs.txt: {local: /etc/hosts}
    outputs:
      part_ab: out/part_ab
      part_aa: out/part_aa
  - name: count
    command: wc -w part_aa part_ab > counts.txt
    inputs:
      part_aa: out/part_aa
      ./sub//part_ab: out/part_ab
    outputs:
      counts.txt: out/counts.txt
    env: {MODE: fast, N: 4}
    cores: 0.5
    memory: 1.5GB
    disk: 1GB
    gpus: 1
    retries: 0
    retry_on_error: true
    time_limit: 1m30s
    priority: -2
    category: count
    tags: [a, 2024]
  - name: report
    command: cat counts.txt
    inputs:
      counts.txt: out/counts.txt
    after: [split, count]
  - name: other
    command: "true"
    after: split
`

func TestParseGood(t *testing.T) {
	dir := t.TempDir()
	got, err := Parse("demo.yaml", dir, []byte(goodFile))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	p := func(rel string) string { return filepath.Join(dir, rel) }
	want := &Workflow{
		Name: "demo",
		Dir:  dir,
		Tasks: []Task{
			{
				Name:    "split",
				Line:    9,
				Command: "split -n l/2 input.txt part_",
				Inputs: []Input{
					{Name: "abs.txt", Local: "/etc/hosts", Producer: -1},
					{Name: "bin", Buffer: []byte("hello"), Producer: -1},
					{Name: "input.txt", Local: p("data/input.txt"), Producer: -1},
					{Name: "notes.txt", Buffer: []byte("inline bytes\n"), Producer: -1},
				},
				Outputs: []Output{
					{Name: "part_aa", Local: p("out/part_aa")},
					{Name: "part_ab", Local: p("out/part_ab")},
				},
				Env:      []string{"LC_ALL=C", "MODE=default"},
				Cores:    1,
				MemoryMB: 256,
				Retries:  5,
			},
			{
				Name:    "count",
				Line:    19,
				Command: "wc -w part_aa part_ab > counts.txt",
				Inputs: []Input{
					{Name: "part_aa", Local: p("out/part_aa"), Producer: 0},
					{Name: "sub/part_ab", Local: p("out/part_ab"), Producer: 0},
				},
				Outputs:      []Output{{Name: "counts.txt", Local: p("out/counts.txt")}},
				Env:          []string{"LC_ALL=C", "MODE=fast", "N=4"},
				Cores:        0.5,
				MemoryMB:     1536,
				DiskMB:       1024,
				GPUs:         1,
				Retries:      0,
				RetryOnError: true,
				TimeLimit:    90 * time.Second,
				Priority:     -2,
				Category:     "count",
				Tags:         []string{"a", "2024"},
				After:        []int{0},
			},
			{
				Name:     "report",
				Line:     37,
				Command:  "cat counts.txt",
				Inputs:   []Input{{Name: "counts.txt", Local: p("out/counts.txt"), Producer: 1}},
				Env:      []string{"LC_ALL=C", "MODE=default"},
				Cores:    1,
				MemoryMB: 256,
				Retries:  5,
				After:    []int{0, 1},
			},
			{
				Name:     "other",
				Line:     42,
				Command:  "true",
				Env:      []string{"LC_ALL=C", "MODE=default"},
				Cores:    1,
				MemoryMB: 256,
				Retries:  5,
				After:    []int{0},
			},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Parse mismatch (-want +got):\n%s", diff)
	}
}

func TestDefaults(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want Task
	}{
		{
			name: "nothing set",
			yaml: "tasks:\n- {name: t, command: c}\n",
			want: Task{Name: "t", Line: 2, Command: "c", Retries: DefaultRetries},
		},
		{
			name: "defaults apply",
			yaml: "defaults: {cores: 2, memory: 1GB, disk: 512, gpus: 1, retries: 1, retry_on_error: true, time_limit: 5m, priority: 3, category: cat, tags: [x], env: {A: b}}\n" +
				"tasks:\n- {name: t, command: c}\n",
			want: Task{Name: "t", Line: 3, Command: "c", Cores: 2, MemoryMB: 1024, DiskMB: 512, GPUs: 1, Retries: 1,
				RetryOnError: true, TimeLimit: 5 * time.Minute, Priority: 3, Category: "cat", Tags: []string{"x"}, Env: []string{"A=b"}},
		},
		{
			name: "task overrides, zero values included",
			yaml: "defaults: {cores: 2, retries: 1, retry_on_error: true, tags: [x], category: cat}\n" +
				"tasks:\n- {name: t, command: c, cores: 0, retries: 0, retry_on_error: false, tags: [], category: other}\n",
			want: Task{Name: "t", Line: 3, Command: "c", Category: "other"},
		},
		{
			name: "env merges key by key",
			yaml: "defaults: {env: {A: '1', B: '2'}}\n" +
				"tasks:\n- {name: t, command: c, env: {B: three, C: ''}}\n",
			want: Task{Name: "t", Line: 3, Command: "c", Retries: DefaultRetries, Env: []string{"A=1", "B=three", "C="}},
		},
		{
			name: "defaults after tasks",
			yaml: "tasks:\n- {name: t, command: c}\ndefaults: {priority: 7}\n",
			want: Task{Name: "t", Line: 2, Command: "c", Retries: DefaultRetries, Priority: 7},
		},
		{
			name: "empty fields are empty",
			yaml: "defaults: {tags: [x], env: {A: b}}\n" +
				"tasks:\n- {name: t, command: c, inputs: , outputs: , env: , tags: , after: }\n",
			want: Task{Name: "t", Line: 3, Command: "c", Retries: DefaultRetries, Env: []string{"A=b"}},
		},
		{
			name: "empty defaults",
			yaml: "defaults:\ntasks:\n- {name: t, command: c}\n",
			want: Task{Name: "t", Line: 3, Command: "c", Retries: DefaultRetries},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := Parse("wf.yaml", t.TempDir(), []byte(tc.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff([]Task{tc.want}, w.Tasks); diff != "" {
				t.Errorf("tasks mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSizes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int64
	}{
		{"plain integer is MB", "512", 512},
		{"zero", "0", 0},
		{"MB", "512MB", 512},
		{"GB is binary", "2GB", 2048},
		{"fraction of GB", "1.5GB", 1536},
		{"KB rounds up", "1KB", 1},
		{"KB exact", "2048KB", 2},
		{"TB", "1TB", 1 << 20},
		{"lower case with a blank", "3 gb", 3072},
		{"leading dot", ".5GB", 512},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := Parse("wf.yaml", t.TempDir(), []byte("tasks:\n- {name: t, command: c, memory: "+tc.in+"}\n"))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := w.Tasks[0].MemoryMB; got != tc.want {
				t.Errorf("memory %s = %d MB, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestPaths(t *testing.T) {
	const file = "tasks:\n- name: t\n  command: c\n  inputs: {a: in/a.txt, b: ../up.txt, c: /abs/c.txt, d: './x/../d.txt'}\n  outputs: {o: out/o.txt}\n"
	tests := []struct {
		name string
		dir  string // relative to a temporary directory, or absolute when it starts with /
		want []Input
	}{
		{
			name: "absolute dir",
			dir:  "/base/wf",
			want: []Input{
				{Name: "a", Local: "/base/wf/in/a.txt", Producer: -1},
				{Name: "b", Local: "/base/up.txt", Producer: -1},
				{Name: "c", Local: "/abs/c.txt", Producer: -1},
				{Name: "d", Local: "/base/wf/d.txt", Producer: -1},
			},
		},
		{
			name: "unclean dir",
			dir:  "/base//wf/./sub/..",
			want: []Input{
				{Name: "a", Local: "/base/wf/in/a.txt", Producer: -1},
				{Name: "b", Local: "/base/up.txt", Producer: -1},
				{Name: "c", Local: "/abs/c.txt", Producer: -1},
				{Name: "d", Local: "/base/wf/d.txt", Producer: -1},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := Parse("wf.yaml", tc.dir, []byte(file))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tc.want, w.Tasks[0].Inputs); diff != "" {
				t.Errorf("inputs mismatch (-want +got):\n%s", diff)
			}
			if got, want := w.Dir, "/base/wf"; got != want {
				t.Errorf("Dir = %q, want %q", got, want)
			}
			if got, want := w.Tasks[0].Outputs[0].Local, "/base/wf/out/o.txt"; got != want {
				t.Errorf("output Local = %q, want %q", got, want)
			}
		})
	}

	t.Run("relative dir is made absolute", func(t *testing.T) {
		cwd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		w, err := Parse("wf.yaml", "sub", []byte(file))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if got, want := w.Tasks[0].Inputs[0].Local, filepath.Join(cwd, "sub", "in/a.txt"); got != want {
			t.Errorf("Local = %q, want %q", got, want)
		}
	})
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pipeline.v2.yaml")
	if err := os.WriteFile(path, []byte("tasks:\n- {name: t, command: c, inputs: {x: data/x}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &Workflow{
		Name: "pipeline.v2",
		Path: path,
		Dir:  dir,
		Tasks: []Task{{
			Name: "t", Line: 2, Command: "c", Retries: DefaultRetries,
			Inputs: []Input{{Name: "x", Local: filepath.Join(dir, "data/x"), Producer: -1}},
		}},
	}
	if diff := cmp.Diff(want, w); diff != "" {
		t.Errorf("Load mismatch (-want +got):\n%s", diff)
	}

	t.Run("missing file", func(t *testing.T) {
		if _, err := Load(filepath.Join(dir, "nope.yaml")); !os.IsNotExist(err) {
			t.Errorf("Load of a missing file: got %v, want a not-exist error", err)
		}
	})
	t.Run("errors name the file as given", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(bad, []byte("tasks: []\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(bad)
		if got, want := errString(err), bad+":1:8: tasks: want at least one task"; got != want {
			t.Errorf("Load error = %q, want %q", got, want)
		}
	})
}

func TestDependents(t *testing.T) {
	const file = `tasks:
- {name: a, command: c, outputs: {x: x}}
- {name: b, command: c, inputs: {x: x}, outputs: {dir: d}}
- {name: c, command: c, inputs: {f: d/f.txt}}
- {name: d, command: c, after: [a, b]}
- {name: e, command: c}
`
	w, err := Parse("wf.yaml", t.TempDir(), []byte(file))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	tests := []struct {
		name string
		task int
		want []int
	}{
		{"file and after", 0, []int{1, 3}},
		{"file inside an output directory", 1, []int{2, 3}},
		{"leaf", 2, nil},
		{"independent", 4, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, w.Dependents(tc.task)); diff != "" {
				t.Errorf("Dependents(%d) mismatch (-want +got):\n%s", tc.task, diff)
			}
		})
	}
}

// errString returns err's text, or "" for nil.
func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
