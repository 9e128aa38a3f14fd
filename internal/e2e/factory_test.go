package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"trellis"
)

// TestFactoryLocal: a factory with --batch local starts workers for the
// tasks that wait, at most --max, which run them; idle, the workers exit;
// stopped, the factory cancels what it started.
func TestFactoryLocal(t *testing.T) {
	c := newCluster(t)
	cl := c.client()
	f := start(t, nil, "factory", c.addr, "--secret-file", c.secretFile, "--batch", "local", "--max", "2",
		"--cores", "1", "--memory", "500", "--interval", "200ms", "--idle-exit", "1s", "--drain-timeout", "1s", "--name", "fw")
	time.Sleep(time.Second) // nothing waits: no worker
	if s, err := cl.Status(context.Background()); err != nil || len(s.Workers) != 0 {
		t.Fatalf("status %v, %v; want no worker before work waits", s, err)
	}
	var tasks []*trellis.Task
	for i := range 6 {
		tasks = append(tasks, trellis.NewTask(fmt.Sprintf("sleep 0.3; echo %d", i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hs, err := cl.Submit(ctx, tasks...)
	if err != nil {
		t.Fatal(err)
	}
	most := 0
	for i, h := range hs {
		for {
			s, err := cl.Status(ctx)
			if err == nil {
				most = max(most, len(s.Workers))
			}
			select {
			case <-h.Done():
			case <-time.After(50 * time.Millisecond):
				continue
			}
			break
		}
		r := waitResult(t, h, time.Minute)
		if !r.OK() || strings.TrimSpace(string(r.Stdout)) != fmt.Sprint(i) {
			t.Fatalf("task %d: %v, stdout %q", i, r.Err(), r.Stdout)
		}
		if !strings.HasPrefix(r.Worker, "fw-") {
			t.Errorf("task %d ran on %q, not a factory worker", i, r.Worker)
		}
	}
	if most == 0 || most > 2 {
		t.Errorf("at most %d workers connected at once; want 1 or 2 (--max 2)", most)
	}
	waitFor(t, 20*time.Second, "the idle workers to exit", func() bool {
		s, err := cl.Status(ctx)
		return err == nil && len(s.Workers) == 0
	})
	if out := f.Output(); !strings.Contains(out, "msg=factory submit=") || !strings.Contains(out, "why=") {
		t.Errorf("the factory logged no decision with its reason:\n%s", out)
	}
	// Work again, then stop the factory while its workers run it.
	hs, err = cl.Submit(ctx, trellis.NewTask("sleep 300"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "a worker for the new task", func() bool {
		s, err := cl.Status(ctx)
		return err == nil && len(s.Workers) == 1
	})
	// The status shows the factory, its worker as its own, and its last
	// decision (the factory reports each cycle, a cycle behind).
	waitFor(t, 10*time.Second, "the status to show the factory's worker", func() bool {
		s, err := cl.Status(ctx)
		return err == nil && len(s.Workers) == 1 && s.Workers[0].Factory == "fw" &&
			len(s.Factories) == 1 && s.Factories[0].WorkersConnected == 1 && s.Factories[0].StartedCount == 1
	})
	code, text := runTrellis(t, "status", "--secret-file", c.secretFile, c.addr)
	if code != 0 || !strings.Contains(text, "factory fw (local, 0..2 workers): 1 worker connected; 1 job started, 0 pending") ||
		!strings.Contains(text, "(factory fw)") || !strings.Contains(text, "last decision: submit ") {
		t.Errorf("trellis status (exit %d) does not show the factory, its worker and its decision:\n%s", code, text)
	}
	f.signal(t, syscall.SIGTERM)
	f.wait(t, 20*time.Second)
	if s, err := cl.Status(ctx); err != nil || len(s.Workers) != 0 {
		t.Errorf("after the factory stopped: status %v, %v; want its workers gone", s, err)
	}
	if !strings.Contains(f.Output(), "factory stopped") {
		t.Errorf("the factory did not say it stopped:\n%s", f.Output())
	}
}
