package libhost

import (
	"errors"
	"strings"
)

// Errors a Call or Start returns, to be checked with errors.Is. The errors
// about the process itself are *ExitError values whose Kind is one of them.
var (
	// ErrStartFailed: the library exited, printed a bad handshake line, or
	// did not hand-shake in time.
	ErrStartFailed = errors.New("libhost: library failed to start")
	// ErrCrashed: the library process died while serving. The worker
	// restarts it and retries the calls within their retry budget.
	ErrCrashed = errors.New("libhost: library crashed")
	// ErrNotSent: the library died before the call reached it (the call
	// waited for a slot, or to be written): it did not run, and may run
	// elsewhere as if it never started. It comes with the *ExitError.
	ErrNotSent = errors.New("libhost: the call never reached the library")
	// ErrUnresponsive: the host killed the library because a cancelled call
	// did not answer within Spec.CancelGrace. It matches ErrCrashed too.
	ErrUnresponsive error = &kindError{msg: "libhost: library killed because a cancelled call did not stop", parent: ErrCrashed}
	// ErrResourceExceeded: the library's process group went over
	// Spec.MemoryMB and was killed.
	ErrResourceExceeded = errors.New("libhost: library exceeded its memory limit")
	// ErrProtocol: the library wrote a malformed frame (or a result for an
	// unknown call) and was killed.
	ErrProtocol = errors.New("libhost: malformed frame from library")
	// ErrStopped: Stop was called; calls still in flight when the library
	// exited fail with it, and later calls too.
	ErrStopped = errors.New("libhost: library stopped")
	// ErrTimeout: the call's time limit passed. The library was sent a
	// cancel.
	ErrTimeout = errors.New("libhost: call timed out")
	// ErrCancelled: the caller's context was done. The library was sent a
	// cancel (if it had the call already).
	ErrCancelled = errors.New("libhost: call cancelled")
	// ErrUnknownFunction: the library did not announce the function.
	ErrUnknownFunction = errors.New("libhost: unknown function")
)

// kindError is a sentinel that also matches a more general one.
type kindError struct {
	msg    string
	parent error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.parent }

// CallError is a function's own failure: it returned an error or raised.
type CallError struct {
	// Message is the error text the library sent.
	Message string
	// Traceback is where it failed, when the library sent one (the Go SDK
	// does for panics, the Python SDK for exceptions).
	Traceback string
}

// Error returns the message.
func (e *CallError) Error() string { return e.Message }

// ExitError says why a library process is gone, or failed to start. It
// matches its Kind with errors.Is.
type ExitError struct {
	// Kind is ErrStartFailed, ErrCrashed, ErrUnresponsive,
	// ErrResourceExceeded, ErrProtocol or ErrStopped.
	Kind error
	// Reason is what the host saw or did, e.g. "no handshake within 300ms"
	// or "resident memory 312 MB exceeded the limit of 100 MB"; empty when
	// the process just exited.
	Reason string
	// Status is how the process ended, e.g. "exit status 3" or "killed by
	// signal 9"; empty if it could not be started.
	Status string
	// Stderr is the end of its standard error, at most 1 KiB, from a line
	// start where possible; Host.Stderr has more.
	Stderr string
}

// Error returns the kind, the reason, the status and the stderr tail.
func (e *ExitError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	if e.Status != "" {
		b.WriteString(" (")
		b.WriteString(e.Status)
		b.WriteString(")")
	}
	if e.Stderr != "" {
		b.WriteString("; stderr: ")
		b.WriteString(e.Stderr)
	}
	return b.String()
}

// Unwrap returns Kind.
func (e *ExitError) Unwrap() error { return e.Kind }
