//go:build !linux

package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// OpenOutput opens the regular file name inside root for reading and returns
// it with its size. A missing file yields an error wrapping ErrMissingOutput,
// a symlink in the path one wrapping ErrEscape, and anything but a regular
// file one wrapping ErrNotRegular. On this system the symlink check is
// Confine's, followed by an lstat of the file and a check that the opened
// file is the one inspected.
func OpenOutput(root, name string) (*os.File, int64, error) {
	path, err := Confine(root, name)
	if err != nil {
		return nil, 0, err
	}
	before, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, 0, missingOutput(name)
	case err != nil:
		return nil, 0, fmt.Errorf("sandbox: open output %q: %w", name, err)
	case before.Mode()&fs.ModeSymlink != 0:
		return nil, 0, refuseName(name, fmt.Sprintf("passes through symlink %q", name))
	case !before.Mode().IsRegular():
		return nil, 0, notRegular(name)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("sandbox: open output %q: %w", name, err)
	}
	after, err := f.Stat()
	if err != nil || !os.SameFile(before, after) {
		f.Close()
		return nil, 0, refuseName(name, "changed while it was opened")
	}
	return f, after.Size(), nil
}
