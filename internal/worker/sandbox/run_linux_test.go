package sandbox

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// Where the first run finds no file descriptor left (EMFILE) for /dev/null
// or for the output drainer's epoll instance, that run fails and says
// why, and the next run, with descriptors again, succeeds: the failure is
// not kept for the process's life. Each case runs in a process of its own
// (TestHelperNoFiles), as the first run of a process.
func TestRunAfterNoFilesLeft(t *testing.T) {
	for _, step := range []string{"devnull", "drainer"} {
		t.Run(step, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperNoFiles$", "-test.v")
			cmd.Env = append(os.Environ(), "SANDBOX_HELPER_NOFILES="+step)
			if out, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(out, []byte("--- PASS: TestHelperNoFiles")) {
				t.Errorf("helper process: %v\n%s", err, out)
			}
		})
	}
}

// TestHelperNoFiles is not a test: with SANDBOX_HELPER_NOFILES set it is
// a case of TestRunAfterNoFilesLeft.
func TestHelperNoFiles(t *testing.T) {
	step := os.Getenv("SANDBOX_HELPER_NOFILES")
	if step == "" {
		t.Skip("helper process")
	}
	dir := t.TempDir()
	want := map[string]string{"devnull": os.DevNull, "drainer": "epoll_create1"}[step]
	if step == "drainer" {
		if _, err := devNull(); err != nil {
			t.Fatal(err)
		}
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	next, err := syscall.Open(os.DevNull, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Close(next)
	low := lim
	low.Cur = uint64(next) // no descriptor left
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), Spec{Dir: dir, Command: "echo ok"})
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Run with no descriptor left = %v; want an error naming %s", err, want)
	}
	res, err := Run(context.Background(), Spec{Dir: dir, Command: "echo ok"})
	if err != nil || res.Kind != Success || string(res.Stdout) != "ok\n" {
		t.Errorf("the next Run = %v (%s), %q, %v; want success, %q", res.Kind, res.Message, res.Stdout, err, "ok\n")
	}
}
