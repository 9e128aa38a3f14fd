package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trellis"
)

// newClusterWith is newCluster with extra manager flags.
func newClusterWith(t *testing.T, flags ...string) *cluster {
	t.Helper()
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret-"+t.Name()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"manager", "--listen", "127.0.0.1:0", "--secret-file", secret, "--store", filepath.Join(dir, "store")}, flags...)
	m := start(t, nil, args...)
	var addr string
	waitFor(t, 20*time.Second, "the manager to listen", func() bool {
		sc := bufio.NewScanner(strings.NewReader(m.Output()))
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "trellis manager listening on "); ok {
				addr = a
				return true
			}
		}
		return false
	})
	return &cluster{t: t, addr: addr, secretFile: secret, manager: m, store: filepath.Join(dir, "store")}
}

// TestImpossibleTask: tasks asking for 64 cores of a cluster of 1-core
// workers. `trellis run` says why each waits at once (the two of the first
// workflow are told in one event of the manager's); with the manager's
// --unplaceable-timeout it fails with the reason while the rest of the
// workflow succeeds; a workflow that sets no limit (0s) waits, `trellis
// status` shows the reason, and a 64-core worker that joins runs it.
func TestImpossibleTask(t *testing.T) {
	c := newClusterWith(t, "--unplaceable-timeout", "2s")
	c.worker("w1", nil, "--cores", "1")
	c.worker("w2", nil, "--cores", "1")
	c.waitWorkers(c.client(), 2)
	const why = "no connected worker has 64 cores (largest: 1)"

	t.Run("fails after the manager's limit", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "wf.yaml"), `
name: impossible
tasks:
  - name: big
    command: echo big > big.txt
    cores: 64
    outputs: {big.txt: out/big.txt}
  - name: big-too
    command: "true"
    cores: 64
  - name: after-big
    command: cat big.txt
    inputs: {big.txt: out/big.txt}
  - name: small-a
    command: echo a > a.txt
    outputs: {a.txt: out/a.txt}
  - name: small-b
    command: echo b > b.txt
    outputs: {b.txt: out/b.txt}
`)
		run := start(t, nil, "run", "--quiet", "--manager", c.addr, "--secret-file", c.secretFile, filepath.Join(dir, "wf.yaml"))
		waitFor(t, 10*time.Second, "the reasons big and big-too wait", func() bool {
			out := run.Output()
			return strings.Contains(out, "waiting big: "+why+"\n") && strings.Contains(out, "waiting big-too: "+why+"\n")
		})
		if code := run.wait(t, time.Minute); code != 1 {
			t.Fatalf("trellis run exited %d, want 1; output:\n%s", code, run.Output())
		}
		out := run.Output()
		t.Logf("trellis run output:\n%s", out)
		for _, want := range []string{
			"FAILED  big (line 4): resource exceeded: waited 2s (its unplaceable timeout) for a worker that could run it: " + why + "; connect a worker that has what it asks for, or ask for less\n",
			"FAILED  big-too (line 8): resource exceeded: waited 2s (its unplaceable timeout) for a worker that could run it: " + why + "; connect a worker that has what it asks for, or ask for less\n",
			`SKIPPED after-big (line 11): it depends on "big", which did not succeed` + "\n",
			"workflow impossible FAILED: 5 tasks, 2 succeeded, 2 failed, 1 skipped",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("trellis run output:\n%s\nlacks %q", out, want)
			}
		}
		if i, j := strings.Index(out, "waiting big: "), strings.Index(out, "failed  big: "); j < i {
			t.Errorf("trellis run output:\n%s\nshows big failed (at %d) before why it waits (at %d)", out, j, i)
		}
		for name, want := range map[string]string{"a.txt": "a\n", "b.txt": "b\n"} {
			if got, err := os.ReadFile(filepath.Join(dir, "out", name)); err != nil || string(got) != want {
				t.Errorf("out/%s = %q, %v; want %q", name, got, err, want)
			}
		}
	})

	t.Run("no limit: status shows why, a worker that fits runs it", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "wf.yaml"), `
name: patient
defaults:
  unplaceable_timeout: 0s
tasks:
  - name: big
    command: echo big > big.txt
    cores: 64
    outputs: {big.txt: out/big.txt}
`)
		run := start(t, nil, "run", "--quiet", "--manager", c.addr, "--secret-file", c.secretFile, filepath.Join(dir, "wf.yaml"))
		waitFor(t, 10*time.Second, "the reason big waits", func() bool { return strings.Contains(run.Output(), "waiting big: "+why+"\n") })
		// Past the manager's 2s, the workflow's 0s waits for ever.
		cl := c.client()
		waitFor(t, 20*time.Second, "big to have waited 3s", func() bool {
			s, err := cl.Status(context.Background())
			return err == nil && len(s.UnplaceableTasks) == 1 && s.SnapshotTime.Sub(s.UnplaceableTasks[0].Since) > 3*time.Second
		})
		code, text := runTrellis(t, "status", "--secret-file", c.secretFile, c.addr)
		if code != 0 || !strings.Contains(text, "1 task waits that no connected worker could run:") || !strings.Contains(text, why) {
			t.Errorf("trellis status exited %d:\n%s\nwant the task no worker could run, and %q", code, text, why)
		}
		code, js := runTrellis(t, "status", "--json", "--secret-file", c.secretFile, c.addr)
		var s trellis.Status
		if err := json.Unmarshal([]byte(js), &s); code != 0 || err != nil {
			t.Fatalf("trellis status --json exited %d, %v:\n%s", code, err, js)
		}
		if s.Unplaceable != 1 || len(s.UnplaceableTasks) != 1 || s.UnplaceableTasks[0].Name != "big" || s.UnplaceableTasks[0].Why != why {
			t.Errorf("status --json: unplaceable %d, %+v; want big alone, with %q", s.Unplaceable, s.UnplaceableTasks, why)
		}
		c.worker("w64", nil, "--cores", "64")
		if code := run.wait(t, time.Minute); code != 0 {
			t.Fatalf("trellis run exited %d, want 0; output:\n%s", code, run.Output())
		}
		t.Logf("trellis run output:\n%s\ntrellis status:\n%s", run.Output(), text)
		if got, err := os.ReadFile(filepath.Join(dir, "out", "big.txt")); err != nil || string(got) != "big\n" {
			t.Errorf("out/big.txt = %q, %v; want %q", got, err, "big\n")
		}
	})
}
