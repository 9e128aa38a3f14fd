package cache

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"trellis/internal/proto"
	"trellis/internal/worker/archive"
)

// bufSize is the copy buffer of the cache's data paths.
const bufSize = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// Put stores what fill writes under name, atomically. fill gets a path that
// does not exist and must create a file there, or a directory when dir is
// true. Put reserves wantSize bytes first (evicting if needed), then checks
// the size and digest of what fill made against wantSize and wantDigest
// (-1 and "" when unknown; a file named "sha256-HEX" is also checked
// against its name), then renames it into place. A failed fill or check
// leaves nothing behind. When name is already present, Put returns it
// without calling fill, raising its level to level if that is higher; when
// name is being filled, Put waits for that fill (see doc.go).
func (c *Cache) Put(name string, level Level, dir bool, wantSize int64, wantDigest string, fill func(tmpPath string) error) (Entry, error) {
	f, have, err := c.begin(name, level, dir, wantSize, wantDigest, false, true)
	if err != nil || f == nil {
		return have, err
	}
	if err := fill(f.tmp); err != nil {
		return Entry{}, f.abort(fmt.Errorf("put %s: %w", name, err))
	}
	return f.finish(wantSize, wantDigest, "", -1)
}

// PutReader is Put for a file whose bytes come from a stream: the stream
// is read once, hashed as it is written. open is called only when this
// call fills name; it returns the stream and its declared length (-1 when
// unknown), which is reserved when wantSize is unknown and must then match
// what the stream delivers. Errors from the stream's Read are returned
// wrapped, so that callers can tell them apart.
func (c *Cache) PutReader(name string, level Level, wantSize int64, wantDigest string, open func() (r io.ReadCloser, length int64, err error)) (Entry, error) {
	f, have, err := c.begin(name, level, false, wantSize, wantDigest, false, true)
	if err != nil || f == nil {
		return have, err
	}
	r, length, err := open()
	if err != nil {
		return Entry{}, f.abort(fmt.Errorf("put %s: %w", name, err))
	}
	defer r.Close()
	if wantSize >= 0 && length >= 0 && length != wantSize {
		return Entry{}, f.abort(fmt.Errorf("put %s: source declares %d bytes, want %d: %w", name, length, wantSize, ErrMismatch))
	}
	limit := wantSize
	if limit < 0 {
		limit = length
		if length >= 0 {
			if err := f.reserve(length); err != nil {
				return Entry{}, f.abort(err)
			}
		}
	}
	digest, n, err := f.copyFrom(r, limit)
	if err != nil {
		return Entry{}, f.abort(fmt.Errorf("put %s: %w", name, err))
	}
	if length >= 0 && n != length {
		return Entry{}, f.abort(fmt.Errorf("put %s: got %d bytes, source declared %d: %w", name, n, length, ErrMismatch))
	}
	return f.finish(wantSize, wantDigest, digest, n)
}

// Adopt moves the file or directory src (a task's output in its sandbox)
// into the cache under name, by rename, or by copy across file systems,
// and computes its size and digest. The entry starts not droppable. An
// entry already present under name is replaced. If space cannot be
// reserved src is left where it was; any later failure removes it.
func (c *Cache) Adopt(name string, level Level, src string) (Entry, error) {
	fi, err := os.Lstat(src)
	if err != nil {
		return Entry{}, fmt.Errorf("adopt %s: %w", name, err)
	}
	if !fi.IsDir() && !fi.Mode().IsRegular() {
		return Entry{}, fmt.Errorf("adopt %s: %s is neither a regular file nor a directory", name, src)
	}
	size := fi.Size()
	if fi.IsDir() {
		if size, err = treeSize(src); err != nil {
			return Entry{}, fmt.Errorf("adopt %s: %w", name, err)
		}
	}
	f, _, err := c.begin(name, level, fi.IsDir(), size, "", true, false)
	if err != nil {
		return Entry{}, err
	}
	if err := os.Rename(src, f.tmp); err != nil {
		if !errors.Is(err, syscall.EXDEV) {
			return Entry{}, f.abort(fmt.Errorf("adopt %s: %w", name, err))
		}
		if err := copyTree(src, f.tmp); err != nil {
			return Entry{}, f.abort(fmt.Errorf("adopt %s: %w", name, err))
		}
		removeAll(src)
	}
	return f.finish(-1, "", "", -1)
}

