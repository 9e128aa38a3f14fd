package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"trellis"
)

var binary string // the trellis binary, built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "trellis-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "trellis")
	// Runs leave their state (trellis run --manager) here, not in $HOME.
	os.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	build := exec.Command("go", "build", "-o", binary, "trellis/cmd/trellis")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build trellis:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a trellis process under test.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer // stdout and stderr
	done chan struct{}
	err  error
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output is what the process printed so far.
func (p *proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("process %v did not exit within %s; output:\n%s", p.cmd.Args, d, p.Output())
	}
	if p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// start runs the trellis binary with args; it is killed when the test ends.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(binary, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.Env = append(os.Environ(), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("output of %v:\n%s", p.cmd.Args[1:], p.Output())
		}
	})
	return p
}

// runTrellis runs the binary to completion and returns its exit code and output.
func runTrellis(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	out, err := cmd.CombinedOutput()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitRunning waits up to 20 s for cl's status to show n tasks running
// (what names them in the failure).
func waitRunning(t *testing.T, cl *trellis.Client, n int, what string) {
	t.Helper()
	waitFor(t, 20*time.Second, what, func() bool {
		s, err := cl.Status(context.Background())
		return err == nil && s.Running == n
	})
}

// cluster is a manager process and its secret.
type cluster struct {
	t          *testing.T
	addr       string
	secretFile string
	manager    *proc
	store      string // the manager's store directory
}

// newCluster starts a manager process, with extra flags.
func newCluster(t *testing.T, flags ...string) *cluster {
	t.Helper()
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret-"+t.Name()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := start(t, nil, append([]string{"manager", "--listen", "127.0.0.1:0", "--secret-file", secret, "--store", filepath.Join(dir, "store")}, flags...)...)
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

// worker starts a worker process named name with extra flags.
func (c *cluster) worker(name string, env []string, flags ...string) *proc {
	c.t.Helper()
	args := append([]string{"worker", c.addr, "--secret-file", c.secretFile, "--name", name,
		"--workdir", filepath.Join(c.t.TempDir(), name)}, flags...)
	return start(c.t, env, args...)
}

// secret is the cluster's shared secret.
func (c *cluster) secret() string {
	c.t.Helper()
	secret, err := os.ReadFile(c.secretFile)
	if err != nil {
		c.t.Fatal(err)
	}
	return strings.TrimSpace(string(secret))
}

// client connects a Go API client to the manager.
func (c *cluster) client() *trellis.Client {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := trellis.Dial(ctx, c.addr, trellis.WithSecret(c.secret()))
	if err != nil {
		c.t.Fatalf("Dial: %v", err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// waitWorkers waits until n workers are connected.
func (c *cluster) waitWorkers(cl *trellis.Client, n int) {
	c.t.Helper()
	waitFor(c.t, 20*time.Second, fmt.Sprintf("%d workers", n), func() bool {
		s, err := cl.Status(context.Background())
		return err == nil && len(s.Workers) == n
	})
}

func waitResult(t *testing.T, h *trellis.Handle, d time.Duration) *trellis.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	r, err := h.Wait(ctx)
	if err != nil {
		t.Fatalf("task %s: %v", h.Name, err)
	}
	return r
}
