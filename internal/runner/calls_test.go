package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"trellis"
	"trellis/internal/proto"
	"trellis/internal/workflow"
	"trellis/local"
	"trellis/sdk/go/library"
)

// libraryEnv makes the test binary serve testLibrary instead of running
// the tests: the workflows below start it as a Go library (go-plugin
// style).
const libraryEnv = "TRELLIS_RUNNER_TEST_LIBRARY"

func TestMain(m *testing.M) {
	if os.Getenv(libraryEnv) == "1" {
		library.Main(testLibrary()) // does not return
	}
	os.Exit(m.Run())
}

// testLibrary is the Go library of the tests. Its set-up reads seed.txt,
// which a task of the test workflow writes.
func testLibrary() *library.Library {
	lib := library.New("golib")
	seed := 0
	lib.Setup(func(context.Context) error {
		b, err := os.ReadFile("seed.txt")
		if err != nil {
			return err
		}
		seed, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	lib.Register("add", library.JSON(func(_ context.Context, a []int) (int, error) {
		sum := 0
		for _, x := range a {
			sum += x
		}
		return sum, nil
	}))
	lib.Register("seeded", library.JSON(func(_ context.Context, n int) (int, error) { return seed + n, nil }))
	lib.Register("fail", library.JSON(func(_ context.Context, what string) (int, error) {
		return 0, errors.New("cannot " + what)
	}))
	return lib
}

func TestMaxArgsBytes(t *testing.T) {
	if workflow.MaxArgsBytes != proto.MaxArgsBytes {
		t.Errorf("workflow.MaxArgsBytes = %d, want proto.MaxArgsBytes = %d", workflow.MaxArgsBytes, proto.MaxArgsBytes)
	}
}

// TestLargeArgsFile: an args file larger than the manager's messages
// reaches the library whole (as a file, through the data layer).
func TestLargeArgsFile(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "seed.txt"), "0")
	ones := "[" + strings.Repeat("1,", 700_000) + "1]" // 1.4 MB
	writeTestFile(t, filepath.Join(dir, "ones.json"), ones)
	wf := loadTestWorkflow(t, dir, fmt.Sprintf(`name: big
libraries:
  - name: golib
    command: exec "$TEST_BINARY"
    env: {TRELLIS_RUNNER_TEST_LIBRARY: "1", TEST_BINARY: %q}
    inputs: {seed.txt: seed.txt}
calls:
  - {name: count, library: golib, function: add, args_file: ones.json, output: out/count.json}
`, os.Args[0]))
	sum, out := runTestWorkflow(t, wf)
	if !sum.OK() {
		t.Fatalf("the workflow failed:\n%s", out)
	}
	checkOutputs(t, dir, map[string]string{"out/count.json": "700001"})
}

// goFile is a workflow with a Go library (the test binary), whose set-up
// reads a temp file that a task writes, and calls that succeed, fail, or
// are skipped; an eager library whose input's task fails; and a library
// whose input is missing.
const goFile = `name: golib
files:
  seed: {temp: true}
  never: {temp: true}
  lost-lib: {local: lost/lib.so}
tasks:
  - name: make-seed
    command: echo 40 > seed.txt
    outputs: {seed.txt: {file: seed}}
  - name: broken
    command: echo no luck >&2; exit 2
    outputs: {x: {file: never}}
libraries:
  - name: golib
    command: exec "$TEST_BINARY"
    env: {TRELLIS_RUNNER_TEST_LIBRARY: "1", TEST_BINARY: %q}
    inputs: {seed.txt: {file: seed}}
    slots: 2
    max_instances: 1
    start_timeout: 30s
  - name: orphan                     # started at once, but its input never comes
    command: exec "$TEST_BINARY"
    env: {TRELLIS_RUNNER_TEST_LIBRARY: "1", TEST_BINARY: %q}
    inputs: {seed.txt: {file: never}}
    eager: 1
  - name: lost                       # cannot be installed: its input is missing
    command: exec "$TEST_BINARY"
    inputs: {lib.so: {file: lost-lib}}
calls:
  - name: sum
    library: golib
    function: add
    args: [1, 2]
    output: out/sum.json
  - name: seeded
    library: golib
    function: seeded
    args: 2
    output: out/seeded.json
  - name: after-sum
    library: golib
    function: add
    args_file: args.json
    after: [sum, seeded]
    output: out/after.json
  - library: golib
    function: add
    args: [1, 1]
    output: out/unnamed.json
  - name: boom
    library: golib
    function: fail
    args: fly
  - name: after-boom
    library: golib
    function: add
    after: boom
  - name: after-broken
    library: golib
    function: add
    after: broken
  - name: no-args
    library: golib
    function: add
    args_file: nope.json
  - name: after-no-args
    library: golib
    function: add
    after: no-args
  - name: orphaned
    library: orphan
    function: add
  - name: lost-call
    library: lost
    function: add
  - name: after-lost
    library: golib
    function: add
    after: lost-call
`

