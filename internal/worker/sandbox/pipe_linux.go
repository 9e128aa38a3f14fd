package sandbox

import (
	"os"
	"syscall"
)

// outputPipe makes a pipe for one output stream of a command: the read end
// in the runtime's poller, for this process to drain, and the write end,
// for the command, outside it (this process never writes to it): os.Pipe,
// which os/exec uses, registers and removes both ends with the poller, two
// system calls per end and task more.
func outputPipe() (r, w *os.File, err error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	if err := syscall.SetNonblock(p[0], true); err != nil {
		syscall.Close(p[0])
		syscall.Close(p[1])
		return nil, nil, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(p[0]), "|0"), os.NewFile(uintptr(p[1]), "|1"), nil
}
