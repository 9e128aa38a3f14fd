package sandbox

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Each run writes its stdout and stderr to files of its own that have no
// name: a process that escaped one run (setsid, no cgroup to catch it) and
// still writes to its outputs reaches no other run's result, and nothing
// of them is left in the sandbox.
func TestRunsHaveOutputFilesOfTheirOwn(t *testing.T) {
	dir := t.TempDir()
	res, err := Run(context.Background(), Spec{Dir: dir, Command: `readlink /proc/self/fd/1; readlink /proc/self/fd/2 >&2
setsid sh -c 'while :; do echo leak; echo leak >&2; sleep 0.01; done' & echo $! > bg.pid`})
	if err != nil || res.Kind != Success {
		t.Fatalf("run 0: %v (%s), %v; want success", res.Kind, res.Message, err)
	}
	pid := readPID(t, dir, "bg.pid")
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	for _, p := range []string{string(res.Stdout), string(res.Stderr)} {
		if line, _, _ := strings.Cut(p, "\n"); !strings.HasPrefix(line, dir+"/") || !strings.HasSuffix(line, " (deleted)") {
			t.Errorf("run 0 wrote to %q; want a file with no name in %s", line, dir)
		}
	}
	os.Remove(dir + "/bg.pid")
	// The escaped writer runs on: it leaks into nothing but run 0's files.
	res, err = Run(context.Background(), Spec{Dir: dir, Command: `while [ ! -e /proc/` + strconv.Itoa(pid) + ` ]; do :; done; sleep 0.1; echo mine; echo err >&2; ls -A`})
	if err != nil || res.Kind != Success || string(res.Stdout) != "mine\n" || string(res.Stderr) != "err\n" {
		t.Errorf("run 1 = %v (%s), stdout %q, stderr %q, %v; want success, %q, %q (an empty sandbox)", res.Kind, res.Message, res.Stdout, res.Stderr, err, "mine\n", "err\n")
	}
}

// Output files are appended to: a command that reopens its stdout or
// stderr with >> keeps what was written before, and one that reopens it
// with > (truncating it, as for any file) leaves no gap of zeros before
// what follows.
func TestRunOutputReopened(t *testing.T) {
	tests := []struct {
		name, command, want string
	}{
		{name: "appending", command: "echo a >&2; echo b >>/dev/stderr; echo c >&2", want: "a\nb\nc\n"},
		{name: "truncating", command: "echo a >&2; echo b >/dev/stderr; echo c >&2", want: "b\nc\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Run(context.Background(), Spec{Dir: t.TempDir(), Command: tt.command})
			if err != nil || res.Kind != Success || string(res.Stderr) != tt.want {
				t.Errorf("Run(%q) = %v, stderr %q, %v; want success, %q", tt.command, res.Kind, res.Stderr, err, tt.want)
			}
		})
	}
}

// A run that writes far more than is kept does not fill the disk with it:
// the one sampler punches a hole over what lies before the kept tail, and
// the tail and the truncation flag come out as ever.
func TestRunOutputTrimmed(t *testing.T) {
	// The command writes 4 MiB, then waits until its stdout holds less
	// than 2 MiB on disk (stat -L of the shell's fd 1: the file itself).
	command := `head -c 4194304 /dev/zero | tr '\0' x
i=0
while [ "$(stat -L -c %b /proc/$$/fd/1)" -gt 4096 ]; do
	i=$((i+1)); [ $i -lt 1000 ] || { echo "never trimmed: $(stat -L -c %b /proc/$$/fd/1) blocks" >&2; exit 1; }
	sleep 0.01
done
printf end`
	res, err := Run(context.Background(), Spec{Dir: t.TempDir(), Command: command, OutputLimit: 1000, PollInterval: time.Millisecond})
	if err != nil || res.Kind != Success {
		t.Fatalf("Run = %v (%s), stderr %q, %v; want success", res.Kind, res.Message, res.Stderr, err)
	}
	if want := strings.Repeat("x", 997) + "end"; string(res.Stdout) != want || !res.StdoutTruncated {
		t.Errorf("stdout %q (truncated %v); want %q, truncated", res.Stdout, res.StdoutTruncated, want)
	}
}

// Where O_TMPFILE is refused, an output file is created and unlinked at
// once: nothing is left in the directory, and the file works.
func TestCreateUnlinked(t *testing.T) {
	dir := t.TempDir()
	fd, err := createUnlinked(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("directory holds %v, %v; want nothing", ents, err)
	}
	syscall.Write(fd, []byte("abcdef"))
	if got, trunc := readTail(fd, 4); string(got) != "cdef" || !trunc {
		t.Errorf("readTail = %q, %v; want %q, true", got, trunc, "cdef")
	}
	if got, trunc := readTail(fd, 6); string(got) != "abcdef" || trunc {
		t.Errorf("readTail = %q, %v; want %q, false", got, trunc, "abcdef")
	}
}
