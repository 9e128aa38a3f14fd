package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"trellis"
)

// A worker killed with SIGKILL mid-task: its tasks run again elsewhere, every
// task completes once, and the outputs are right.
func TestKillWorkerMidTask(t *testing.T) {
	c := newCluster(t)
	victim := c.worker("victim", nil, "--cores", "2")
	cl := c.client()
	c.waitWorkers(cl, 1)

	dir := t.TempDir()
	var tasks []*trellis.Task
	for i := range 4 {
		tk := trellis.NewTask(fmt.Sprintf("sleep 1; echo task-%d attempt $TRELLIS_ATTEMPT > out.txt", i))
		tk.AddOutput(trellis.Output(filepath.Join(dir, fmt.Sprintf("out-%d.txt", i))), "out.txt")
		tasks = append(tasks, tk)
	}
	hs, err := cl.Submit(context.Background(), tasks...)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "two tasks running on the victim", func() bool {
		s, err := cl.Status(context.Background())
		return err == nil && len(s.Workers) == 1 && len(s.Workers[0].Running) == 2
	})
	victim.signal(t, syscall.SIGKILL)
	victim.wait(t, 10*time.Second)
	c.worker("rescuer", nil, "--cores", "2")

	for i, h := range hs {
		r := waitResult(t, h, time.Minute)
		if !r.OK() {
			t.Fatalf("task %d: %v", i, r.Err())
		}
		if r.Worker != "rescuer" && r.Attempts != 1 {
			t.Errorf("task %d finished on %s in attempt %d", i, r.Worker, r.Attempts)
		}
		got, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("out-%d.txt", i)))
		want := fmt.Sprintf("task-%d attempt %d\n", i, r.Attempts)
		if err != nil || string(got) != want {
			t.Errorf("out-%d.txt = %q, %v; want %q", i, got, err, want)
		}
	}
	s, err := cl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Succeeded != 4 || s.Failed != 0 || s.Finished != 4 {
		t.Errorf("status: %d succeeded, %d failed, %d finished; want 4, 0, 4", s.Succeeded, s.Failed, s.Finished)
	}
}

// SIGTERM drains a worker: it takes no new work, finishes what it runs, and
// exits cleanly; the rest of the work goes to the other worker.
func TestSIGTERMDrainsWorker(t *testing.T) {
	c := newCluster(t)
	w1 := c.worker("draining", nil, "--cores", "1")
	cl := c.client()
	c.waitWorkers(cl, 1)
	marker := filepath.Join(t.TempDir(), "started")
	first, err := cl.Submit(context.Background(), trellis.NewTask("touch "+marker+"; sleep 1; echo finished"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the first task to start", func() bool {
		_, err := os.Stat(marker)
		return err == nil
	})
	w1.signal(t, syscall.SIGTERM)
	waitFor(t, 10*time.Second, "the worker to drain", func() bool {
		s, err := cl.Status(context.Background())
		return err == nil && len(s.Workers) == 1 && s.Workers[0].Draining
	})
	second, err := cl.Submit(context.Background(), trellis.NewTask("echo second"))
	if err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, first[0], 30*time.Second)
	if !r.OK() || r.Attempts != 1 || string(r.Stdout) != "finished\n" {
		t.Errorf("first task: %v, attempt %d, stdout %q; want success in attempt 1", r.Err(), r.Attempts, r.Stdout)
	}
	if code := w1.wait(t, 20*time.Second); code != 0 {
		t.Errorf("drained worker exit code %d, want 0", code)
	}
	c.worker("second", nil, "--cores", "1")
	r = waitResult(t, second[0], 30*time.Second)
	if !r.OK() || r.Worker != "second" {
		t.Errorf("second task: %v on %q; want success on the second worker", r.Err(), r.Worker)
	}
}

