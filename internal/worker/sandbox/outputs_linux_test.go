package sandbox

import (
	"syscall"
	"testing"
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
