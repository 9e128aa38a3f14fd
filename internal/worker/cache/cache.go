package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"trellis/internal/proto"
)

// Level says how long a worker keeps an entry. The numbers are those of
// the protocol's CacheLevel; 0 means LevelWorkflow.
type Level int

// The levels, shortest-lived first.
const (
	LevelTask     Level = 1 // until the tasks that read it are done
	LevelWorkflow Level = 2 // until the client's session ends
	LevelWorker   Level = 3 // until the worker exits
	LevelForever  Level = 4 // across worker restarts
)

// String returns the level's name.
func (l Level) String() string {
	switch l {
	case LevelTask:
		return "task"
	case LevelWorkflow:
		return "workflow"
	case LevelWorker:
		return "worker"
	case LevelForever:
		return "forever"
	}
	return "level(" + strconv.Itoa(int(l)) + ")"
}

// Errors the cache's callers check.
var (
	// ErrDiskFull is wrapped when space could not be reserved: nothing
	// droppable and unpinned was left to evict.
	ErrDiskFull = errors.New("cache: disk exhausted")
	// ErrMismatch is wrapped when what was filled does not have the wanted
	// size or digest, or an entry already present does not.
	ErrMismatch = errors.New("cache: size or digest mismatch")
	// ErrNotFound is wrapped when a name is not in the cache.
	ErrNotFound = errors.New("cache: no such entry")
)

// Entry describes one cached file or directory.
type Entry struct {
	Name      string
	Size      int64  // bytes; of a directory, the sum of its regular files
	Digest    string // "sha256:HEX"; of a directory, archive.DirDigest's
	Level     Level
	Dir       bool
	Droppable bool      // the manager allows evicting it
	Pins      int       // uses in progress; a pinned entry is never evicted
	LastUse   time.Time // last Put, Get, Pin or Link
}

// entry is the cache's record of a name: complete, or being filled.
type entry struct {
	Entry
	ready    bool
	done     chan struct{} // closed when the fill ends, either way
	reserved int64         // bytes reserved while filling
	use      uint64        // LRU order: larger is more recent
}

// Cache is a worker's cache. Create it with Open.
type Cache struct {
	dir      string
	files    string // dir/files: the entries
	tmp      string // dir/tmp: fills in progress and the trash
	capacity int64

	indexMu sync.Mutex // serialises index writes; taken before mu

	mu       sync.Mutex        // guards the fields below
	entries  map[string]*entry // by name
	used     int64             // bytes of complete entries
	reserved int64             // bytes reserved by fills in progress
	evicted  []string          // evicted since the last Evicted call
	seq      uint64            // the last use number handed out
	held     map[string]bool   // names the manager holds: never evicted (see Hold)
}

// Open opens the cache in dir, creating it if needed. capacity is in bytes,
// 0 for unlimited. It removes what an earlier run left there except
// forever-level entries recorded in the index that still have their
// recorded size.
func Open(dir string, capacity int64) (*Cache, error) {
	c := &Cache{
		dir:      dir,
		files:    filepath.Join(dir, "files"),
		tmp:      filepath.Join(dir, "tmp"),
		capacity: capacity,
		entries:  make(map[string]*entry),
	}
	if err := os.MkdirAll(c.files, 0o755); err != nil {
		return nil, fmt.Errorf("open cache %s: %w", dir, err)
	}
	if err := removeAll(c.tmp); err != nil {
		return nil, fmt.Errorf("open cache %s: %w", dir, err)
	}
	if err := os.Mkdir(c.tmp, 0o755); err != nil {
		return nil, fmt.Errorf("open cache %s: %w", dir, err)
	}
	kept := c.readIndex()
	des, err := os.ReadDir(c.files)
	if err != nil {
		return nil, fmt.Errorf("open cache %s: %w", dir, err)
	}
	now := time.Now()
	dropped := false
	for _, de := range des {
		name := de.Name()
		rec, ok := kept[name]
		delete(kept, name)
		if ok && c.verify(rec) {
			c.seq++
			c.entries[name] = &entry{
				Entry: Entry{Name: name, Size: rec.Size, Digest: rec.Digest, Level: LevelForever, Dir: rec.Dir, Droppable: rec.Droppable, LastUse: now},
				ready: true,
				use:   c.seq,
			}
			c.used += rec.Size
			continue
		}
		dropped = dropped || ok
		if err := removeAll(filepath.Join(c.files, name)); err != nil {
			return nil, fmt.Errorf("open cache %s: %w", dir, err)
		}
	}
	if dropped || len(kept) > 0 {
		c.writeIndex()
	}
	return c, nil
}

