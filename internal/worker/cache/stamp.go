package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// ErrChanged is wrapped by Check when a command changed a cached file
// through the hard link Link gave it.
var ErrChanged = errors.New("cache: entry changed through a sandbox's hard link")

// Stamp records what one Link hard-linked into a sandbox: each regular
// file, with its identity, size, modification time and mode then. Cached
// files are read-only, but root ignores modes and the worker's own user
// may change them, so a command can still write to the cache through its
// link; a write changes the size or the modification time, and Check
// tells. The zero Stamp (nothing linked) checks nothing.
type Stamp struct {
	name  string
	root  fs.FileInfo // the entry itself: a file, or the top of its tree
	files []linked
}

// linked is one hard-linked file: its path in the cache and what it was.
type linked struct {
	path string
	fi   fs.FileInfo
}

// Check compares the files that s records with what they were at Link.
// When one differs in size, modification time or mode, a command changed
// the cached bytes: Check removes the entry, so that no later Link hands
// out the changed bytes, has Evicted report its name (the manager then
// stages it again, from another copy, its store, or the task that made
// it), and returns an error wrapping ErrChanged that names the file. A
// file that is no longer in the cache, or has been replaced there since,
// is not what the command had: it is skipped. Check reads no content.
func (c *Cache) Check(s Stamp) error {
	for _, l := range s.files {
		now, err := os.Lstat(l.path)
		if err != nil || !os.SameFile(l.fi, now) || same(l.fi, now) {
			continue
		}
		what := s.name
		if l.path != filepath.Join(c.files, s.name) {
			rel, _ := filepath.Rel(filepath.Join(c.files, s.name), l.path)
			what = s.name + " file " + rel
		}
		err = fmt.Errorf("cached %s changed while linked into a sandbox (%s; now %s): %w",
			what, describe(l.fi), describe(now), ErrChanged)
		if derr := c.dropChanged(s); derr != nil {
			return fmt.Errorf("%w; removing it: %v", err, derr)
		}
		return err
	}
	return nil
}

// same reports whether a file still looks as it did at Link. Links made
// or removed meanwhile change only its inode's change time.
func same(was, now fs.FileInfo) bool {
	return was.Size() == now.Size() && was.ModTime().Equal(now.ModTime()) && was.Mode() == now.Mode()
}

func describe(fi fs.FileInfo) string {
	return fmt.Sprintf("%d bytes, mode %v, modified %s", fi.Size(), fi.Mode(), fi.ModTime().Format(time.RFC3339Nano))
}

// dropChanged removes the entry that s was linked from, if the cache
// still holds that one, and records it for Evicted.
func (c *Cache) dropChanged(s Stamp) error {
	c.mu.Lock()
	e := c.entries[s.name]
	if e == nil || !e.ready {
		c.mu.Unlock()
		return nil
	}
	if now, err := os.Lstat(filepath.Join(c.files, s.name)); err != nil || !os.SameFile(s.root, now) {
		c.mu.Unlock()
		return nil // replaced since: the entry there now was never linked
	}
	trash, err := c.dropLocked(e)
	c.evicted = append(c.evicted, e.Name)
	c.mu.Unlock()
	if e.Level == LevelForever {
		c.writeIndex()
	}
	if err != nil {
		return err
	}
	return removeAll(trash)
}
