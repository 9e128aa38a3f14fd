package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trellis"
	"trellis/internal/worker/resources/resourcestest"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A malformed workflow file is refused before anything runs, with file,
// line and column.
func TestRunMalformedWorkflow(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ yaml, want string }{
		"typo":   {"tasks:\n  - name: a\n    comand: true\n", `bad.yaml:3:5: task "a": unknown field "comand" (did you mean "command"?)`},
		"escape": {"tasks:\n  - name: a\n    command: cat x\n    inputs:\n      ../x: data.txt\n", `bad.yaml:5:7: task "a": input name "../x" escapes the sandbox`},
		"cycle":  {"tasks:\n  - name: a\n    command: true\n    after: [b]\n  - name: b\n    command: true\n    after: [a]\n", "cycle: a -> b -> a"},
		"syntax": {"tasks: [\n", "bad.yaml:"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name, "bad.yaml")
			writeFile(t, path, tc.yaml)
			code, out := runTrellis(t, "run", "--quiet", path)
			if code != 1 || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, output:\n%s\nwant exit 1 and %q", code, out, tc.want)
			}
		})
	}
}

// Failures of every kind are reported precisely, dependents are skipped,
// and the rest of the workflow goes on.
func TestRunWorkflowFailures(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "data.txt"), "3\n1\n2\n")
	writeFile(t, filepath.Join(dir, "wf.yaml"), `
name: mixed
tasks:
  - name: good
    command: sort data.txt > sorted.txt
    inputs: {data.txt: data.txt}
    outputs: {sorted.txt: out/sorted.txt}
  - name: uses-good
    command: head -n 1 s.txt > first.txt
    inputs: {s.txt: out/sorted.txt}
    outputs: {first.txt: out/first.txt}
  - name: fails
    command: echo about to fail >&2; exit 3
    outputs: {x.txt: out/x.txt}
  - name: skipped
    command: cat x.txt
    inputs: {x.txt: out/x.txt}
  - name: no-such-command
    command: frobnicate --hard
  - name: missing-input
    command: cat nothere.txt
    inputs: {nothere.txt: does-not-exist.txt}
  - name: too-slow
    command: sleep 30
    time_limit: 500ms
  - name: memory-hog
    command: head -c 400000000 /dev/zero | tail > /dev/null
    memory: 100MB
  - name: escaping-output
    command: ln -s /etc/passwd link.txt
    outputs: {link.txt: out/link.txt}
`)
	code, out := runTrellis(t, "run", "--quiet", "--local-workers", "2", filepath.Join(dir, "wf.yaml"))
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	for _, want := range []string{
		`FAILED  fails (line 12, attempt 1 on local-`, `): failed: exit status 3`, "about to fail",
		`SKIPPED skipped (line 15): it depends on "fails", which did not succeed`,
		`FAILED  no-such-command (line 18`, "command not found",
		`FAILED  missing-input (line 20): input missing: input "nothere.txt": open ` + filepath.Join(dir, "does-not-exist.txt") + `: no such file or directory`,
		`FAILED  too-slow (line 23`, "timed out", "wall time",
		`FAILED  memory-hog (line 26`, "resource exceeded",
		`FAILED  escaping-output (line 29`, "link.txt",
		"workflow mixed FAILED: 9 tasks, 2 succeeded, 6 failed, 1 skipped",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
	for path, want := range map[string]string{"out/sorted.txt": "1\n2\n3\n", "out/first.txt": "1\n"} {
		got, err := os.ReadFile(filepath.Join(dir, path))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "out/link.txt")); err == nil {
		t.Errorf("out/link.txt exists: an output symlink was followed")
	}
}

// The example workflow runs against a cluster of real processes, too.
func TestRunWorkflowOnCluster(t *testing.T) {
	c := newCluster(t)
	c.worker("w1", nil, "--cores", "1")
	c.worker("w2", nil, "--cores", "1")
	cl := c.client()
	c.waitWorkers(cl, 2)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "wf.yaml"), `
tasks:
  - name: make
    command: seq 1 1000 > n.txt
    outputs: {n.txt: out/n.txt}
  - name: sum
    command: awk '{ s += $1 } END { print s }' n.txt > sum.txt
    inputs: {n.txt: out/n.txt}
    outputs: {sum.txt: out/sum.txt}
`)
	code, out := runTrellis(t, "run", "--quiet", "--manager", c.addr, "--secret-file", c.secretFile, filepath.Join(dir, "wf.yaml"))
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "out/sum.txt")); string(got) != "500500\n" {
		t.Errorf("sum.txt = %q, want 500500", got)
	}
	code, out = runTrellis(t, "status", c.addr, "--secret-file", c.secretFile)
	if code != 0 || !strings.Contains(out, "w1") || !strings.Contains(out, "w2") || !strings.Contains(out, "2 finished (2 succeeded, 0 failed)") {
		t.Errorf("status: exit %d:\n%s", code, out)
	}
}

// A worker finds GPUs through nvidia-smi; GPU tasks get distinct devices in
// CUDA_VISIBLE_DEVICES, and other tasks see none.
func TestGPUAssignment(t *testing.T) {
	c := newCluster(t)
	fake := resourcestest.FakeNvidiaSMI(t, 2)
	w := c.worker("gpu", []string{"PATH=" + fake + ":" + os.Getenv("PATH")}, "--cores", "4")
	cl := c.client()
	c.waitWorkers(cl, 1)
	if !strings.Contains(w.Output(), "2 gpus") {
		t.Fatalf("worker did not detect the fake GPUs:\n%s", w.Output())
	}
	var tasks []*trellis.Task
	for range 2 {
		tk := trellis.NewTask(`echo "[$CUDA_VISIBLE_DEVICES]"; sleep 0.5`)
		tk.Resources.GPUs = 1
		tasks = append(tasks, tk)
	}
	tasks = append(tasks, trellis.NewTask(`echo "[$CUDA_VISIBLE_DEVICES]"`))
	hs, err := cl.Submit(context.Background(), tasks...)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, h := range hs[:2] {
		r := waitResult(t, h, 30*time.Second)
		seen[strings.TrimSpace(string(r.Stdout))] = true
	}
	if !seen["[0]"] || !seen["[1]"] {
		t.Errorf("GPU tasks saw %v, want [0] and [1]", seen)
	}
	if r := waitResult(t, hs[2], 30*time.Second); string(r.Stdout) != "[]\n" {
		t.Errorf("CPU task saw CUDA_VISIBLE_DEVICES %q, want empty", r.Stdout)
	}
	// A task asking for more GPUs than any worker has waits; cancel ends it.
	big := trellis.NewTask("true")
	big.Resources.GPUs = 3
	hb, err := cl.Submit(context.Background(), big)
	if err != nil {
		t.Fatal(err)
	}
	if err := hb[0].Cancel(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, hb[0], 10*time.Second); r.Kind != trellis.Cancelled {
		t.Errorf("cancelled task ended %v, want cancelled", r.Kind)
	}
}