// verify reports whether the recorded forever entry is still there, of the
// same kind and size.
func (c *Cache) verify(rec indexEntry) bool {
	if proto.CheckCacheName(rec.Name) != nil {
		return false
	}
	p := filepath.Join(c.files, rec.Name)
	fi, err := os.Lstat(p)
	if err != nil || fi.IsDir() != rec.Dir {
		return false
	}
	if !rec.Dir {
		return fi.Mode().IsRegular() && fi.Size() == rec.Size
	}
	size, err := treeSize(p)
	return err == nil && size == rec.Size
}

// Path returns where the entry name lives (or would live); "" for a name
// that is not a valid cache name.
func (c *Cache) Path(name string) string {
	if proto.CheckCacheName(name) != nil {
		return ""
	}
	return filepath.Join(c.files, name)
}

// Capacity returns the capacity Open was given.
func (c *Cache) Capacity() int64 { return c.capacity }

// Entries returns the complete entries, sorted by name.
func (c *Cache) Entries() []Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Entry, 0, len(c.entries))
	for _, e := range c.entries {
		if e.ready {
			out = append(out, e.Entry)
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Get returns the complete entry name and refreshes its last use.
func (c *Cache) Get(name string) (Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[name]
	if e == nil || !e.ready {
		return Entry{}, false
	}
	c.touchLocked(e)
	return e.Entry, true
}

// Pin marks one more use of name in progress, so that it is not evicted,
// and reports whether name is present.
func (c *Cache) Pin(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[name]
	if e == nil || !e.ready {
		return false
	}
	e.Pins++
	c.touchLocked(e)
	return true
}

// Hold keeps name from eviction, whether or not it is present yet, until
// Release names it or Remove removes it: the manager holds what it fetched
// to the worker for the tasks placed there. An eviction of name not yet
// reported (Evicted) is forgotten: what the manager asks of name now
// answers for it. It reports whether name is present.
func (c *Cache) Hold(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held == nil {
		c.held = make(map[string]bool)
	}
	c.held[name] = true
	c.forgetEvictedLocked(name)
	e := c.entries[name]
	return e != nil && e.ready
}

// forgetEvictedLocked drops name from the evictions not yet reported.
func (c *Cache) forgetEvictedLocked(name string) {
	if i := slices.Index(c.evicted, name); i >= 0 {
		c.evicted = slices.Delete(c.evicted, i, i+1)
	}
}

// Release ends Hold: name may be evicted again (if droppable and unpinned).
func (c *Cache) Release(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.held, name)
}

// ReleaseAll ends every Hold: a new connection to the manager starts with
// none (the manager counts what the worker holds as evictable until it
// fetches it again).
func (c *Cache) ReleaseAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.held)
}

// Unpin ends a use that Pin began.
func (c *Cache) Unpin(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[name]; e != nil && e.Pins > 0 {
		e.Pins--
	}
}

// SetDroppable says whether name may be evicted. The manager decides: it
// never lets the last replica of a temp file go.
func (c *Cache) SetDroppable(name string, ok bool) {
	c.mu.Lock()
	e := c.entries[name]
	changed := e != nil && e.ready && e.Droppable != ok
	if changed {
		e.Droppable = ok
	}
	forever := changed && e.Level == LevelForever
	c.mu.Unlock()
	if forever {
		c.writeIndex()
	}
}

// Used returns the bytes held by complete entries plus those reserved by
// fills in progress.
func (c *Cache) Used() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used + c.reserved
}

// Evicted returns the names evicted, or removed by Check, since the last
// call, oldest first, and forgets them: the worker reports them as Dropped.
// A name filled again, or held (Hold), since its eviction is left out.
func (c *Cache) Evicted() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.evicted
	c.evicted = nil
	return out
}