// A wrong secret is refused with a clear message on both sides.
func TestWrongSecret(t *testing.T) {
	c := newCluster(t)
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("not-the-secret"), 0o600)

	w := start(t, nil, "worker", c.addr, "--secret-file", bad, "--name", "intruder")
	if code := w.wait(t, 20*time.Second); code == 0 {
		t.Errorf("worker with a wrong secret exited 0")
	}
	if out := w.Output(); !strings.Contains(out, "refused by the manager: wrong or missing secret") {
		t.Errorf("worker output does not say why it was refused:\n%s", out)
	}
	waitFor(t, 5*time.Second, "the manager to log the refusal", func() bool {
		return strings.Contains(c.manager.Output(), "refused a peer: wrong secret")
	})

	code, out := runTrellis(t, "status", c.addr, "--secret-file", bad)
	if code == 0 || !strings.Contains(out, "wrong or missing secret") {
		t.Errorf("status with a wrong secret: exit %d, output %q", code, out)
	}
	_, err := trellis.Dial(context.Background(), c.addr, trellis.WithSecret("nope"))
	if !errors.Is(err, trellis.ErrUnauthenticated) {
		t.Errorf("Dial with a wrong secret: %v, want ErrUnauthenticated", err)
	}
	// The manager still serves the right secret.
	cl := c.client()
	if _, err := cl.Status(context.Background()); err != nil {
		t.Errorf("status after refusals: %v", err)
	}
}

// Oversized and garbled messages are refused; the manager goes on.
func TestOversizedAndGarbledMessages(t *testing.T) {
	c := newCluster(t)
	secret, _ := os.ReadFile(c.secretFile)
	post := func(body []byte, contentType string) (int, string) {
		req, _ := newRequest("POST", "http://"+c.addr+"/trellis.v1.Manager/Submit", body)
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(secret)))
		return do(t, req)
	}
	big := []byte(`{"tasks":[{"command":"` + strings.Repeat("x", 17<<20) + `"}]}`)
	if code, body := post(big, "application/json"); code < 400 || !strings.Contains(body, "exceeds") && !strings.Contains(body, "larger") {
		t.Errorf("oversized submit: HTTP %d %s", code, body)
	}
	if code, body := post([]byte("\x00\xff\x13garbage"), "application/proto"); code < 400 {
		t.Errorf("garbled submit: HTTP %d %s", code, body)
	}
	if code, body := post([]byte(`{"tasks":[{"command":"true","inputs":[{"name":"x","path":"../../etc/passwd"}]}]}`), "application/json"); code != 400 || !strings.Contains(body, "escapes the sandbox") {
		t.Errorf("escaping input path: HTTP %d %s", code, body)
	}
	c.worker("w", nil)
	cl := c.client()
	hs, err := cl.Submit(context.Background(), trellis.NewTask("echo still alive"))
	if err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, hs[0], 30*time.Second); !r.OK() || string(r.Stdout) != "still alive\n" {
		t.Errorf("task after bad messages: %v, %q", r.Err(), r.Stdout)
	}
}

// A worker whose process stops answering (SIGSTOP; a dead host or a cut
// link look the same to the manager) is lost by pings (proto.PingIdle,
// then proto.PingTimeout: about 55 s), well before the default heartbeat's
// three silent intervals (90 s) would lose it: the connection's HTTP/2
// pings, or for a framed stream the manager's Ping messages, which the
// liveness sweep sends. The manager then says why: the connection closed,
// or the ping went unanswered; not a heartbeat.
func TestStoppedWorkerLostByPings(t *testing.T) {
	if testing.Short() {
		t.Skip("waits about a minute for the pings")
	}
	for _, tc := range []struct{ transport, why string }{
		{"http2", `msg="worker left"`},
		{"framed", "no answer to a ping within 10s"},
	} {
		t.Run(tc.transport, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t) // the default heartbeat, 30 s
			w := c.worker("w1", nil, "--cores", "1", "--transport", tc.transport)
			cl := c.client()
			c.waitWorkers(cl, 1)
			w.signal(t, syscall.SIGSTOP)
			defer w.signal(t, syscall.SIGCONT)
			stopped := time.Now()
			waitFor(t, 85*time.Second, "the stopped worker to be lost by the pings", func() bool {
				s, err := cl.Status(context.Background())
				return err == nil && len(s.Workers) == 0
			})
			t.Logf("lost %s after the stop", time.Since(stopped).Round(time.Second))
			if out := c.manager.Output(); strings.Contains(out, "no heartbeat") || !strings.Contains(out, tc.why) {
				t.Errorf("the manager's log says the worker was lost by its heartbeat, or not by the pings (want %q):\n%s", tc.why, out)
			}
		})
	}
}