// filling is one fill in progress, owned by the goroutine that began it.
type filling struct {
	c   *Cache
	e   *entry
	tmp string
}

// begin returns the present entry name (have), or claims name for a new
// fill (f). With replace, a present entry is removed instead. With
// droppable the new entry starts droppable.
func (c *Cache) begin(name string, level Level, dir bool, wantSize int64, wantDigest string, replace, droppable bool) (f *filling, have Entry, err error) {
	if err := proto.CheckCacheName(name); err != nil {
		return nil, Entry{}, fmt.Errorf("put %s: %w", name, err)
	}
	if level, err = checkLevel(level); err != nil {
		return nil, Entry{}, fmt.Errorf("put %s: %w", name, err)
	}
	c.mu.Lock()
	for {
		e := c.entries[name]
		if e == nil {
			break
		}
		if !e.ready {
			done := e.done
			c.mu.Unlock()
			<-done
			c.mu.Lock()
			continue
		}
		if replace {
			trash, _ := c.dropLocked(e)
			c.mu.Unlock()
			removeAll(trash)
			if e.Level == LevelForever {
				c.writeIndex()
			}
			c.mu.Lock()
			continue
		}
		c.touchLocked(e)
		raised := level > e.Level
		if raised {
			e.Level = level
		}
		have := e.Entry
		c.mu.Unlock()
		if raised && level == LevelForever {
			c.writeIndex()
		}
		return nil, have, matches(have, dir, wantSize, wantDigest)
	}
	e := &entry{
		Entry: Entry{Name: name, Level: level, Dir: dir, Droppable: droppable},
		done:  make(chan struct{}),
	}
	ev, err := c.reserveLocked(e, wantSize)
	if err != nil {
		c.mu.Unlock()
		return nil, Entry{}, err
	}
	defer ev.finish(c)
	c.entries[name] = e
	c.seq++
	tmp := filepath.Join(c.tmp, "put-"+strconv.FormatUint(c.seq, 10)+"-"+name)
	c.mu.Unlock()
	return &filling{c: c, e: e, tmp: tmp}, Entry{}, nil
}

// matches checks an entry already present against what a Put wants.
func matches(have Entry, dir bool, wantSize int64, wantDigest string) error {
	switch {
	case have.Dir != dir:
		kind := map[bool]string{false: "a file", true: "a directory"}
		return fmt.Errorf("put %s: holds %s, want %s: %w", have.Name, kind[have.Dir], kind[dir], ErrMismatch)
	case wantSize >= 0 && have.Size != wantSize:
		return fmt.Errorf("put %s: holds %d bytes, want %d: %w", have.Name, have.Size, wantSize, ErrMismatch)
	case wantDigest != "" && have.Digest != wantDigest:
		return fmt.Errorf("put %s: holds %s, want %s: %w", have.Name, have.Digest, wantDigest, ErrMismatch)
	}
	return nil
}

// evictions is what reserving space evicted, to be finished once the
// lock is released: the trash to remove and whether the index changed.
type evictions struct {
	trash []string
	index bool
}

// finish removes the trash and rewrites the index if needed. It is called
// without c.mu held.
func (ev evictions) finish(c *Cache) {
	removeAll(ev.trash...)
	if ev.index {
		c.writeIndex()
	}
}

