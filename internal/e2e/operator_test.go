package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"trellis"
	"trellis/sdk/python"
)

// TestLibraryInstallAndList: trellis library install reads a library file
// in the workflow syntax, and a Go client's calls run in what it installed;
// trellis library list shows it.
func TestLibraryInstallAndList(t *testing.T) {
	needPython(t)
	c := newCluster(t)
	cl := c.client()
	c.worker("w1", nil, "--cores", "2")
	c.waitWorkers(cl, 1)
	dir := t.TempDir()
	for name, data := range map[string][]byte{"trellis_library.py": python.SDK, "lib.py": []byte(slowLibrary)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	libs := filepath.Join(dir, "libs.yaml")
	if err := os.WriteFile(libs, []byte(`libraries:
  - name: slow
    command: python3 lib.py
    inputs:
      trellis_library.py: trellis_library.py
      lib.py: lib.py
    slots: 2
`), 0o644); err != nil {
		t.Fatal(err)
	}

	code, out := runTrellis(t, "library", "install", c.addr, libs, "--secret-file", c.secretFile)
	if code != 0 || out != "installed library slow\n" {
		t.Fatalf("trellis library install: exit %d, output %q; want 0, \"installed library slow\\n\"", code, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := cl.Call(ctx, "slow", "repeat", []byte("ab"))
	if err != nil || string(got) != "ababab" {
		t.Fatalf("Call(slow.repeat, ab) = %q, %v; want \"ababab\", nil", got, err)
	}
	code, out = runTrellis(t, "library", "list", c.addr, "--secret-file", c.secretFile)
	if code != 0 || !strings.Contains(out, "LIBRARY") || !strings.Contains(out, "\nslow ") {
		t.Errorf("trellis library list: exit %d, want 0 and a line for library slow:\n%s", code, out)
	}

	// Removed while a call runs and another waits: both fail saying so,
	// the instance stops, and the library is no longer listed.
	busy, err := cl.Submit(ctx, trellis.NewCall("slow", "nap", []byte(`{"s": 600, "i": 1}`)),
		trellis.NewCall("slow", "nap", []byte(`{"s": 600, "i": 2}`)), trellis.NewCall("slow", "nap", []byte(`{"s": 600, "i": 3}`)))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "two calls to run", func() bool {
		s, err := cl.Status(ctx)
		return err == nil && s.Calls.Running == 2
	})
	code, out = runTrellis(t, "library", "remove", c.addr, "slow", "--secret-file", c.secretFile)
	if code != 0 || out != "removed library slow\n" {
		t.Fatalf("trellis library remove: exit %d, output %q; want 0, \"removed library slow\\n\"", code, out)
	}
	const why = "library slow was removed (trellis library remove): install it again to call it"
	for _, h := range busy {
		if r := waitResult(t, h, 30*time.Second); r.Kind != trellis.Failed || r.Message != why {
			t.Errorf("call %d after trellis library remove: %v %q, want failed %q", h.ID, r.Kind, r.Message, why)
		}
	}
	waitFor(t, 20*time.Second, "the instances to stop", func() bool {
		s, err := cl.Status(ctx)
		return err == nil && s.Instances.Running == 0 && len(s.Libraries) == 0
	})
	code, out = runTrellis(t, "library", "remove", c.addr, "slow", "--secret-file", c.secretFile)
	if code == 0 || !strings.Contains(out, `library "slow" is not installed: trellis library list shows those that are`) {
		t.Errorf("trellis library remove of a removed library: exit %d, want non-zero saying it is not installed:\n%s", code, out)
	}
	code, out = runTrellis(t, "library", "list", c.addr, "--secret-file", c.secretFile)
	if code != 0 || out != "no libraries installed\n" {
		t.Errorf("trellis library list after remove: exit %d, output %q; want 0, \"no libraries installed\\n\"", code, out)
	}

	if err := os.WriteFile(libs, []byte("libraries: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out = runTrellis(t, "library", "install", c.addr, libs, "--secret-file", c.secretFile)
	if code == 0 || !strings.Contains(out, `missing required field "libraries"`) {
		t.Errorf("trellis library install of an empty list: exit %d, want non-zero naming the missing libraries:\n%s", code, out)
	}
}

// TestCancelByID: trellis cancel stops another client's running task,
// which that client sees end as cancelled, and leaves its other task be.
func TestCancelByID(t *testing.T) {
	c := newCluster(t)
	cl := c.client()
	c.worker("w1", nil, "--cores", "2")
	c.waitWorkers(cl, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hs, err := cl.Submit(ctx, named("long", "sleep 600"), named("short", "echo done"))
	if err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, hs[1], time.Minute); !r.OK() {
		t.Fatalf("task short: %v, want success", r.Err())
	}
	waitFor(t, 20*time.Second, "task long to run", func() bool {
		s, err := cl.Status(ctx)
		return err == nil && s.Running == 1
	})

	code, out := runTrellis(t, "cancel", c.addr, strconv.FormatUint(hs[0].ID, 10), "--secret-file", c.secretFile)
	if code != 0 || out != "asked the manager to cancel 1 task\n" {
		t.Fatalf("trellis cancel: exit %d, output %q; want 0, \"asked the manager to cancel 1 task\\n\"", code, out)
	}
	if r := waitResult(t, hs[0], 30*time.Second); r.Kind != trellis.Cancelled {
		t.Errorf("task long after trellis cancel: %v, want cancelled", r.Kind)
	}

	code, out = runTrellis(t, "cancel", c.addr, "x1", "--secret-file", c.secretFile)
	if code == 0 || !strings.Contains(out, `task "x1": give a task ID, a number`) {
		t.Errorf("trellis cancel x1: exit %d, want non-zero asking for a number:\n%s", code, out)
	}
}
