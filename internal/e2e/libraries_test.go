package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"trellis"
	"trellis/sdk/python"
)

// slowLibrary is a Python library whose calls take a while, so that a
// worker can be killed in the middle of them.
const slowLibrary = `import os, time
import trellis_library as tl
lib = tl.Library("slow")

@lib.function
def nap(args):
    time.sleep(args["s"])
    return {"i": args["i"], "pid": os.getpid()}

@lib.function(raw=True)
def repeat(body):
    return body * 3

@lib.function
def hog(mb):
    block = bytearray(mb << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(5)
    return len(block)

if __name__ == "__main__":
    lib.serve()
`

func pythonLibrary(name string) *trellis.Library {
	return &trellis.Library{Name: name, Command: "python3 lib.py", Slots: 2, Resources: trellis.Resources{Cores: 1},
		Inputs: []trellis.Mount{{File: trellis.Buffer(python.SDK), Path: "trellis_library.py"}, {File: trellis.Buffer([]byte(slowLibrary)), Path: "lib.py"}}}
}

func needPython(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
}

// TestCallsSurviveWorkerKill: SIGKILL the worker whose library runs calls;
// every call still ends once, with its own result, in an instance on the
// other worker.
func TestCallsSurviveWorkerKill(t *testing.T) {
	needPython(t)
	c := newCluster(t)
	victim := c.worker("victim", nil, "--cores", "1")
	cl := c.client()
	c.waitWorkers(cl, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cl.Install(ctx, pythonLibrary("slow")); err != nil {
		t.Fatal(err)
	}
	var calls []*trellis.Task
	for i := range 12 {
		call := trellis.NewCall("slow", "nap", []byte(fmt.Sprintf(`{"i":%d,"s":0.3}`, i)))
		call.Retries = 2
		calls = append(calls, call)
	}
	hs, err := cl.Submit(ctx, calls...)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "calls running in the victim's library", func() bool {
		s, err := cl.Status(ctx)
		return err == nil && len(s.Libraries) == 1 && len(s.Libraries[0].Instances) == 1 && s.Libraries[0].Instances[0].Busy == 2
	})
	victim.signal(t, syscall.SIGKILL)
	victim.wait(t, 10*time.Second)
	c.worker("rescuer", nil, "--cores", "1")

	for i, h := range hs {
		r := waitResult(t, h, time.Minute)
		if !r.OK() {
			t.Fatalf("call %d: %v", i, r.Err())
		}
		if want := fmt.Sprintf(`{"i":%d,`, i); len(r.Output) < len(want) || string(r.Output[:len(want)]) != want {
			t.Errorf("call %d returned %s", i, r.Output)
		}
	}
	s, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l := s.Libraries[0]
	if l.CallsDone != 12 || l.InstancesStarted != 2 || len(l.Instances) != 1 || l.Instances[0].Worker != "rescuer" {
		t.Errorf("library status %+v; want 12 calls done, 2 instances started, one left on the rescuer", l)
	}
}

// TestLibraryOverItsMemory: a library that grows past its memory limit is
// killed, and its call says so; the library serves the next call.
func TestLibraryOverItsMemory(t *testing.T) {
	needPython(t)
	c := newCluster(t)
	c.worker("w", nil, "--cores", "1", "--memory", "2000")
	cl := c.client()
	c.waitWorkers(cl, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lib := pythonLibrary("slow")
	lib.Resources.MemoryMB = 100
	if err := cl.Install(ctx, lib); err != nil {
		t.Fatal(err)
	}
	call := trellis.NewCall("slow", "hog", []byte("300"))
	call.Retries = 0
	hs, err := cl.Submit(ctx, call)
	if err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, hs[0], time.Minute)
	if r.Kind != trellis.ResourceExceeded {
		t.Fatalf("hog(300 MB) in a 100 MB library: %s: %s; want ResourceExceeded", r.Kind, r.Message)
	}
	t.Logf("reported: %s", r.Message)
	out, err := cl.Call(ctx, "slow", "nap", []byte(`{"i":7,"s":0}`))
	if err != nil {
		t.Fatalf("the next call: %v", err)
	}
	if string(out[:6]) != `{"i":7` {
		t.Fatalf("the next call returned %s", out)
	}
}