func TestRunGoLibrary(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "args.json"), "[5,6]")
	wf := loadTestWorkflow(t, dir, fmt.Sprintf(goFile, os.Args[0], os.Args[0]))
	sum, out := runTestWorkflow(t, wf)
	checkOutputs(t, dir, map[string]string{
		"out/sum.json": "3", "out/seeded.json": "42", "out/after.json": "11", "out/unnamed.json": "2",
	})
	at := lines(wf)
	for _, want := range []string{
		at("FAILED  broken (line %d, attempt 1 on local-"),
		at("FAILED  boom (line %d, attempt 1 on local-"), "): failed: cannot fly",
		at(`SKIPPED after-boom (line %d): it depends on "boom", which did not succeed`),
		at(`SKIPPED after-broken (line %d): it depends on "broken", which did not succeed`),
		at("FAILED  no-args (line %d): input missing: args_file: stat ") + filepath.Join(dir, "nope.json") + ": no such file or directory",
		at(`SKIPPED after-no-args (line %d): it depends on "no-args", which did not succeed`),
		at(`SKIPPED orphaned (line %d): it depends on "broken", which did not succeed`),
		at(`FAILED  lost-call (line %d): input missing: library "lost" was not installed: input "lib.so": stat `) +
			filepath.Join(dir, "lost/lib.so") + ": no such file or directory",
		at(`SKIPPED after-lost (line %d): it depends on "lost-call", which did not succeed`),
		"workflow golib FAILED: 2 tasks, 12 calls, 5 succeeded, 4 failed, 5 skipped, in ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("summary:\n%s", out)
	}
	if sum.OK() || sum.Tasks != 2 || sum.Calls != 12 {
		t.Errorf("summary: OK %v, %d tasks, %d calls; want not OK, 2 tasks, 12 calls", sum.OK(), sum.Tasks, sum.Calls)
	}
}

// pyFile is a workflow with a Python library that reads a temp file a
// task writes; %s are the paths of the SDK and the library.
const pyFile = `name: pylib
files:
  words: {temp: true}
tasks:
  - name: words
    command: printf 'the quick brown fox jumps over the lazy dog\n' > words.txt
    outputs: {words.txt: {file: words}}
libraries:
  - name: wordlib
    command: python3 wordlib.py
    inputs:
      trellis_library.py: %q
      wordlib.py: %q
      words.txt: {file: words}
    slots: 4
calls:
  - name: count
    library: wordlib
    function: count
    args: {note: "<&>", list: [1, 2.5, true, null]}
    output: out/count.json
  - name: longest
    library: wordlib
    function: longest
    args: 3
    output: out/longest.json
  - name: find
    library: wordlib
    function: find
    args: zebra
    output: out/find.json
`

