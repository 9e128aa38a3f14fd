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
// symbolic link recreated. The entry is pinned while Link runs. The Stamp
// it returns records the files it hard-linked, for Check.
func (c *Cache) Link(name, dest string) (Stamp, error) {
	if !c.Pin(name) {
		return Stamp{}, fmt.Errorf("link %s: %w", name, ErrNotFound)
	}
	defer c.Unpin(name)
	src := filepath.Join(c.files, name)
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return Stamp{}, fmt.Errorf("link %s: %w", name, err)
	}
	fi, err := os.Lstat(src)
	if err != nil {
		return Stamp{}, fmt.Errorf("link %s: %w", name, err)
	}
	s := Stamp{name: name, root: fi}
	if !fi.IsDir() {
		err = s.linkFile(src, dest, fi)
	} else {
		err = mirrorTree(src, dest, s.linkFile)
	}
	if err != nil {
		return Stamp{}, fmt.Errorf("link %s: %w", name, err)
	}
	return s, nil
}

// Copy places a private copy of the entry name at dest (dest must not
// exist; its parent is created), writable, for a command that changes the
// file in place: a reflink where the file system can share the blocks
// (FICLONE: Btrfs, XFS), else a copy of the bytes; for a directory, the
// same for every file. Nothing the command does to it reaches the cache.
func (c *Cache) Copy(name, dest string) error {
	if !c.Pin(name) {
		return fmt.Errorf("copy %s: %w", name, ErrNotFound)
	}
	defer c.Unpin(name)
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return fmt.Errorf("copy %s: %w", name, err)
	}
	if err := copyTree(filepath.Join(c.files, name), dest); err != nil {
		return fmt.Errorf("copy %s: %w", name, err)
	}
	return nil
}

// linkFile hard-links src to dest and stamps it, or copies it when linking
// fails for a reason other than dest existing or src missing: a copy is
// the sandbox's own and needs no stamp.
func (s *Stamp) linkFile(src, dest string, fi fs.FileInfo) error {
	err := os.Link(src, dest)
	if err == nil {
		s.files = append(s.files, linked{path: src, fi: fi})
		return nil
	}
	if errors.Is(err, fs.ErrExist) || errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return copyFile(src, dest, readOnly(fi.Mode()))
}
