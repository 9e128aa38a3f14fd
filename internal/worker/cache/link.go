package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Link places the entry name at dest inside a sandbox (dest must not
// exist; its parent is created): a hard link for a file, or a copy when
// linking fails (another file system); for a directory, the same tree of
// fresh directories with every file hard-linked (or copied) and every
// symbolic link recreated. The entry is pinned while Link runs.
func (c *Cache) Link(name, dest string) error {
	if !c.Pin(name) {
		return fmt.Errorf("link %s: %w", name, ErrNotFound)
	}
	defer c.Unpin(name)
	src := filepath.Join(c.files, name)
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	fi, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	if !fi.IsDir() {
		err = linkFile(src, dest, fi.Mode())
	} else {
		err = linkTree(src, dest)
	}
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	return nil
}

// linkFile hard-links src to dest, or copies it when that fails for a
// reason other than dest existing or src missing.
func linkFile(src, dest string, mode fs.FileMode) error {
	err := os.Link(src, dest)
	if err == nil || errors.Is(err, fs.ErrExist) || errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return copyFile(src, dest, readOnly(mode))
}

// linkTree recreates the cached tree src at dest, its files hard-linked.
func linkTree(src, dest string) error { return mirrorTree(src, dest, linkFile) }
