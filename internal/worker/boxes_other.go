//go:build !linux

package worker

import "golang.org/x/sys/unix"

// openParent opens the sandboxes' directory for openat; no file system is
// taken to fill directory reads off Linux.
func openParent(dir string) (fd int, fills bool, err error) {
	fd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, false, err
	}
	return fd, false, nil
}
