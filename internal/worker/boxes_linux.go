package worker

import "golang.org/x/sys/unix"

// openParent opens the sandboxes' directory for openat (O_PATH).
func openParent(dir string) (fd int, err error) {
	return unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}
