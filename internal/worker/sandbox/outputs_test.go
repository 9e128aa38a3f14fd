package sandbox

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Each run writes its stdout and stderr to pipes of its own: a process
// that escaped one run (setsid, no cgroup to catch it; run 0 ends once it
// writes) and still writes to its outputs reaches no other run's result.
func TestRunsHavePipesOfTheirOwn(t *testing.T) {
	dir := t.TempDir()
	res, err := Run(context.Background(), Spec{Dir: dir, Command: `readlink /proc/self/fd/1; readlink /proc/self/fd/2 >&2
setsid sh -c 'echo $$ > bg.pid; trap "" PIPE; while :; do echo leak; echo leak >&2; echo >> ticks; sleep 0.01; done' &
while [ ! -s ticks ]; do sleep 0.01; done`})
	if err != nil || res.Kind != Success {
		t.Fatalf("run 0: %v (%s), %v; want success", res.Kind, res.Message, err)
	}
	pid := readPID(t, dir, "bg.pid")
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	out, _, _ := strings.Cut(string(res.Stdout), "\n")
	errs, _, _ := strings.Cut(string(res.Stderr), "\n")
	if !strings.HasPrefix(out, "pipe:[") || !strings.HasPrefix(errs, "pipe:[") || out == errs {
		t.Errorf("run 0 wrote to %q and %q; want two pipes", out, errs)
	}
	os.Remove(dir + "/bg.pid")
	// The escaped writer runs on (deaf to SIGPIPE once run 0's pipes are
	// closed), writing while run 1 runs (run 1 waits for three more ticks
	// of it): it reaches nothing but run 0's pipes.
	res, err = Run(context.Background(), Spec{Dir: dir, Command: `while [ ! -s ticks ]; do sleep 0.01; done
n=$(wc -l < ticks); i=0
while [ "$(wc -l < ticks)" -lt $((n+3)) ]; do i=$((i+1)); [ $i -lt 300 ] || exit 1; sleep 0.01; done
readlink /proc/self/fd/1; echo err >&2`})
	if got := strings.TrimSpace(string(res.Stdout)); err != nil || res.Kind != Success || got == out || got == errs || !strings.HasPrefix(got, "pipe:[") || string(res.Stderr) != "err\n" {
		t.Errorf("run 1 = %v (%s), stdout %q, stderr %q, %v; want success, a pipe of its own, %q", res.Kind, res.Message, res.Stdout, res.Stderr, err, "err\n")
	}
}

// A command that reopens its stdout or stderr (/dev/stderr) opens the same
// pipe, whether it appends or truncates: nothing written before is lost.
func TestRunOutputReopened(t *testing.T) {
	for _, command := range []string{
		"echo a >&2; echo b >>/dev/stderr; echo c >&2",
		"echo a >&2; echo b >/dev/stderr; echo c >&2",
	} {
		res, err := Run(context.Background(), Spec{Dir: t.TempDir(), Command: command})
		if want := "a\nb\nc\n"; err != nil || res.Kind != Success || string(res.Stderr) != want {
			t.Errorf("Run(%q) = %v, stderr %q, %v; want success, %q", command, res.Kind, res.Stderr, err, want)
		}
	}
}

// Runs at once that each write far more than a pipe holds, to both
// streams, all get their own tails: the one drainer keeps every pipe
// flowing.
func TestRunsDrainedAtOnce(t *testing.T) {
	const n = 8
	errs := make(chan string, n)
	for i := range n {
		go func() { // exits when its run ends
			cmd := `i=0; while [ $i -lt 3000 ]; do echo "out ` + strconv.Itoa(i) + ` $i"; echo "err $i" >&2; i=$((i+1)); done`
			res, err := Run(context.Background(), Spec{Dir: t.TempDir(), Command: cmd, OutputLimit: 4096})
			wantOut, wantErr := "out "+strconv.Itoa(i)+" 2999\n", "err 2999\n"
			switch {
			case err != nil || res.Kind != Success:
				errs <- "run " + strconv.Itoa(i) + ": " + res.Message
			case !strings.HasSuffix(string(res.Stdout), wantOut) || !strings.HasSuffix(string(res.Stderr), wantErr) || len(res.Stdout) != 4096 || len(res.Stderr) != 4096 || !res.StdoutTruncated || !res.StderrTruncated:
				errs <- "run " + strconv.Itoa(i) + ": stdout ends " + strconv.Quote(string(res.Stdout[max(0, len(res.Stdout)-20):])) + ", stderr ends " + strconv.Quote(string(res.Stderr[max(0, len(res.Stderr)-20):])) + "; want 4096 bytes each, truncated, ending " + strconv.Quote(wantOut) + " and " + strconv.Quote(wantErr)
			default:
				errs <- ""
			}
		}()
	}
	for range n {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
}
