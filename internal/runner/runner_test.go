package runner

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"trellis"
	"trellis/internal/workflow"
)

const buildFile = `files:
  words:    {url: "https://example.org/words.txt", cache: forever}
  tools:    {local: tools.tar.gz, cache: worker}
  toolbox:  {unpack: tools, format: tar.gz}
  greeting: {buffer: "hello\n", cache: task}
  counts:   {temp: true, replicas: 2}
  unpacked: {unpack: packed, format: zip}     # declared before its archive
  packed:   {temp: true}
tasks:
  - name: count
    command: c
    inputs:
      words.txt: {file: words}
      bin: {file: toolbox}
      hi.txt: {file: greeting}
      raw.txt: raw.txt
    outputs:
      counts.txt: {file: counts}
      log.txt: out/log.txt
  - name: pack
    command: c
    inputs: {bin: {file: toolbox}}
    outputs: {p.zip: {file: packed}}
  - name: report
    command: c
    inputs:
      c.txt: {file: counts}
      log.txt: out/log.txt
      dir: {file: unpacked}
      inline.txt: {buffer: x}
  - name: other
    command: c
    inputs: {c.txt: {file: counts}}
    after: pack
`

func TestBuildFiles(t *testing.T) {
	dir := t.TempDir()
	tools := filepath.Join(dir, "tools.tar.gz")
	if err := os.WriteFile(tools, []byte("not really a tarball"), 0o644); err != nil {
		t.Fatal(err)
	}
	wf, err := workflow.Parse("wf.yaml", dir, []byte(buildFile))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	tasks := Build(wf).Tasks
	count, pack, report, other := tasks[0], tasks[1], tasks[2], tasks[3]

	same := []struct {
		name      string
		got, want *trellis.File
	}{
		{"temp: producer's output is the consumer's input", mount(t, report.Inputs, "c.txt"), mount(t, count.Outputs, "counts.txt")},
		{"temp: every consumer shares it", mount(t, other.Inputs, "c.txt"), mount(t, count.Outputs, "counts.txt")},
		{"plain path: producer's output is the consumer's input", mount(t, report.Inputs, "log.txt"), mount(t, count.Outputs, "log.txt")},
		{"declared file: every reader shares it", mount(t, pack.Inputs, "bin"), mount(t, count.Inputs, "bin")},
	}
	for _, tc := range same {
		if tc.got != tc.want {
			t.Errorf("%s: got a different *trellis.File (%s), want the same (%s)", tc.name, tc.got.Name(), tc.want.Name())
		}
	}

	// Cache names show what each file was made from: unpacked files are
	// named after their archive's (random, for a temp) cache name.
	names := []struct {
		name      string
		got, want *trellis.File
	}{
		{"url", mount(t, count.Inputs, "words.txt"), trellis.URL("https://example.org/words.txt")},
		{"buffer", mount(t, count.Inputs, "hi.txt"), trellis.Buffer([]byte("hello\n"))},
		{"inline buffer", mount(t, report.Inputs, "inline.txt"), trellis.Buffer([]byte("x"))},
		{"unpacked local file", mount(t, count.Inputs, "bin"), trellis.Unpack(trellis.LocalFile(tools), "tar.gz")},
		{"unpacked temp file", mount(t, report.Inputs, "dir"), trellis.Unpack(mount(t, pack.Outputs, "p.zip"), "zip")},
	}
	for _, tc := range names {
		if got, want := tc.got.Name(), tc.want.Name(); got != want {
			t.Errorf("%s: Name() = %q, want %q", tc.name, got, want)
		}
	}
	if a, b := mount(t, count.Outputs, "counts.txt").Name(), mount(t, pack.Outputs, "p.zip").Name(); a == b {
		t.Errorf("two temp files share the cache name %q", a)
	}

	paths := []struct {
		name string
		f    *trellis.File
		want string
	}{
		{"plain input", mount(t, count.Inputs, "raw.txt"), filepath.Join(dir, "raw.txt")},
		{"plain output", mount(t, count.Outputs, "log.txt"), filepath.Join(dir, "out/log.txt")},
		{"temp output", mount(t, count.Outputs, "counts.txt"), ""},
	}
	for _, tc := range paths {
		if got := tc.f.Path(); got != tc.want {
			t.Errorf("%s: Path() = %q, want %q", tc.name, got, tc.want)
		}
	}

	want := map[string][]string{"count": nil, "pack": nil, "report": {"count", "pack"}, "other": {"count", "pack"}}
	if diff := cmp.Diff(want, afterNames(tasks)); diff != "" {
		t.Errorf("After mismatch (-want +got):\n%s", diff)
	}
}