// reserveLocked reserves n more bytes for e, evicting droppable, unpinned,
// unheld entries least recently used first. It evicts nothing unless that makes
// enough room.
func (c *Cache) reserveLocked(e *entry, n int64) (evictions, error) {
	var ev evictions
	if n <= 0 {
		return ev, nil
	}
	if over := c.used + c.reserved + n - c.capacity; c.capacity > 0 && over > 0 {
		var victims []*entry
		var freeable int64
		for _, v := range c.entries {
			if v.ready && v.Droppable && v.Pins == 0 && !c.held[v.Name] {
				victims = append(victims, v)
				freeable += v.Size
			}
		}
		if freeable < over {
			return ev, fmt.Errorf("reserve %d bytes for %s: %d of %d bytes in use, %d of them droppable: %w",
				n, e.Name, c.used+c.reserved, c.capacity, freeable, ErrDiskFull)
		}
		slices.SortFunc(victims, func(a, b *entry) int { return cmp.Compare(a.use, b.use) })
		for _, v := range victims {
			if over <= 0 {
				break
			}
			over -= v.Size
			t, _ := c.dropLocked(v)
			ev.trash = append(ev.trash, t)
			ev.index = ev.index || v.Level == LevelForever
			c.evicted = append(c.evicted, v.Name)
		}
	}
	c.reserved += n
	e.reserved += n
	return ev, nil
}

// reserve reserves n more bytes for the fill.
func (f *filling) reserve(n int64) error {
	f.c.mu.Lock()
	ev, err := f.c.reserveLocked(f.e, n)
	f.c.mu.Unlock()
	ev.finish(f.c)
	return err
}

// abort ends a failed fill: it removes what was written, releases the
// reservation and wakes waiters. It returns err.
func (f *filling) abort(err error) error {
	removeAll(f.tmp)
	c := f.c
	c.mu.Lock()
	c.reserved -= f.e.reserved
	f.e.reserved = 0
	if c.entries[f.e.Name] == f.e {
		delete(c.entries, f.e.Name)
	}
	close(f.e.done)
	c.mu.Unlock()
	return err
}