// TestLargeResultLeavesWithTheSession: a call's result too large for the
// messages goes through the manager's store, and leaves it when the
// client's session ends.
func TestLargeResultLeavesWithTheSession(t *testing.T) {
	needPython(t)
	c := newCluster(t)
	c.worker("w", nil, "--cores", "1")
	cl := c.client()
	c.waitWorkers(cl, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.Install(ctx, pythonLibrary("slow")); err != nil {
		t.Fatal(err)
	}
	args := bytes.Repeat([]byte("trellis!"), 100_000) // 800 kB in, 2.4 MB out
	out, err := cl.Call(ctx, "slow", "repeat", args)
	if err != nil || !bytes.Equal(out, bytes.Repeat(args, 3)) {
		t.Fatalf("repeat: %d bytes, %v; want %d", len(out), err, 3*len(args))
	}
	sum := sha256.Sum256(out)
	stored := filepath.Join(c.store, "files", "sha256-"+hex.EncodeToString(sum[:]))
	if _, err := os.Stat(stored); err != nil {
		t.Fatalf("the result is not in the store while the session lasts: %v", err)
	}
	cl.Close()
	waitFor(t, 10*time.Second, "the result to leave the store", func() bool {
		_, err := os.Stat(stored)
		return errors.Is(err, os.ErrNotExist)
	})
}

// envLibrary reports GODEBUG as its process was started with it and as
// the library sees it (and passes it on) after the SDK's start.
const envLibrary = `import os
import trellis_library as tl
lib = tl.Library("env")

@lib.function
def godebug():
    with open("/proc/self/environ", "rb") as f:
        started = [kv[len(b"GODEBUG="):].decode() for kv in f.read().split(b"\0") if kv.startswith(b"GODEBUG=")]
    return {"started": started[0] if started else None, "now": os.environ.get("GODEBUG")}

if __name__ == "__main__":
    lib.serve()
`

// TestLibraryMonitorSetting: a worker process that runs with the Go
// runtime monitor's setting (it runs itself again with it at start)
// starts its libraries with it too, the library's own GODEBUG after it;
// the SDK puts the library's own back for what it starts. A worker with
// TRELLIS_SYSMON=off starts them without it.
func TestLibraryMonitorSetting(t *testing.T) {
	needPython(t)
	for _, tc := range []struct {
		name      string
		env       []string
		wantStart string
	}{
		{"with the setting", nil, "schedtrace=2147483647,gctrace=0"},
		{"TRELLIS_SYSMON=off", []string{"TRELLIS_SYSMON=off"}, "gctrace=0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			c.worker("w", tc.env, "--cores", "1")
			cl := c.client()
			c.waitWorkers(cl, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			lib := &trellis.Library{Name: "env", Command: "python3 lib.py", Env: []string{"GODEBUG=gctrace=0"},
				Inputs: []trellis.Mount{{File: trellis.Buffer(python.SDK), Path: "trellis_library.py"}, {File: trellis.Buffer([]byte(envLibrary)), Path: "lib.py"}}}
			if err := cl.Install(ctx, lib); err != nil {
				t.Fatal(err)
			}
			out, err := cl.Call(ctx, "env", "godebug", nil)
			if err != nil {
				t.Fatal(err)
			}
			var got struct{ Started, Now string }
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			if got.Started != tc.wantStart || got.Now != "gctrace=0" {
				t.Errorf("the library's GODEBUG: %q at its start, %q after the SDK's; want %q and %q", got.Started, got.Now, tc.wantStart, "gctrace=0")
			}
		})
	}
}