func TestBuildDataflowExample(t *testing.T) {
	wf, err := workflow.Load("../../examples/dataflow/dataflow.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	tasks := Build(wf).Tasks
	byName := map[string]*trellis.Task{}
	for _, task := range tasks {
		byName[task.Name] = task
	}
	toolbox := mount(t, byName["map-1"].Inputs, "toolbox")
	for _, task := range tasks {
		if got := mount(t, task.Inputs, "toolbox"); got != toolbox {
			t.Errorf("task %q: toolbox is a different *trellis.File (%s), want the shared one (%s)", task.Name, got.Name(), toolbox.Name())
		}
	}
	flows := []struct {
		from, out, to, in string
	}{
		{"map-1", "counts.txt", "reduce-1", "a.txt"},
		{"map-2", "counts.txt", "reduce-1", "b.txt"},
		{"map-3", "counts.txt", "reduce-2", "a.txt"},
		{"map-4", "counts.txt", "reduce-2", "b.txt"},
		{"reduce-1", "sum.txt", "final", "a.txt"},
		{"reduce-2", "sum.txt", "final", "b.txt"},
	}
	for _, f := range flows {
		if mount(t, byName[f.from].Outputs, f.out) != mount(t, byName[f.to].Inputs, f.in) {
			t.Errorf("%s's %s is not the *trellis.File of %s's %s", f.from, f.out, f.to, f.in)
		}
	}
	want := map[string][]string{
		"map-1": nil, "map-2": nil, "map-3": nil, "map-4": nil,
		"reduce-1": {"map-1", "map-2"}, "reduce-2": {"map-3", "map-4"},
		"final": {"reduce-1", "reduce-2"},
	}
	if diff := cmp.Diff(want, afterNames(tasks)); diff != "" {
		t.Errorf("After mismatch (-want +got):\n%s", diff)
	}
	if got, want := mount(t, byName["final"].Outputs, "result.txt").Path(), filepath.Join(wf.Dir, "out/result.txt"); got != want {
		t.Errorf("result.txt goes to %q, want %q", got, want)
	}
}

func TestCacheLevels(t *testing.T) {
	tests := []struct {
		name string
		want trellis.CacheLevel
	}{
		{"task", trellis.CacheTask},
		{"workflow", trellis.CacheWorkflow},
		{"worker", trellis.CacheWorker},
		{"forever", trellis.CacheForever},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Every level the workflow accepts has a trellis level.
			yaml := "files: {t: {temp: true, cache: " + tc.name + "}}\ntasks:\n- {name: a, command: c, outputs: {o: {file: t}}}\n"
			wf, err := workflow.Parse("wf.yaml", "/base", []byte(yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got, ok := cacheLevels[wf.Files[0].Cache]; !ok || got != tc.want {
				t.Errorf("cacheLevels[%q] = %v, %v; want %v, true", tc.name, got, ok, tc.want)
			}
		})
	}
	if got, want := len(cacheLevels), len(tests); got != want {
		t.Errorf("cacheLevels has %d levels, want %d", got, want)
	}
}

// mount returns the file mounted at path, failing the test if there is
// none.
func mount(t *testing.T, mounts []trellis.Mount, path string) *trellis.File {
	t.Helper()
	for _, m := range mounts {
		if m.Path == path {
			return m.File
		}
	}
	t.Fatalf("no file at %q", path)
	return nil
}

// afterNames maps each task's name to the names of the tasks in its After.
func afterNames(tasks []*trellis.Task) map[string][]string {
	after := map[string][]string{}
	for _, task := range tasks {
		var names []string
		for _, a := range task.After {
			names = append(names, a.Name)
		}
		after[task.Name] = names
	}
	return after
}

func TestBuildLibrariesAndCalls(t *testing.T) {
	const file = `files:
  model: {temp: true}
tasks:
  - {name: train, command: c, outputs: {m.json: {file: model}, log.txt: out/log.txt}}
libraries:
  - name: lib
    command: serve
    inputs: {m.json: {file: model}, log.txt: out/log.txt, code.py: code.py}
    env: {A: b}
    cores: 2
    memory: 1GB
    slots: 3
    mode: fork
    eager: 1
    max_instances: 2
    start_timeout: 5s
calls:
  - {name: late, library: lib, function: f, after: early}
  - {name: early, library: lib, function: g, args: [1, "x"], retries: 0, retry_on_error: true, time_limit: 2s, priority: 4}
  - {library: lib, function: h, args_file: a.json}
`
	dir := t.TempDir()
	wf, err := workflow.Parse("wf.yaml", dir, []byte(file))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	plan := Build(wf)
	train, lib := plan.Tasks[0], plan.Libraries[0]
	if mount(t, lib.Inputs, "m.json") != mount(t, train.Outputs, "m.json") {
		t.Errorf("the library's temp input is not the *trellis.File that train writes")
	}
	if mount(t, lib.Inputs, "log.txt") != mount(t, train.Outputs, "log.txt") {
		t.Errorf("the library's plain input is not the *trellis.File that train writes")
	}
	if got, want := mount(t, lib.Inputs, "code.py").Path(), filepath.Join(dir, "code.py"); got != want {
		t.Errorf("code.py comes from %q, want %q", got, want)
	}
	lib.Inputs = nil
	wantLib := &trellis.Library{Name: "lib", Command: "serve", Env: []string{"A=b"},
		Resources: trellis.Resources{Cores: 2, MemoryMB: 1024}, Slots: 3, Mode: "fork", MaxInstances: 2, Eager: 1, StartTimeout: 5 * time.Second}
	if diff := cmp.Diff(wantLib, lib); diff != "" {
		t.Errorf("library mismatch (-want +got):\n%s", diff)
	}
	late, early, unnamed := plan.Calls[0], plan.Calls[1], plan.Calls[2]
	want := map[string][]string{"late": {"train", "early"}, "early": {"train"}, "lib.h": {"train"}}
	if diff := cmp.Diff(want, afterNames(plan.Calls)); diff != "" {
		t.Errorf("After mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&trellis.Call{Library: "lib", Function: "g", Args: []byte(`[1,"x"]`)}, early.Call); diff != "" {
		t.Errorf("call mismatch (-want +got):\n%s", diff)
	}
	if early.Retries != 0 || !early.RetryOnError || early.TimeLimit != 2*time.Second || early.Priority != 4 {
		t.Errorf("early: retries %d, retry on error %v, time limit %v, priority %d; want 0, true, 2s, 4",
			early.Retries, early.RetryOnError, early.TimeLimit, early.Priority)
	}
	if late.Retries != trellis.DefaultRetries || unnamed.Call.Args != nil {
		t.Errorf("late retries %d, want %d; unnamed args %q, want none until the file is read", late.Retries, trellis.DefaultRetries, unnamed.Call.Args)
	}
}
