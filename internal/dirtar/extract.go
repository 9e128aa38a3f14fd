package dirtar

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// ErrUnsafe is wrapped by the refusal of an entry that could write, or
// point, outside the destination.
var ErrUnsafe = errors.New("dirtar: unsafe entry")

// ErrTooLarge is wrapped when an archive unpacks to more bytes, or more
// entries, than allowed.
var ErrTooLarge = errors.New("dirtar: too large")

// MaxEntries bounds the entries one archive may unpack to.
const MaxEntries = 1 << 20

// bufSize is the copy buffer of every data path in the package.
const bufSize = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// unsafeEntry is the refusal of one entry.
func unsafeEntry(name, why string) error {
	return fmt.Errorf("entry %q: %s: %w", name, why, ErrUnsafe)
}

// Extract runs fill with an Extractor writing into a temporary sibling of
// dest, which must not exist yet (its parent must), and renames that to dest
// when fill succeeds. On failure it removes what was written. maxBytes <= 0
// means no limit on the bytes written to regular files.
func Extract(ctx context.Context, dest string, maxBytes int64, fill func(x *Extractor) error) error {
	if _, err := os.Lstat(dest); err == nil {
		return fmt.Errorf("destination %s: %w", dest, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".part-")
	if err != nil {
		return err
	}
	x := &Extractor{
		ctx:   ctx,
		root:  tmp,
		max:   maxBytes,
		dirs:  map[string]bool{"": true},
		files: make(map[string]bool),
	}
	err = fill(x)
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = os.Chmod(tmp, 0o755)
	}
	if err == nil {
		err = os.Rename(tmp, dest)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return err
	}
	return nil
}

// Extractor writes the entries of one archive under its root, enforcing the
// package's safety rules (see doc.go). Extract makes one; it is used by one
// goroutine.
type Extractor struct {
	ctx     context.Context
	root    string
	max     int64           // bytes allowed; <= 0: no limit
	total   int64           // bytes written to regular files so far
	entries int             // entries seen so far
	dirs    map[string]bool // directories known to be real (not links), by clean name
	files   map[string]bool // regular files written, by clean name: hard link targets
}

// entryName checks an entry's name and returns it cleaned; "" means the
// root itself ("./" is common at the head of tar files).
func entryName(raw string) (string, error) {
	switch {
	case raw == "":
		return "", unsafeEntry(raw, "empty name")
	case strings.IndexByte(raw, 0) >= 0:
		return "", unsafeEntry(raw, "NUL byte in name")
	case strings.HasPrefix(raw, "/"):
		return "", unsafeEntry(raw, "absolute name")
	}
	for _, el := range strings.Split(raw, "/") {
		if el == ".." {
			return "", unsafeEntry(raw, `".." element in name`)
		}
	}
	if c := path.Clean(raw); c != "." {
		return c, nil
	}
	return "", nil
}

// linkTargetOK reports whether a symbolic link at name (clean, relative to
// the root) with target stays inside the root under the package's rule.
func linkTargetOK(name, target string) (bool, string) {
	switch {
	case target == "":
		return false, "empty link target"
	case strings.IndexByte(target, 0) >= 0:
		return false, "NUL byte in link target"
	case strings.HasPrefix(target, "/"):
		return false, fmt.Sprintf("absolute link target %q", target)
	}
	up, named := 0, false
	for _, el := range strings.Split(target, "/") {
		switch el {
		case "", ".":
		case "..":
			if named {
				return false, fmt.Sprintf(`link target %q has ".." after a name`, target)
			}
			up++
		default:
			named = true
		}
	}
	depth := 0
	if d := path.Dir(name); d != "." {
		depth = strings.Count(d, "/") + 1
	}
	if up > depth {
		return false, fmt.Sprintf("link target %q leaves the destination", target)
	}
	return true, ""
}

// Skip accounts for one more entry that is not written (a device, a FIFO).
func (x *Extractor) Skip(raw string) error {
	if err := x.ctx.Err(); err != nil {
		return err
	}
	x.entries++
	if x.entries > MaxEntries {
		return fmt.Errorf("entry %q: more than %d entries: %w", raw, MaxEntries, ErrTooLarge)
	}
	return nil
}

// parents makes sure every directory above name exists and is a real
// directory, creating missing ones.
func (x *Extractor) parents(raw, name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	if x.dirs[dir] {
		return nil
	}
	p := ""
	for _, el := range strings.Split(dir, "/") {
		if p == "" {
			p = el
		} else {
			p += "/" + el
		}
		if x.dirs[p] {
			continue
		}
		full := filepath.Join(x.root, p)
		fi, err := os.Lstat(full)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(full, 0o755); err != nil {
				return fmt.Errorf("entry %q: %w", raw, err)
			}
		case err != nil:
			return fmt.Errorf("entry %q: %w", raw, err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return unsafeEntry(raw, fmt.Sprintf("path passes through the symbolic link %q", p))
		case !fi.IsDir():
			return fmt.Errorf("entry %q: %q is not a directory", raw, p)
		}
		x.dirs[p] = true
	}
	return nil
}

