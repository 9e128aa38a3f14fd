package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"trellis"

	"trellis/internal/syncbuf"
)

// rerunAfterCrash runs a small map/reduce workflow (maps writing temp
// files, reduces reading them) through a manager process with --state and
// one worker process, kills the manager with SIGKILL once half the tasks
// have their result, starts it again on the same state and address, and
// waits for every result. Each task appends its TRELLIS_IDEMPOTENCY_KEY to
// a log when it runs: it returns how many tasks whose result the client
// had before the kill ran again, and how many tasks there were.
func rerunAfterCrash(ctx context.Context, self string, maps, reduces int, logf func(string, ...any)) (reran, finishedBefore int, err error) {
	dir, err := os.MkdirTemp("", "trellis-bench-crash-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("bench-crash\n"), 0o600); err != nil {
		return 0, 0, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	addr := ln.Addr().String()
	ln.Close()
	state, log := filepath.Join(dir, "state"), filepath.Join(dir, "effects.log")
	startManager := func() (*exec.Cmd, *syncbuf.Buffer, error) {
		out := new(syncbuf.Buffer)
		cmd := exec.CommandContext(ctx, self, "manager", "--listen", addr, "--secret-file", secret, "--state", state)
		cmd.Stdout, cmd.Stderr = out, out
		return cmd, out, cmd.Start()
	}
	m, out, err := startManager()
	if err != nil {
		return 0, 0, err
	}
	defer func() { m.Process.Kill(); m.Wait() }()
	if err := waitListening(ctx, out); err != nil {
		return 0, 0, err
	}
	w := exec.CommandContext(ctx, self, "worker", addr, "--secret-file", secret, "--name", "w1", "--cores", "2", "--workdir", filepath.Join(dir, "w1"))
	if err := w.Start(); err != nil {
		return 0, 0, err
	}
	defer func() { w.Process.Kill(); w.Wait() }()
	c, err := trellis.Dial(ctx, addr, trellis.WithSecret("bench-crash"))
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()

	const logKey = `printf '%s\n' "$TRELLIS_IDEMPOTENCY_KEY" >> "$LOG"`
	var tasks []*trellis.Task
	temps := make([]*trellis.File, maps)
	for i := range maps {
		temps[i] = trellis.Temp()
		t := trellis.NewTask(`sleep 0.05; head -c 65536 /dev/urandom > out; ` + logKey)
		t.Name, t.Key, t.Env = fmt.Sprintf("map%d", i), fmt.Sprintf("map%d", i), []string{"LOG=" + log}
		t.AddOutput(temps[i], "out")
		tasks = append(tasks, t)
	}
	for i := range reduces {
		t := trellis.NewTask(`sleep 0.05; cat in* > /dev/null; ` + logKey)
		t.Name, t.Key, t.Env = fmt.Sprintf("reduce%d", i), fmt.Sprintf("reduce%d", i), []string{"LOG=" + log}
		for k := i; k < maps; k += reduces {
			t.AddInput(temps[k], fmt.Sprintf("in%d", k))
		}
		tasks = append(tasks, t)
	}
	hs, err := c.Submit(ctx, tasks...)
	if err != nil {
		return 0, 0, err
	}
	var mu sync.Mutex
	done := make(map[string]bool)
	var before map[string]bool
	errs := make(chan error, len(hs))
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Add(1)
		go func() { // exits when the task's wait ends (ctx bounds it)
			defer wg.Done()
			r, err := h.Wait(ctx)
			if err == nil && !r.OK() {
				err = fmt.Errorf("task %s: %v", h.Name, r.Err())
			}
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			done[h.Name] = true
			mu.Unlock()
		}()
	}
	for {
		mu.Lock()
		n := len(done)
		if n >= len(hs)/2 {
			before = make(map[string]bool, n)
			for k := range done {
				before[k] = true
			}
		}
		mu.Unlock()
		if before != nil {
			break
		}
		select {
		case err := <-errs:
			return 0, 0, err
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	logf("rerun_after_crash: kill -9 the manager after %d of %d results", len(before), len(hs))
	m.Process.Kill()
	m.Wait()
	if m, out, err = startManager(); err != nil {
		return 0, 0, err
	}
	if err := waitListening(ctx, out); err != nil {
		return 0, 0, err
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, 0, err
	}
	data, err := os.ReadFile(log)
	if err != nil {
		return 0, 0, err
	}
	runs := make(map[string]int)
	for _, line := range strings.Fields(string(data)) {
		_, key, _ := strings.Cut(line, "/")
		runs[key]++
	}
	for name := range before {
		if runs[name] > 1 {
			reran++
		}
	}
	return reran, len(before), nil
}

// waitListening waits until a manager's output says it listens.
func waitListening(ctx context.Context, out *syncbuf.Buffer) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(out.String()))
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "trellis manager listening on ") {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return fmt.Errorf("the manager did not listen within 30 s: %s", out.String())
}
