//go:build !linux

package worker

import "golang.org/x/sys/unix"

// openParent opens the sandboxes' directory for openat (O_PATH is Linux's).
func openParent(dir string) (fd int, err error) {
	return unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}