// Remove removes name from the cache; removing a name that is not there
// is not an error. A fill in progress is waited for, then its entry
// removed. Pins do not hold it back.
func (c *Cache) Remove(name string) error {
	c.mu.Lock()
	for {
		e := c.entries[name]
		if e == nil {
			c.mu.Unlock()
			return nil
		}
		if e.ready {
			break
		}
		done := e.done
		c.mu.Unlock()
		<-done
		c.mu.Lock()
	}
	e := c.entries[name]
	trash, err := c.dropLocked(e)
	delete(c.held, name)
	c.mu.Unlock()
	if e.Level == LevelForever {
		c.writeIndex()
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	if err := removeAll(trash); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// RemoveBelow removes every complete entry whose level is below level:
// RemoveBelow(LevelForever) when the worker exits.
func (c *Cache) RemoveBelow(level Level) {
	c.mu.Lock()
	var trash []string
	forever := false
	for _, e := range c.entries {
		if e.ready && e.Level < level {
			t, _ := c.dropLocked(e)
			trash = append(trash, t)
			forever = forever || e.Level == LevelForever
		}
	}
	c.mu.Unlock()
	if forever {
		c.writeIndex()
	}
	for _, t := range trash {
		removeAll(t)
	}
}

// touchLocked records a use of e.
func (c *Cache) touchLocked(e *entry) {
	c.seq++
	e.use = c.seq
	e.LastUse = time.Now()
}

// dropLocked takes the complete entry e out of the table and renames its
// content into the trash, returning the trash path for the caller to
// remove once the lock is released.
func (c *Cache) dropLocked(e *entry) (string, error) {
	delete(c.entries, e.Name)
	c.used -= e.Size
	c.seq++
	trash := filepath.Join(c.tmp, "trash-"+strconv.FormatUint(c.seq, 10)+"-"+e.Name)
	if err := os.Rename(filepath.Join(c.files, e.Name), trash); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		return "", err
	}
	return trash, nil
}

// indexEntry is one forever entry in index.json.
type indexEntry struct {
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	Digest    string `json:"digest"`
	Dir       bool   `json:"dir,omitempty"`
	Droppable bool   `json:"droppable,omitempty"`
}

type index struct {
	Version int          `json:"version"`
	Entries []indexEntry `json:"entries"`
}

// readIndex returns the forever entries recorded by an earlier run, by
// name. A missing or unreadable index records nothing.
func (c *Cache) readIndex() map[string]indexEntry {
	out := make(map[string]indexEntry)
	b, err := os.ReadFile(filepath.Join(c.dir, "index.json"))
	if err != nil {
		return out
	}
	var ix index
	if json.Unmarshal(b, &ix) != nil || ix.Version != 1 {
		return out
	}
	for _, e := range ix.Entries {
		out[e.Name] = e
	}
	return out
}

// writeIndex records the forever entries, atomically: a temporary file
// renamed over index.json. Failures are ignored; the worst outcome is that
// a forever entry does not survive a restart.
func (c *Cache) writeIndex() {
	c.indexMu.Lock()
	defer c.indexMu.Unlock()
	ix := index{Version: 1, Entries: []indexEntry{}}
	c.mu.Lock()
	for _, e := range c.entries {
		if e.ready && e.Level == LevelForever {
			ix.Entries = append(ix.Entries, indexEntry{Name: e.Name, Size: e.Size, Digest: e.Digest, Dir: e.Dir, Droppable: e.Droppable})
		}
	}
	c.mu.Unlock()
	slices.SortFunc(ix.Entries, func(a, b indexEntry) int { return strings.Compare(a.Name, b.Name) })
	b, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return
	}
	tmp := filepath.Join(c.dir, "index.json.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(c.dir, "index.json"))
	}
	if err != nil {
		os.Remove(tmp)
	}
}

// checkLevel turns level 0 into LevelWorkflow and refuses levels out of
// range.
func checkLevel(level Level) (Level, error) {
	if level == 0 {
		return LevelWorkflow, nil
	}
	if level < LevelTask || level > LevelForever {
		return 0, fmt.Errorf("level %d out of range", level)
	}
	return level, nil
}