// copyFrom writes r into the fill's file, hashing it on the way, and
// returns its digest and size. limit >= 0 bounds the bytes accepted.
// Space beyond the reservation is reserved as bytes arrive.
func (f *filling) copyFrom(r io.Reader, limit int64) (string, int64, error) {
	out, err := os.OpenFile(f.tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	n, err := copyHashing(out, h, r, limit, f)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", n, err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), n, nil
}

// copyHashing copies r to out, at most limit bytes when limit >= 0, and
// hashes what it copies into h. Reading and writing run on the calling
// goroutine while a second goroutine hashes the chunks already written, so
// that hashing (the costliest step) overlaps the I/O; that goroutine has
// exited when copyHashing returns.
func copyHashing(out io.Writer, h hash.Hash, r io.Reader, limit int64, f *filling) (int64, error) {
	const chunks = 4
	bufs := make([]*[]byte, chunks)
	for i := range bufs {
		bufs[i] = bufPool.Get().(*[]byte)
	}
	free := make(chan *[]byte, chunks)
	for _, b := range bufs {
		free <- b
	}
	type chunk struct {
		buf *[]byte
		n   int
	}
	full := make(chan chunk, chunks)
	hashed := make(chan struct{})
	go func() { // exits when full is closed
		defer close(hashed)
		for c := range full {
			h.Write((*c.buf)[:c.n])
			free <- c.buf
		}
	}()
	defer func() {
		close(full)
		<-hashed
		for _, b := range bufs {
			bufPool.Put(b)
		}
	}()
	var n int64
	for {
		bp := <-free
		buf := *bp
		m, rerr := fillBuf(r, buf)
		if m > 0 {
			if limit >= 0 && n+int64(m) > limit {
				return n, fmt.Errorf("got more than %d bytes: %w", limit, ErrMismatch)
			}
			if need := n + int64(m) - f.e.reserved; need > 0 {
				if err := f.reserve(need); err != nil {
					return n, err
				}
			}
			if _, err := out.Write(buf[:m]); err != nil {
				return n, err
			}
			full <- chunk{bp, m}
			n += int64(m)
		} else {
			free <- bp
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// fillBuf reads from r until buf is full or r fails, and returns r's error
// as it was (io.EOF at the end).
func fillBuf(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// finish checks what the fill made and renames it into place. digest and
// n are the file's when copyFrom already computed them ("" otherwise).
func (f *filling) finish(wantSize int64, wantDigest, digest string, n int64) (Entry, error) {
	name := f.e.Name
	fi, err := os.Lstat(f.tmp)
	if err != nil {
		return Entry{}, f.abort(fmt.Errorf("put %s: fill made nothing: %w", name, err))
	}
	size := n
	switch {
	case f.e.Dir && !fi.IsDir():
		return Entry{}, f.abort(fmt.Errorf("put %s: fill made no directory", name))
	case !f.e.Dir && !fi.Mode().IsRegular():
		return Entry{}, f.abort(fmt.Errorf("put %s: fill made no regular file", name))
	case f.e.Dir:
		if err := normalizeTree(f.tmp); err != nil {
			return Entry{}, f.abort(fmt.Errorf("put %s: %w", name, err))
		}
		if size, digest, err = archive.DirDigest(f.tmp); err != nil {
			return Entry{}, f.abort(fmt.Errorf("put %s: %w", name, err))
		}
	case digest == "":
		if size, digest, err = hashFile(f.tmp); err != nil {
			return Entry{}, f.abort(fmt.Errorf("put %s: %w", name, err))
		}
	}
	if wantSize >= 0 && size != wantSize {
		return Entry{}, f.abort(fmt.Errorf("put %s: got %d bytes, want %d: %w", name, size, wantSize, ErrMismatch))
	}
	if wantDigest != "" && digest != wantDigest {
		return Entry{}, f.abort(fmt.Errorf("put %s: got digest %s, want %s: %w", name, digest, wantDigest, ErrMismatch))
	}
	if hexName, ok := strings.CutPrefix(name, "sha256-"); ok && !f.e.Dir && digest != "sha256:"+hexName {
		return Entry{}, f.abort(fmt.Errorf("put %s: got digest %s, which does not match the name: %w", name, digest, ErrMismatch))
	}
	if need := size - f.e.reserved; need > 0 {
		if err := f.reserve(need); err != nil {
			return Entry{}, f.abort(err)
		}
	}
	if !f.e.Dir {
		if err := os.Chmod(f.tmp, readOnly(fi.Mode())); err != nil {
			return Entry{}, f.abort(fmt.Errorf("put %s: %w", name, err))
		}
	}
	if err := os.Rename(f.tmp, filepath.Join(f.c.files, name)); err != nil {
		return Entry{}, f.abort(fmt.Errorf("put %s: %w", name, err))
	}
	c := f.c
	c.mu.Lock()
	c.reserved -= f.e.reserved
	f.e.reserved = 0
	c.used += size
	f.e.Size, f.e.Digest, f.e.ready = size, digest, true
	c.forgetEvictedLocked(name) // here again: an earlier eviction is not news
	c.touchLocked(f.e)
	got := f.e.Entry
	close(f.e.done)
	c.mu.Unlock()
	if got.Level == LevelForever {
		c.writeIndex()
	}
	return got, nil
}

// readOnly is the mode of a cached file: 0444, or 0555 when the owner
// could execute it.
func readOnly(m fs.FileMode) fs.FileMode {
	if m&0o100 != 0 {
		return 0o555
	}
	return 0o444
}

// hashFile returns the size and digest of the file at p.
func hashFile(p string) (int64, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	h := sha256.New()
	n, err := io.CopyBuffer(h, readerOnly{f}, *bp)
	if err != nil {
		return 0, "", err
	}
	return n, "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// readerOnly and writerOnly hide WriterTo and ReaderFrom, so that copies
// use the cache's large buffer.
type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }
