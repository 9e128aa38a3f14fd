package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"trellis"
)

// TestWatchResumesAfterCut: a client whose connection to a manager process
// is cut several times mid-run gets every event of its tasks exactly once.
func TestWatchResumesAfterCut(t *testing.T) {
	c := newCluster(t)
	c.worker("w1", nil, "--cores", "2")
	proxy := newProxy(t, c.addr)
	secret := c.secret()

	type seen struct {
		task    uint64
		state   trellis.State
		attempt int
	}
	var mu sync.Mutex
	counts := make(map[seen]int)
	done := 0
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := trellis.Dial(ctx, proxy.ln.Addr().String(), trellis.WithSecret(secret), trellis.WithEvents(func(ev trellis.Event) {
		mu.Lock()
		defer mu.Unlock()
		counts[seen{ev.Task, ev.State, ev.Attempt}]++
		if ev.State == trellis.StateDone {
			done++
		}
	}))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer cl.Close()
	c.waitWorkers(cl, 1)

	const n = 60
	var tasks []*trellis.Task
	for i := range n {
		tasks = append(tasks, trellis.NewTask(fmt.Sprintf("sleep 0.05; echo %d", i)))
	}
	hs, err := cl.Submit(ctx, tasks...)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	doneCount := func() int { mu.Lock(); defer mu.Unlock(); return done }
	for _, at := range []int{5, 20, 35} { // cut while tasks run and events flow
		waitFor(t, time.Minute, fmt.Sprintf("%d tasks done", at), func() bool { return doneCount() >= at })
		proxy.cut(300 * time.Millisecond)
	}
	for _, h := range hs {
		if r := waitResult(t, h, 20*time.Second); !r.OK() {
			t.Errorf("task %s: %s: %s", h.Name, r.Kind, r.Message)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for k, got := range counts {
		if got != 1 {
			t.Errorf("task %d: event %s (attempt %d) applied %d times, want once", k.task, k.state, k.attempt, got)
		}
	}
	for _, h := range hs {
		if counts[seen{h.ID, trellis.StateDone, 1}] != 1 || counts[seen{h.ID, trellis.StateRunning, 1}] != 1 {
			t.Errorf("task %d: got running %d, done %d times; want each once", h.ID,
				counts[seen{h.ID, trellis.StateRunning, 1}], counts[seen{h.ID, trellis.StateDone, 1}])
		}
	}
}

// TestManagerLost: a client whose manager restarts (and so forgot its
// session), or stays away, ends its waits with ErrManagerLost naming the
// manager, instead of waiting forever; a client of the restarted manager
// runs new work.
func TestManagerLost(t *testing.T) {
	for _, restart := range []bool{true, false} {
		t.Run(map[bool]string{true: "restarted", false: "unreachable"}[restart], func(t *testing.T) {
			c := newCluster(t)
			c.worker("w1", nil, "--cores", "1")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cl, err := trellis.Dial(ctx, c.addr, trellis.WithSecret(c.secret()), trellis.WithManagerTimeout(2*time.Second))
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer cl.Close()
			c.waitWorkers(cl, 1)
			hs, err := cl.Submit(ctx, trellis.NewTask("sleep 60"))
			if err != nil {
				t.Fatal(err)
			}
			waitRunning(t, cl, 1, "the task to run")
			c.manager.signal(t, 9)
			c.manager.wait(t, 10*time.Second)
			want := "unreachable for"
			if restart {
				c.manager = start(t, nil, "manager", "--listen", c.addr, "--secret-file", c.secretFile, "--store", c.store)
				want = "restarted and forgot this session's tasks"
			}
			start := time.Now()
			_, err = hs[0].Wait(ctx)
			if !errors.Is(err, trellis.ErrManagerLost) || !strings.Contains(err.Error(), c.addr) || !strings.Contains(err.Error(), want) {
				t.Fatalf("Wait after the manager went: %v; want ErrManagerLost naming %s and %q", err, c.addr, want)
			}
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("Wait took %s to give up", d)
			}
			if !restart {
				return
			}
			c.waitWorkers(cl, 1) // the worker reconnects to the new run
			hs, err = cl.Submit(ctx, trellis.NewTask("echo again"))
			if err != nil {
				t.Fatalf("Submit to the restarted manager: %v", err)
			}
			if r := waitResult(t, hs[0], 30*time.Second); !r.OK() || string(r.Stdout) != "again\n" {
				t.Errorf("a task on the restarted manager: %s %q (%s)", r.Kind, r.Stdout, r.Message)
			}
		})
	}
}
