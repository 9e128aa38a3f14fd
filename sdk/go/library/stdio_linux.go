package library

import (
	"context"
	"os"
	"syscall"
)

// serveStdio serves on private copies of descriptors 0 and 1, after pointing
// descriptor 0 at /dev/null and descriptor 1 at stderr: stray prints, and
// child processes that read their stdin, cannot corrupt the protocol. The
// copies of pipes are made non-blocking, so that Go's poller waits on them
// rather than a blocked thread (which would hold up a call's goroutine when
// GOMAXPROCS is 1). If the descriptors cannot be rearranged it serves on
// os.Stdin and os.Stdout themselves.
func (l *Library) serveStdio() error {
	in, out := protocolFiles()
	return l.ServeIO(context.Background(), in, out)
}

func protocolFiles() (in, out *os.File) {
	syscall.ForkLock.RLock() // no child may inherit a copy before it is close-on-exec
	defer syscall.ForkLock.RUnlock()
	in, out = os.Stdin, os.Stdout
	if fd, ok := moveAside(0, "/dev/null", syscall.O_RDONLY); ok {
		in = os.NewFile(uintptr(fd), "/dev/stdin (protocol)")
	}
	if fd, ok := moveAside(1, "", 0); ok {
		out = os.NewFile(uintptr(fd), "/dev/stdout (protocol)")
	}
	return in, out
}

// moveAside returns a close-on-exec copy of fd, non-blocking if it is a pipe
// or socket, and points fd at the file named by replacement (or at stderr
// when replacement is empty).
func moveAside(fd int, replacement string, mode int) (int, bool) {
	cp, err := syscall.Dup(fd)
	if err != nil {
		return 0, false
	}
	syscall.CloseOnExec(cp)
	src := 2
	if replacement != "" {
		if src, err = syscall.Open(replacement, mode|syscall.O_CLOEXEC, 0); err != nil {
			syscall.Close(cp)
			return 0, false
		}
		defer syscall.Close(src)
	}
	if err := syscall.Dup3(src, fd, 0); err != nil {
		syscall.Close(cp)
		return 0, false
	}
	var st syscall.Stat_t
	if syscall.Fstat(cp, &st) == nil && (st.Mode&syscall.S_IFMT == syscall.S_IFIFO || st.Mode&syscall.S_IFMT == syscall.S_IFSOCK) {
		syscall.SetNonblock(cp, true) // a pipe's description is ours alone now
	}
	return cp, true
}
