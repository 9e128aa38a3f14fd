package sandbox

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// openOutputFile opens a file with no name in dir for a command's output:
// O_TMPFILE, or, where the file system refuses it, one created and
// unlinked at once.
func openOutputFile(dir string) (int, error) {
	fd, err := syscall.Open(dir, unix.O_TMPFILE|syscall.O_RDWR|syscall.O_APPEND|syscall.O_CLOEXEC, 0o600)
	if err == nil {
		return fd, nil
	}
	return createUnlinked(dir)
}

// punchHole frees the blocks of fd before end, keeping its size.
func punchHole(fd int, end int64) error {
	for {
		err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, end)
		if err != syscall.EINTR {
			return err
		}
	}
}
