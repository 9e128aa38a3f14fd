package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// OpenOutput opens the regular file name inside root for reading and returns
// it with its size. It walks the path one component at a time, each opened
// relative to the previous one with O_NOFOLLOW, so a symlink anywhere in the
// path (the last component included) is refused even if the sandbox changes
// meanwhile. A missing file yields an error wrapping ErrMissingOutput, a
// symlink one wrapping ErrEscape, and anything but a regular file one
// wrapping ErrNotRegular. FIFOs and devices are refused without blocking.
func OpenOutput(root, name string) (*os.File, int64, error) {
	if err := ValidName(name); err != nil {
		return nil, 0, err
	}
	rel := filepath.Clean(name)
	dirfd, err := syscall.Open(root, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("sandbox: open sandbox %q: %w", root, err)
	}
	defer func() {
		if dirfd >= 0 {
			syscall.Close(dirfd)
		}
	}()
	for i := 0; ; {
		j := strings.IndexByte(rel[i:], '/')
		if j < 0 {
			break
		}
		j += i
		fd, err := openat(dirfd, rel[i:j], syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW)
		if err != nil {
			if err == syscall.ENOTDIR && isSymlink(filepath.Join(root, rel[:j])) {
				// O_DIRECTORY is checked before O_NOFOLLOW.
				err = syscall.ELOOP
			}
			return nil, 0, outputError(name, rel[:j], err)
		}
		syscall.Close(dirfd)
		dirfd, i = fd, j+1
	}
	last := rel[strings.LastIndexByte(rel, '/')+1:]
	fd, err := openat(dirfd, last, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY)
	if err != nil {
		return nil, 0, outputError(name, rel, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return nil, 0, fmt.Errorf("sandbox: output %q: %w", name, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		syscall.Close(fd)
		return nil, 0, notRegular(name)
	}
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return nil, 0, fmt.Errorf("sandbox: output %q: %w", name, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(root, rel)), st.Size, nil
}

// openat opens path relative to dirfd with O_CLOEXEC, retrying on EINTR.
func openat(dirfd int, path string, flags int) (int, error) {
	for {
		fd, err := syscall.Openat(dirfd, path, flags|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// isSymlink reports whether path is a symlink. It only picks the error to
// report for a component that could not be opened as a directory; the
// refusal itself does not depend on it.
func isSymlink(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}

// outputError describes a failure to open component prefix of name.
func outputError(name, prefix string, err error) error {
	switch {
	case errors.Is(err, syscall.ELOOP):
		return refuseName(name, fmt.Sprintf("passes through symlink %q", prefix))
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENOTDIR):
		return missingOutput(name)
	case errors.Is(err, syscall.ENXIO):
		return notRegular(name) // a socket, or a FIFO with no writer
	}
	return fmt.Errorf("sandbox: open output %q: %w", name, err)
}
