package journal

import (
	"os"
	"syscall"
)

// fdatasync makes f's data durable, and its size, without the other
// metadata an fsync writes.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
