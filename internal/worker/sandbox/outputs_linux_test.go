package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// A pipeReader whose read came back short does not read again: the pipe
// was empty then, and the drainer is woken again for what comes later
// (collect reads with a new reader). A full read is followed by another.
func TestPipeReaderStopsAfterShortRead(t *testing.T) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(p[0]); syscall.Close(p[1]) })
	write := func(s string) {
		t.Helper()
		if _, err := syscall.Write(p[1], []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	write("abcdef")
	r := &pipeReader{fd: p[0], left: -1}
	buf := make([]byte, 4)
	if n, err := r.Read(buf); n != 4 || err != nil {
		t.Fatalf("Read = %d, %v; want 4, nil (a full read)", n, err)
	}
	buf = make([]byte, 100)
	if n, err := r.Read(buf); n != 2 || err != nil {
		t.Fatalf("Read = %d, %v; want 2, nil (a short read)", n, err)
	}
	write("gh") // as if written after the short read
	if n, err := r.Read(buf); n != 0 || err != errAgain {
		t.Errorf("Read after a short read = %d, %v; want 0, errAgain with no read", n, err)
	}
	b := newTailBuffer(100)
	if _, err := b.ReadFrom(&pipeReader{fd: p[0], left: -1}); err != errAgain || string(b.Bytes()) != "gh" {
		t.Errorf("a new reader's ReadFrom = %q, %v; want %q, errAgain", b.Bytes(), err, "gh")
	}
}

// The drainer waits parked in the runtime's poller ("IO wait"), on its
// pollSet, not in a system call on a thread of its own; and it still
// reads what runs write as they write it.
func TestDrainerHoldsNoThread(t *testing.T) {
	res, err := Run(context.Background(), Spec{Dir: t.TempDir(), Command: "echo out"})
	if err != nil || string(res.Stdout) != "out\n" {
		t.Fatalf("Run = %q, %v; want %q", res.Stdout, err, "out\n")
	}
	pollUntil(t, 5*time.Second, "the drainer to park in the poller", func() bool {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
			if bytes.Contains(g, []byte("(*drainer).run")) {
				return bytes.Contains(g, []byte("[IO wait"))
			}
		}
		return false
	})
	// 8 runs at once, each writing more than a pipe holds while it runs.
	errs := make(chan error, 8)
	for range 8 {
		go func() { // exits when its run ends
			res, err := Run(context.Background(), Spec{Dir: t.TempDir(), Command: "head -c 200000 /dev/zero; echo end"})
			if err == nil && (res.Kind != Success || !bytes.HasSuffix(res.Stdout, []byte("end\n"))) {
				err = fmt.Errorf("run = %v (%s), stdout ending %q; want success, ending %q", res.Kind, res.Message, res.Stdout[max(0, len(res.Stdout)-8):], "end\n")
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
