package libhost

import (
	"bytes"
	"sync"
)

// Sizes of the kept standard error.
const (
	stderrLimit = 64 << 10 // Host.Stderr
	errorStderr = 1 << 10  // ExitError.Stderr
)

// tail is an io.Writer that keeps about the last limit bytes written, safe
// for one writer (os/exec's copying goroutine) and concurrent readers.
type tail struct {
	limit int
	mu    sync.Mutex // guards buf
	buf   []byte     // holds at most 2*limit bytes between writes
}

// Write keeps the end of p and never fails.
func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(p) >= t.limit {
		t.buf = append(t.buf[:0], p[len(p)-t.limit:]...)
		return len(p), nil
	}
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.limit {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.limit:]...)
	}
	return len(p), nil
}

// Bytes returns a copy of the last limit bytes.
func (t *tail) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > t.limit {
		b = b[len(b)-t.limit:]
	}
	return bytes.Clone(b)
}

// errorTail returns the end of b for an error message: at most errorStderr
// bytes, starting after a line break when the cut falls inside a line, with
// surrounding white space trimmed.
func errorTail(b []byte) string {
	if len(b) > errorStderr {
		b = b[len(b)-errorStderr:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 && i < len(b)-1 {
			b = b[i+1:]
		}
	}
	return string(bytes.TrimSpace(b))
}