func TestRunPythonLibrary(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skipf("python3 not found: %v", err)
	}
	dir := t.TempDir()
	sdk, _ := filepath.Abs("../../sdk/python/trellis_library.py")
	lib, _ := filepath.Abs("testdata/wordlib.py")
	wf := loadTestWorkflow(t, dir, fmt.Sprintf(pyFile, sdk, lib))
	_, out := runTestWorkflow(t, wf)
	checkOutputs(t, dir, map[string]string{
		"out/count.json":   `{"words":9,"of":{"note":"<&>","list":[1,2.5,true,null]}}`,
		"out/longest.json": `["brown","jumps","quick"]`,
	})
	if _, err := os.Stat(filepath.Join(dir, "out/find.json")); err == nil {
		t.Errorf("out/find.json exists: the output of a failed call was written")
	}
	at := lines(wf)
	for _, want := range []string{
		at("FAILED  find (line %d, attempt 1 on local-"), `): failed: KeyError: 'no such word: zebra'`,
		"        traceback:\n          Traceback (most recent call last):\n",
		`in find` + "\n", `    return _check(word, state)`, `raise KeyError("no such word: %s" % word)`,
		"workflow pylib FAILED: 1 tasks, 3 calls, 3 succeeded, 1 failed, 0 skipped, in ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("summary:\n%s", out)
	}
}

// TestRunPythonExample runs examples/python with its results redirected to
// a temporary directory, and checks them against the example's expected
// results.
func TestRunPythonExample(t *testing.T) {
	for _, tool := range []string{"python3", "gzip", "awk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: %v", tool, err)
		}
	}
	const example = "../../examples/python"
	wf, err := workflow.Load(filepath.Join(example, "features.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	dir := t.TempDir()
	want := map[string]string{}
	for i, c := range wf.Calls {
		rel, err := filepath.Rel(wf.Dir, c.Output)
		if err != nil || c.Output == "" {
			t.Fatalf("call %s: output %q is not under the example", c.Name, c.Output)
		}
		wf.Calls[i].Output = filepath.Join(dir, rel)
		b, err := os.ReadFile(filepath.Join(example, "expected", filepath.Base(rel)))
		if err != nil {
			t.Fatal(err)
		}
		want[rel] = string(b)
	}
	sum, out := runTestWorkflow(t, wf)
	if !sum.OK() {
		t.Fatalf("the example failed:\n%s", out)
	}
	checkOutputs(t, dir, want)
}

// lines returns a function that fills in the line of the task or call
// whose name follows the first blank in a summary line.
func lines(wf *workflow.Workflow) func(format string) string {
	byName := map[string]int{}
	for _, t := range wf.Tasks {
		byName[t.Name] = t.Line
	}
	for _, c := range wf.Calls {
		byName[c.Name] = c.Line
	}
	return func(format string) string {
		name := strings.Fields(format)[1]
		return fmt.Sprintf(format, byName[name])
	}
}

// loadTestWorkflow writes a workflow file into dir and loads it.
func loadTestWorkflow(t *testing.T, dir, yaml string) *workflow.Workflow {
	t.Helper()
	path := filepath.Join(dir, "wf.yaml")
	writeTestFile(t, path, yaml)
	wf, err := workflow.Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return wf
}

// runTestWorkflow runs wf on an embedded cluster of two workers and
// returns its summary, as Summary and as WriteSummary prints it.
func runTestWorkflow(t *testing.T, wf *workflow.Workflow) (*Summary, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	p := NewProgress(&progress, false)
	c, err := local.Start(ctx, local.Config{Workers: 2, Cores: 2, Workdir: t.TempDir()}, trellis.WithEvents(p.Event))
	if err != nil {
		t.Fatalf("local.Start: %v", err)
	}
	defer c.Close()
	sum, err := Run(ctx, c, wf, p)
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	var out bytes.Buffer
	WriteSummary(&out, wf, sum)
	return sum, out.String()
}

// checkOutputs compares files under dir, byte for byte.
func checkOutputs(t *testing.T, dir string, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for rel := range want {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		got[rel] = string(b)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outputs mismatch (-want +got):\n%s", diff)
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
