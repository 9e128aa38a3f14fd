package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"trellis"
)

// A task over its memory limit fails as resource exceeded, with a message
// that names the limit, whether the worker's kernel enforces it (a memory
// cgroup) or the worker samples it; a task within its limit, on the same
// worker after it, succeeds with its output.
func TestTaskOverItsMemory(t *testing.T) {
	c := newCluster(t)
	c.worker("w", nil, "--cores", "1", "--memory", "1000")
	cl := c.client()
	c.waitWorkers(cl, 1)

	hog := trellis.NewTask("head -c 300M /dev/zero | tail; echo never")
	hog.Resources.MemoryMB = 40
	fit := trellis.NewTask("head -c 10M /dev/zero | tail | wc -c; echo done >&2")
	fit.Resources.MemoryMB = 40
	hs, err := cl.Submit(context.Background(), hog)
	if err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, hs[0], time.Minute)
	if r.Kind != trellis.ResourceExceeded || !strings.Contains(r.Message, "exceeded the limit of 40 MB") {
		t.Errorf("a 300 MB task in 40 MB: %s: %q; want resource exceeded, naming the limit of 40 MB", r.Kind, r.Message)
	}
	if r.PeakMemoryMB < 40 {
		t.Errorf("PeakMemoryMB = %d; want at least 40", r.PeakMemoryMB)
	}
	hs, err = cl.Submit(context.Background(), fit)
	if err != nil {
		t.Fatal(err)
	}
	r = waitResult(t, hs[0], time.Minute)
	if !r.OK() || strings.TrimSpace(string(r.Stdout)) != "10485760" || string(r.Stderr) != "done\n" {
		t.Errorf("a 10 MB task in 40 MB: %v, stdout %q, stderr %q; want success, %q, %q", r.Err(), r.Stdout, r.Stderr, "10485760\n", "done\n")
	}
}
