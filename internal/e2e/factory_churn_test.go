package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"trellis"
)

// TestFactoryChurn: workers come and go at random while a factory keeps the
// manager supplied — some killed with -9 mid-task, the rest retiring when
// idle — and no task is lost: every one ends once, with its own output,
// and the factory replaces what went.
func TestFactoryChurn(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	c := newCluster(t)
	cl := c.client()
	start(t, nil, "factory", c.addr, "--secret-file", c.secretFile, "--batch", "local", "--max", "3", "--per-cycle", "3",
		"--cores", "1", "--memory", "300", "--interval", "200ms", "--idle-exit", "1s", "--drain-timeout", "1s", "--name", "churn")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	runAll := func(phase string, n int) {
		var tasks []*trellis.Task
		for i := range n {
			tasks = append(tasks, trellis.NewTask(fmt.Sprintf("sleep 0.%d; echo %s-%d", rng.IntN(3), phase, i)))
		}
		hs, err := cl.Submit(ctx, tasks...)
		if err != nil {
			t.Fatal(err)
		}
		for i, h := range hs {
			r := waitResult(t, h, time.Minute)
			if want := fmt.Sprintf("%s-%d", phase, i); !r.OK() || strings.TrimSpace(string(r.Stdout)) != want {
				t.Fatalf("%s task %d: %v, stdout %q; want %q", phase, i, r.Err(), r.Stdout, want)
			}
		}
	}

	// Phase 1: kill a random factory worker four times while 60 tasks run.
	killed := make(chan []string, 1)
	killRng := rand.New(rand.NewPCG(seed, 1)) // the goroutine's own: a Rand is not safe to share
	go func() {                               // exits after its kills, or when the test's context ends
		var names []string
		defer func() { killed <- names }()
		for len(names) < 4 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(300+killRng.IntN(400)) * time.Millisecond):
			}
			s, err := cl.Status(ctx)
			if err != nil || len(s.Workers) == 0 {
				continue
			}
			w := s.Workers[killRng.IntN(len(s.Workers))]
			if pid := workerPid(w.Name); pid > 0 && syscall.Kill(pid, syscall.SIGKILL) == nil {
				names = append(names, w.Name)
			}
		}
	}()
	runAll("one", 60)
	names := <-killed
	t.Logf("killed %v", names)
	if len(names) == 0 {
		t.Errorf("no worker was killed while the tasks ran: the test saw no churn")
	}

	// The idle workers retire; work comes again and the factory starts new ones.
	waitFor(t, 30*time.Second, "the idle workers to retire", func() bool {
		s, err := cl.Status(ctx)
		return err == nil && len(s.Workers) == 0
	})
	runAll("two", 20)
	s, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Succeeded != 80 || s.Failed != 0 {
		t.Errorf("%d succeeded, %d failed; want 80 and 0", s.Succeeded, s.Failed)
	}
	for _, w := range s.Workers {
		if slices.Contains(names, w.Name) {
			t.Errorf("killed worker %s still connected", w.Name)
		}
	}
}

// workerPid finds the worker process named name (its --name), 0 if none.
func workerPid(name string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) > 1 && args[1] == "worker" {
			if i := slices.Index(args, "--name"); i > 0 && i+1 < len(args) && args[i+1] == name {
				return pid
			}
		}
	}
	return 0
}
