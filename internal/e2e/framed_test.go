package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"trellis"
)

// Workers with --transport framed hold their Work stream on a connection
// of their own: tasks with inputs and outputs run, byte for byte, beside a
// worker on HTTP/2, over plain TCP and over TLS; a worker killed with -9
// is lost and its task runs again on the other.
func TestFramedTransport(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", withTLS), func(t *testing.T) {
			var c *cluster
			var trust []string
			var cl *trellis.Client
			if withTLS {
				c = newCluster(t, "--tls", "auto", "--tls-dir", filepath.Join(t.TempDir(), "tls"))
				ca, _ := tlsLine(t, c.manager)
				trust = []string{"--tls-ca", ca}
				var err error
				if cl, err = c.tlsClient(ca, ""); err != nil {
					t.Fatal(err)
				}
			} else {
				c = newCluster(t)
				cl = c.client()
			}
			framed := c.worker("framed", nil, append([]string{"--transport", "framed", "--cores", "1"}, trust...)...)
			c.waitWorkers(cl, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			dir := t.TempDir()
			var tasks []*trellis.Task
			for i := range 20 {
				in := filepath.Join(dir, fmt.Sprintf("in-%d", i))
				os.WriteFile(in, []byte(strings.Repeat(fmt.Sprintf("line %d\n", i), 1000*(i+1))), 0o644)
				tk := trellis.NewTask("tac in > out")
				tk.AddInput(trellis.LocalFile(in), "in")
				tk.AddOutput(trellis.Output(filepath.Join(dir, fmt.Sprintf("out-%d", i))), "out")
				tasks = append(tasks, tk)
			}
			hs, err := cl.Submit(ctx, tasks...)
			if err != nil {
				t.Fatal(err)
			}
			for i, h := range hs {
				r := waitResult(t, h, time.Minute)
				want := strings.Repeat(fmt.Sprintf("line %d\n", i), 1000*(i+1))
				if got, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("out-%d", i))); !r.OK() || r.Worker != "framed" || string(got) != want {
					t.Fatalf("task %d: %v on %q, output of %d bytes; want success on the framed worker with the %d bytes of its input", i, r.Err(), r.Worker, len(got), len(want))
				}
			}

			// Killed with -9 while it runs a task: the manager loses it, and
			// the task runs again on a worker over HTTP/2.
			hs, err = cl.Submit(ctx, named("long", "[ $TRELLIS_ATTEMPT = 1 ] && sleep 60; echo again"))
			if err != nil {
				t.Fatal(err)
			}
			waitRunning(t, cl, 1, "the framed worker to run the task")
			framed.signal(t, syscall.SIGKILL)
			framed.wait(t, 10*time.Second)
			c.worker("plain", nil, append([]string{"--transport", "http2"}, trust...)...)
			if r := waitResult(t, hs[0], time.Minute); !r.OK() || r.Worker != "plain" || string(r.Stdout) != "again\n" || r.Attempts != 2 {
				t.Errorf("task of the killed worker: %v on %q, %q in %d attempts; want success on the other worker in 2", r.Err(), r.Worker, r.Stdout, r.Attempts)
			}
		})
	}
}

// A framed worker with a wrong secret is refused as one on HTTP/2 is, with
// the same message; an unknown --transport is refused by the command.
func TestFramedWrongSecret(t *testing.T) {
	c := newCluster(t)
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("not-the-secret"), 0o600)
	w := start(t, nil, "worker", c.addr, "--secret-file", bad, "--name", "intruder", "--transport", "framed")
	if code := w.wait(t, 20*time.Second); code == 0 {
		t.Errorf("framed worker with a wrong secret exited 0")
	}
	if out := w.Output(); !strings.Contains(out, "refused by the manager: wrong or missing secret") {
		t.Errorf("framed worker output does not say why it was refused:\n%s", out)
	}
	code, out := runTrellis(t, "worker", c.addr, "--secret-file", c.secretFile, "--transport", "quic")
	if code == 0 || !strings.Contains(out, `--transport "quic": give auto, framed or http2`) {
		t.Errorf("--transport quic: exit %d, output %q; want refused, naming the choices", code, out)
	}
}