// clear removes what sits at name before a non-directory entry takes its
// place. A directory is never replaced.
func (x *Extractor) clear(raw, name string) (string, error) {
	if name == "" {
		return "", unsafeEntry(raw, "names the destination itself")
	}
	if err := x.parents(raw, name); err != nil {
		return "", err
	}
	full := filepath.Join(x.root, name)
	fi, err := os.Lstat(full)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return full, nil
	case err != nil:
		return "", fmt.Errorf("entry %q: %w", raw, err)
	case fi.IsDir():
		return "", fmt.Errorf("entry %q: would replace a directory", raw)
	}
	if err := os.Remove(full); err != nil {
		return "", fmt.Errorf("entry %q: %w", raw, err)
	}
	delete(x.files, name)
	return full, nil
}

// Dir creates the directory entry raw.
func (x *Extractor) Dir(raw string) error {
	if err := x.Skip(raw); err != nil {
		return err
	}
	name, err := entryName(raw)
	if err != nil || name == "" {
		return err
	}
	if x.dirs[name] {
		return nil
	}
	if err := x.parents(raw, name); err != nil {
		return err
	}
	full := filepath.Join(x.root, name)
	fi, err := os.Lstat(full)
	switch {
	case err == nil && fi.IsDir():
	case err == nil:
		if err := os.Remove(full); err != nil {
			return fmt.Errorf("entry %q: %w", raw, err)
		}
		delete(x.files, name)
		fallthrough
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(full, 0o755); err != nil {
			return fmt.Errorf("entry %q: %w", raw, err)
		}
	default:
		return fmt.Errorf("entry %q: %w", raw, err)
	}
	x.dirs[name] = true
	return nil
}

// File writes the regular file entry raw from r, mode 0755 when exec is
// set and 0644 otherwise (under the umask). size is what the archive
// declares, -1 when it does not.
func (x *Extractor) File(raw string, exec bool, size int64, r io.Reader) error {
	if err := x.Skip(raw); err != nil {
		return err
	}
	name, err := entryName(raw)
	if err != nil {
		return err
	}
	if x.max > 0 && size > x.max-x.total {
		return fmt.Errorf("entry %q: more than %d bytes in all: %w", raw, x.max, ErrTooLarge)
	}
	full, err := x.clear(raw, name)
	if err != nil {
		return err
	}
	perm := fs.FileMode(0o644)
	if exec {
		perm = 0o755
	}
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, perm)
	if err != nil {
		return fmt.Errorf("entry %q: %w", raw, err)
	}
	n, err := x.copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	x.total += n
	if err != nil {
		return fmt.Errorf("entry %q: %w", raw, err)
	}
	x.files[name] = true
	return nil
}

// copy copies r into w, at most the bytes left under the limit, checking
// the context between buffers.
func (x *Extractor) copy(w io.Writer, r io.Reader) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var n int64
	for {
		if err := x.ctx.Err(); err != nil {
			return n, err
		}
		m, rerr := r.Read(buf)
		if m > 0 {
			if x.max > 0 && x.total+n+int64(m) > x.max {
				return n, fmt.Errorf("more than %d bytes in all: %w", x.max, ErrTooLarge)
			}
			if _, err := w.Write(buf[:m]); err != nil {
				return n, err
			}
			n += int64(m)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// Symlink creates the symbolic link entry raw pointing to target.
func (x *Extractor) Symlink(raw, target string) error {
	if err := x.Skip(raw); err != nil {
		return err
	}
	name, err := entryName(raw)
	if err != nil {
		return err
	}
	if name == "" {
		return unsafeEntry(raw, "names the destination itself")
	}
	if ok, why := linkTargetOK(name, target); !ok {
		return unsafeEntry(raw, why)
	}
	full, err := x.clear(raw, name)
	if err != nil {
		return err
	}
	if err := os.Symlink(target, full); err != nil {
		return fmt.Errorf("entry %q: %w", raw, err)
	}
	return nil
}

// Hardlink creates the hard link entry raw to the earlier regular file
// target (a name relative to the archive's root).
func (x *Extractor) Hardlink(raw, target string) error {
	if err := x.Skip(raw); err != nil {
		return err
	}
	name, err := entryName(raw)
	if err != nil {
		return err
	}
	tname, err := entryName(target)
	if err != nil || tname == "" || !x.files[tname] {
		return unsafeEntry(raw, fmt.Sprintf("hard link to %q, not an earlier regular file", target))
	}
	if tname == name {
		return nil
	}
	full, err := x.clear(raw, name)
	if err != nil {
		return err
	}
	if err := os.Link(filepath.Join(x.root, tname), full); err != nil {
		return fmt.Errorf("entry %q: %w", raw, err)
	}
	x.files[name] = true
	return nil
}

// Tar extracts the entries of the tar stream r.
func (x *Extractor) Tar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		// With GODEBUG=tarinsecurepath=0 the reader flags names it
		// dislikes; the extractor applies its own, stricter, checks.
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = x.Dir(hdr.Name)
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
			err = x.File(hdr.Name, hdr.Mode&0o100 != 0, hdr.Size, tr)
		case tar.TypeSymlink:
			err = x.Symlink(hdr.Name, hdr.Linkname)
		case tar.TypeLink:
			err = x.Hardlink(hdr.Name, hdr.Linkname)
		default:
			// Devices, FIFOs and unknown kinds are skipped.
			err = x.Skip(hdr.Name)
		}
		if err != nil {
			return err
		}
	}
}
