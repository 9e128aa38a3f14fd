package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"trellis"
	"trellis/internal/manager"
	"trellis/internal/worker"
	"trellis/internal/worker/resources"
	"trellis/sdk/python"
)

// callLibSource is a Python library for the `trellis call` test.
const callLibSource = `import trellis_library as tl

lib = tl.Library("clilib")


@lib.function
def add(args):
    return args[0] + args[1]


def check(x):
    raise ValueError("bad input: %r" % (x,))


@lib.function
def fail(args):
    return check(args)


if __name__ == "__main__":
    lib.serve()
`

// TestCallPython runs `trellis call` against a manager and a worker in this
// process, with a secret the test knows, calling a Python library.
func TestCallPython(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, _, secretFile := startPythonLibrary(ctx, t, &trellis.Library{})

	// call runs the command and returns its standard output and error
	// output (a traceback) and its error.
	call := func(args ...string) (string, string, error) {
		t.Helper()
		cmd := callCmd()
		cmd.SilenceUsage, cmd.SilenceErrors = true, true // as under the root command
		var stdout, stderr bytes.Buffer
		cmd.SetOut(&stdout)
		cmd.SetErr(&stderr)
		cmd.SetArgs(append([]string{"--secret-file", secretFile, "--timeout", "20s", m.Addr(), "clilib"}, args...))
		err := cmd.Execute()
		return stdout.String(), stderr.String(), err
	}

	t.Run("result", func(t *testing.T) {
		stdout, _, err := call("add", "[2,3]")
		if err != nil || stdout != "5\n" {
			t.Errorf("trellis call clilib add [2,3]: %q, %v; want \"5\\n\"", stdout, err)
		}
	})
	t.Run("exception", func(t *testing.T) {
		stdout, stderr, err := call("fail", "42")
		var ce *trellis.CallError
		if !errors.As(err, &ce) || ce.Result.Kind != trellis.Failed || ce.Result.Message != "ValueError: bad input: 42" {
			t.Errorf("trellis call clilib fail 42: %v; want the call failed with ValueError: bad input: 42", err)
		}
		if stdout != "" {
			t.Errorf("stdout %q; want nothing", stdout)
		}
		for _, w := range []string{"Traceback (most recent call last):", ", in check\n", "ValueError: bad input: 42\n"} {
			if !strings.Contains(stderr, w) {
				t.Errorf("stderr %q lacks %q from the traceback", stderr, w)
			}
		}
	})
	t.Run("arguments that are not JSON", func(t *testing.T) {
		if _, _, err := call("add", "[2,"); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
			t.Errorf("trellis call clilib add [2,: %v; want an error saying the arguments are not valid JSON", err)
		}
	})
}

// startPythonLibrary starts a manager and a worker in this process, with a
// secret in a file, and installs lib (its name, command and inputs set
// here) as the Python library of callLibSource. It skips the test when
// python3 is missing.
func startPythonLibrary(ctx context.Context, t *testing.T, lib *trellis.Library) (*manager.Manager, *trellis.Client, string) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Skipf("python3 does not run: %v", err)
	}
	py := strings.TrimSpace(string(out))
	m, secret, secretFile := listenManager(t)
	w, err := worker.New(worker.Config{Manager: m.Addr(), Secret: secret, Name: "w1", FileServer: "127.0.0.1:0",
		Resources: resources.Resources{MilliCores: 2000, MemoryMB: 1024, DiskMB: 1024}, Workdir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { m.Run(runCtx) }) // exits when stop is called
	wg.Go(func() { w.Run(runCtx) }) // likewise
	t.Cleanup(func() { stop(); wg.Wait() })

	c, err := trellis.Dial(ctx, m.Addr(), trellis.WithSecret(secret))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	lib.Name, lib.Command = "clilib", "exec '"+py+"' -S lib.py"
	lib.Inputs = []trellis.Mount{
		{File: trellis.Buffer(python.SDK), Path: "trellis_library.py"},
		{File: trellis.Buffer([]byte(callLibSource)), Path: "lib.py"},
	}
	if err := c.Install(ctx, lib); err != nil {
		t.Fatal(err)
	}
	return m, c, secretFile
}

// listenManager makes a manager listening on 127.0.0.1 with a secret,
// and the secret's file.
func listenManager(t *testing.T) (m *manager.Manager, secret, secretFile string) {
	t.Helper()
	secret = "cli-test-secret"
	secretFile = filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := manager.Listen(manager.Config{Listen: "127.0.0.1:0", Secret: secret, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return m, secret, secretFile
}
