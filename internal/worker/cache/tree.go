package cache

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// treeSize returns the sum of the sizes of the regular files below dir.
func treeSize(dir string) (int64, error) {
	var size int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			size += fi.Size()
		}
		return nil
	})
	return size, err
}

// normalizeTree gives a directory about to enter the cache its cached
// form: directories 0755, regular files read-only, special files removed.
func normalizeTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch t := d.Type(); {
		case t.IsDir():
			return os.Chmod(p, 0o755)
		case t.IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			return os.Chmod(p, readOnly(fi.Mode()))
		case t&fs.ModeSymlink != 0:
			return nil
		}
		return os.Remove(p)
	})
}

// copyTree copies the file or directory src to dst, which must not exist:
// directories, regular files (writable, keeping the execute bit) and
// symbolic links.
func copyTree(src, dst string) error {
	return mirrorTree(src, dst, func(p, target string, fi fs.FileInfo) error {
		m := fs.FileMode(0o644)
		if fi.Mode()&0o100 != 0 {
			m = 0o755
		}
		return copyFile(p, target, m)
	})
}

// mirrorTree recreates the tree src at dst: directories are made, symbolic
// links copied as links, and each regular file placed by place, which gets
// what Lstat says of it.
func mirrorTree(src, dst string, place func(p, target string, fi fs.FileInfo) error) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch t := d.Type(); {
		case t.IsDir():
			return os.Mkdir(target, 0o755)
		case t.IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			return place(p, target, fi)
		case t&fs.ModeSymlink != 0:
			if p == src {
				return &fs.PathError{Op: "copy", Path: src, Err: fs.ErrInvalid}
			}
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		}
		return nil
	})
}

// copyFile copies the regular file src to the new file dst with mode.
func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	// A reflink shares the blocks until either side writes them. Where the
	// file system cannot (ext4, or across file systems), *os.File to
	// *os.File lets the kernel copy the bytes (copy_file_range).
	if err = clone(out, in); err != nil {
		_, err = io.Copy(out, in)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
	}
	return err
}

// removeAll removes each path (skipping ""), making directories writable
// first if a plain removal fails.
func removeAll(paths ...string) error {
	var first error
	for _, p := range paths {
		if p == "" {
			continue
		}
		err := os.RemoveAll(p)
		if err != nil {
			filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					os.Chmod(q, 0o755)
				}
				return nil
			})
			err = os.RemoveAll(p)
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}
