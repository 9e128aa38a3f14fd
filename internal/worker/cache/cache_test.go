package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"trellis/internal/worker/archive"
)

func digestOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func open(t *testing.T, dir string, capacity int64) *Cache {
	t.Helper()
	c, err := Open(dir, capacity)
	if err != nil {
		t.Fatalf("Open(%s, %d) = %v", dir, capacity, err)
	}
	return c
}

// writeFill returns a fill that writes content as a file.
func writeFill(content string) func(string) error {
	return func(p string) error { return os.WriteFile(p, []byte(content), 0o644) }
}

// treeFill returns a fill that makes a directory of files (name: content;
// a name ending in "*" is made executable without the star).
func treeFill(files map[string]string) func(string) error {
	return func(p string) error {
		if err := os.Mkdir(p, 0o700); err != nil {
			return err
		}
		for name, content := range files {
			mode := fs.FileMode(0o600)
			if n, ok := strings.CutSuffix(name, "*"); ok {
				name, mode = n, 0o700
			}
			full := filepath.Join(p, name)
			if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
				return err
			}
			if err := os.WriteFile(full, []byte(content), mode); err != nil {
				return err
			}
		}
		return nil
	}
}

func put(t *testing.T, c *Cache, name string, level Level, content string) Entry {
	t.Helper()
	e, err := c.Put(name, level, false, int64(len(content)), "", writeFill(content))
	if err != nil {
		t.Fatalf("Put(%s) = %v", name, err)
	}
	return e
}

// ignoreTime leaves LastUse out of Entry comparisons.
var ignoreTime = cmpopts.IgnoreFields(Entry{}, "LastUse")

// checkClean fails if a fill left anything in the cache's tmp directory.
func checkClean(t *testing.T, c *Cache) {
	t.Helper()
	des, err := os.ReadDir(c.tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(des) != 0 {
		t.Errorf("tmp holds %d leftovers, first %q; want none", len(des), des[0].Name())
	}
}

func TestPutGetLinkFile(t *testing.T) {
	tests := []struct {
		name     string
		level    Level
		mode     fs.FileMode
		wantMode fs.FileMode
		wantLvl  Level
	}{
		{name: "plain", level: LevelTask, mode: 0o644, wantMode: 0o444, wantLvl: LevelTask},
		{name: "executable", level: LevelWorker, mode: 0o755, wantMode: 0o555, wantLvl: LevelWorker},
		{name: "level 0 is workflow", level: 0, mode: 0o600, wantMode: 0o444, wantLvl: LevelWorkflow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := open(t, t.TempDir(), 0)
			const content = "hello, cache"
			got, err := c.Put("f.txt", tt.level, false, -1, "", func(p string) error {
				return os.WriteFile(p, []byte(content), tt.mode)
			})
			if err != nil {
				t.Fatalf("Put = %v", err)
			}
			want := Entry{Name: "f.txt", Size: int64(len(content)), Digest: digestOf(content), Level: tt.wantLvl, Droppable: true}
			if diff := cmp.Diff(want, got, ignoreTime); diff != "" {
				t.Errorf("Put entry mismatch (-want +got):\n%s", diff)
			}
			if g, ok := c.Get("f.txt"); !ok || g.LastUse.Before(got.LastUse) {
				t.Errorf("Get = %+v, %v; want the entry, with LastUse refreshed", g, ok)
			}
			fi, err := os.Stat(c.Path("f.txt"))
			if err != nil || fi.Mode().Perm() != tt.wantMode {
				t.Errorf("cached file: %v, %v; want mode %v", fi.Mode(), err, tt.wantMode)
			}
			dest := filepath.Join(t.TempDir(), "box", "in", "f")
			if _, err := c.Link("f.txt", dest); err != nil {
				t.Fatalf("Link = %v", err)
			}
			b, err := os.ReadFile(dest)
			if err != nil || string(b) != content {
				t.Errorf("linked file holds %q, %v; want %q", b, err, content)
			}
			dfi, _ := os.Stat(dest)
			if !os.SameFile(fi, dfi) {
				t.Errorf("linked file is not a hard link of the cached one")
			}
			if _, err := c.Link("f.txt", dest); !errors.Is(err, fs.ErrExist) {
				t.Errorf("Link onto an existing path = %v; want fs.ErrExist", err)
			}
			if _, err := c.Link("nope", dest+"2"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Link(nope) = %v; want ErrNotFound", err)
			}
			if got := c.Used(); got != int64(len(content)) {
				t.Errorf("Used = %d; want %d", got, len(content))
			}
			checkClean(t, c)
		})
	}
}

func TestPutGetLinkDir(t *testing.T) {
	c := open(t, t.TempDir(), 0)
	files := map[string]string{"a": "alpha", "sub/b": "beta", "sub/deeper/run*": "#!/bin/sh\n"}
	got, err := c.Put("tree", LevelWorkflow, true, -1, "", treeFill(files))
	if err != nil {
		t.Fatalf("Put = %v", err)
	}
	size, digest, err := archive.DirDigest(c.Path("tree"))
	if err != nil {
		t.Fatal(err)
	}
	want := Entry{Name: "tree", Size: size, Digest: digest, Level: LevelWorkflow, Dir: true, Droppable: true}
	if diff := cmp.Diff(want, got, ignoreTime); diff != "" {
		t.Errorf("Put entry mismatch (-want +got):\n%s", diff)
	}
	if size != int64(len("alpha")+len("beta")+len("#!/bin/sh\n")) {
		t.Errorf("directory size = %d; want the sum of its files", size)
	}
	dest := filepath.Join(t.TempDir(), "in")
	if _, err := c.Link("tree", dest); err != nil {
		t.Fatalf("Link = %v", err)
	}
	gotModes := map[string]string{}
	filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		fi, _ := d.Info()
		rel, _ := filepath.Rel(dest, p)
		b, _ := os.ReadFile(p)
		gotModes[rel] = fmt.Sprintf("%v %s", fi.Mode(), b)
		return nil
	})
	wantModes := map[string]string{
		".": "drwxr-xr-x ", "a": "-r--r--r-- alpha", "sub": "drwxr-xr-x ", "sub/b": "-r--r--r-- beta",
		"sub/deeper": "drwxr-xr-x ", "sub/deeper/run": "-r-xr-xr-x #!/bin/sh\n",
	}
	if diff := cmp.Diff(wantModes, gotModes); diff != "" {
		t.Errorf("linked tree mismatch (-want +got):\n%s", diff)
	}
	// The sandbox's directories are its own: it may add files.
	if err := os.WriteFile(filepath.Join(dest, "sub", "new"), nil, 0o644); err != nil {
		t.Errorf("writing into a linked directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(c.Path("tree"), "sub", "new")); err == nil {
		t.Errorf("a file written into the linked tree appeared in the cache")
	}
}

func TestPutFailuresLeaveNothing(t *testing.T) {
	const content = "0123456789"
	tests := []struct {
		name       string
		entry      string
		dir        bool
		wantSize   int64
		wantDigest string
		fill       func(string) error
		want       error // nil: any error
	}{
		{name: "size mismatch", entry: "f", wantSize: 11, fill: writeFill(content), want: ErrMismatch},
		{name: "digest mismatch", entry: "f", wantSize: -1, wantDigest: digestOf("other"), fill: writeFill(content), want: ErrMismatch},
		{name: "content name mismatch", entry: "sha256-" + strings.Repeat("0", 64), wantSize: -1, fill: writeFill(content), want: ErrMismatch},
		{name: "dir digest mismatch", entry: "d", dir: true, wantSize: -1, wantDigest: digestOf("x"), fill: treeFill(map[string]string{"a": "b"}), want: ErrMismatch},
		{name: "fill fails halfway", entry: "f", wantSize: -1, fill: func(p string) error {
			os.WriteFile(p, []byte("half"), 0o644)
			return errors.New("source went away")
		}},
		{name: "fill makes nothing", entry: "f", wantSize: -1, fill: func(string) error { return nil }, want: fs.ErrNotExist},
		{name: "file wanted, dir made", entry: "f", wantSize: -1, fill: treeFill(nil)},
		{name: "dir wanted, file made", entry: "d", dir: true, wantSize: -1, fill: writeFill(content)},
		{name: "bad name", entry: "../x", wantSize: -1, fill: writeFill(content)},
		{name: "dir with escaping link", entry: "d", dir: true, wantSize: -1, fill: func(p string) error {
			os.Mkdir(p, 0o755)
			return os.Symlink("/etc/passwd", filepath.Join(p, "l"))
		}, want: archive.ErrUnsafe},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := open(t, t.TempDir(), 1000)
			_, err := c.Put(tt.entry, LevelWorkflow, tt.dir, tt.wantSize, tt.wantDigest, tt.fill)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Put = %v; want an error wrapping %v", err, tt.want)
			}
			if got := c.Entries(); len(got) != 0 {
				t.Errorf("Entries = %v; want none", got)
			}
			if got := c.Used(); got != 0 {
				t.Errorf("Used = %d; want 0", got)
			}
			if des, _ := os.ReadDir(c.files); len(des) != 0 {
				t.Errorf("files holds %d entries; want none", len(des))
			}
			checkClean(t, c)
			// The name can be filled again.
			if _, err := c.Put("f", LevelWorkflow, false, -1, "", writeFill("ok")); err != nil {
				t.Errorf("Put after a failure = %v; want nil", err)
			}
		})
	}
}

// stream is a ReadCloser over a string that can fail at the end.
type stream struct {
	r   io.Reader
	err error // returned instead of io.EOF
}

func (s *stream) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF && s.err != nil {
		err = s.err
	}
	return n, err
}
func (s *stream) Close() error { return nil }

func TestPutReader(t *testing.T) {
	errBroken := errors.New("connection reset")
	const content = "streamed content"
	tests := []struct {
		name       string
		body       string
		length     int64
		readErr    error
		wantSize   int64
		wantDigest string
		want       error // nil and ok: success
		ok         bool
	}{
		{name: "known length", body: content, length: int64(len(content)), wantSize: -1, ok: true},
		{name: "everything known", body: content, length: int64(len(content)), wantSize: int64(len(content)), wantDigest: digestOf(content), ok: true},
		{name: "unknown length", body: content, length: -1, wantSize: -1, ok: true},
		{name: "short body", body: content[:5], length: int64(len(content)), wantSize: -1, want: ErrMismatch},
		{name: "long body", body: content + "!", length: int64(len(content)), wantSize: -1, want: ErrMismatch},
		{name: "longer than wanted", body: content, length: -1, wantSize: 4, want: ErrMismatch},
		{name: "declared length differs", body: content, length: 3, wantSize: int64(len(content)), want: ErrMismatch},
		{name: "corrupt", body: content, length: -1, wantSize: -1, wantDigest: digestOf("other"), want: ErrMismatch},
		{name: "read error", body: content[:3], length: -1, readErr: errBroken, wantSize: -1, want: errBroken},
		{name: "over capacity", body: strings.Repeat("x", 200), length: -1, wantSize: -1, want: ErrDiskFull},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := open(t, t.TempDir(), 100)
			got, err := c.PutReader("s", LevelWorker, tt.wantSize, tt.wantDigest, func() (io.ReadCloser, int64, error) {
				return &stream{r: strings.NewReader(tt.body), err: tt.readErr}, tt.length, nil
			})
			if tt.ok {
				want := Entry{Name: "s", Size: int64(len(content)), Digest: digestOf(content), Level: LevelWorker, Droppable: true}
				if err != nil {
					t.Fatalf("PutReader = %v; want nil", err)
				}
				if diff := cmp.Diff(want, got, ignoreTime); diff != "" {
					t.Errorf("PutReader entry mismatch (-want +got):\n%s", diff)
				}
				if got := c.Used(); got != int64(len(content)) {
					t.Errorf("Used = %d; want %d", got, len(content))
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("PutReader = %v; want an error wrapping %v", err, tt.want)
			}
			if got := c.Entries(); len(got) != 0 || c.Used() != 0 {
				t.Errorf("after a failed PutReader: Entries = %v, Used = %d; want none, 0", got, c.Used())
			}
			checkClean(t, c)
		})
	}
}

func TestEvictionLRU(t *testing.T) {
	c := open(t, t.TempDir(), 300)
	hundred := strings.Repeat("x", 100)
	put(t, c, "a", LevelWorkflow, hundred)
	put(t, c, "b", LevelWorkflow, hundred)
	put(t, c, "c", LevelWorkflow, hundred)
	c.Get("a") // a is now more recent than b and c
	put(t, c, "d", LevelWorkflow, hundred)
	if diff := cmp.Diff([]string{"b"}, c.Evicted()); diff != "" {
		t.Errorf("Evicted after d mismatch (-want +got):\n%s", diff)
	}
	if got := c.Evicted(); got != nil {
		t.Errorf("Evicted again = %v; want nil", got)
	}
	put(t, c, "e", LevelWorkflow, hundred+hundred)
	if diff := cmp.Diff([]string{"c", "a"}, c.Evicted()); diff != "" {
		t.Errorf("Evicted after e mismatch (-want +got):\n%s", diff)
	}
	var names []string
	for _, e := range c.Entries() {
		names = append(names, e.Name)
	}
	if diff := cmp.Diff([]string{"d", "e"}, names); diff != "" {
		t.Errorf("Entries mismatch (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(c.Path("a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("evicted a still on disk: %v", err)
	}
	if got := c.Used(); got != 300 {
		t.Errorf("Used = %d; want 300", got)
	}
	checkClean(t, c)
}

func TestEvictionSparesPinnedAndUndroppable(t *testing.T) {
	c := open(t, t.TempDir(), 300)
	hundred := strings.Repeat("x", 100)
	put(t, c, "pinned", LevelWorkflow, hundred)
	if !c.Pin("pinned") {
		t.Fatal("Pin(pinned) = false")
	}
	put(t, c, "kept", LevelWorkflow, hundred)
	c.SetDroppable("kept", false)
	put(t, c, "old", LevelWorkflow, hundred)

	// 200 bytes more cannot be made room for: only "old" may go, and it
	// does not, since that would not be enough.
	_, err := c.Put("big", LevelWorkflow, false, 200, "", writeFill(hundred+hundred))
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Put(big) = %v; want ErrDiskFull", err)
	}
	if got := c.Evicted(); got != nil {
		t.Errorf("Evicted after a failed reservation = %v; want nil", got)
	}
	if got := len(c.Entries()); got != 3 {
		t.Errorf("len(Entries) = %d; want 3", got)
	}
	// 100 bytes can: "old" goes, the others stay.
	put(t, c, "new", LevelWorkflow, hundred)
	if diff := cmp.Diff([]string{"old"}, c.Evicted()); diff != "" {
		t.Errorf("Evicted mismatch (-want +got):\n%s", diff)
	}
	// Unpinned and droppable, they can go too.
	c.Unpin("pinned")
	c.SetDroppable("kept", true)
	put(t, c, "big", LevelWorkflow, hundred+hundred)
	if diff := cmp.Diff([]string{"pinned", "kept"}, c.Evicted()); diff != "" {
		t.Errorf("Evicted mismatch (-want +got):\n%s", diff)
	}
	// Larger than the whole cache.
	if _, err := c.Put("huge", LevelWorkflow, false, 301, "", writeFill("")); !errors.Is(err, ErrDiskFull) {
		t.Errorf("Put(huge) = %v; want ErrDiskFull", err)
	}
	checkClean(t, c)
}

// TestUnknownSizeReservedAfterFill: a fill of unknown size is accounted
// for, evicting if needed, once its size is known.
func TestUnknownSizeReservedAfterFill(t *testing.T) {
	c := open(t, t.TempDir(), 150)
	put(t, c, "a", LevelWorkflow, strings.Repeat("x", 100))
	if _, err := c.Put("b", LevelWorkflow, false, -1, "", writeFill(strings.Repeat("y", 100))); err != nil {
		t.Fatalf("Put(b) = %v", err)
	}
	if diff := cmp.Diff([]string{"a"}, c.Evicted()); diff != "" {
		t.Errorf("Evicted mismatch (-want +got):\n%s", diff)
	}
	c.SetDroppable("b", false)
	if _, err := c.Put("c", LevelWorkflow, false, -1, "", writeFill(strings.Repeat("z", 100))); !errors.Is(err, ErrDiskFull) {
		t.Errorf("Put(c) = %v; want ErrDiskFull", err)
	}
	if got := c.Used(); got != 100 {
		t.Errorf("Used = %d; want 100", got)
	}
	checkClean(t, c)
}

func TestConcurrentPutsFillOnce(t *testing.T) {
	c := open(t, t.TempDir(), 0)
	const n = 16
	var fills, opens atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	got := make([]Entry, 2*n)
	errs := make([]error, 2*n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			got[i], errs[i] = c.Put("one", LevelWorkflow, false, -1, "", func(p string) error {
				fills.Add(1)
				<-release
				return os.WriteFile(p, []byte("once"), 0o644)
			})
		}()
		go func() {
			defer wg.Done()
			got[n+i], errs[n+i] = c.PutReader("two", LevelWorkflow, -1, "", func() (io.ReadCloser, int64, error) {
				opens.Add(1)
				<-release
				return io.NopCloser(strings.NewReader("twice")), 5, nil
			})
		}()
	}
	close(release)
	wg.Wait()
	if fills.Load() != 1 || opens.Load() != 1 {
		t.Errorf("fill ran %d times, open %d times; want 1 and 1", fills.Load(), opens.Load())
	}
	for i := range 2 * n {
		want := map[bool]string{true: digestOf("once"), false: digestOf("twice")}[i < n]
		if errs[i] != nil || got[i].Digest != want {
			t.Errorf("call %d = %v, %v; want digest %s", i, got[i].Digest, errs[i], want)
		}
	}
}

func TestWaiterFillsAfterFailedFill(t *testing.T) {
	c := open(t, t.TempDir(), 0)
	started := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := c.Put("x", LevelWorkflow, false, -1, "", func(string) error {
			close(started)
			<-release
			return errors.New("first fill fails")
		})
		done <- err
	}()
	<-started
	second := make(chan error)
	go func() {
		_, err := c.Put("x", LevelWorkflow, false, -1, "", writeFill("second"))
		second <- err
	}()
	close(release)
	if err := <-done; err == nil {
		t.Errorf("first Put = nil; want its fill's error")
	}
	if err := <-second; err != nil {
		t.Errorf("second Put = %v; want nil (it fills after the first failed)", err)
	}
	if e, ok := c.Get("x"); !ok || e.Digest != digestOf("second") {
		t.Errorf("Get(x) = %+v, %v; want the second fill's entry", e, ok)
	}
}

func TestPutPresent(t *testing.T) {
	c := open(t, t.TempDir(), 0)
	put(t, c, "f", LevelTask, "abc")
	tests := []struct {
		name       string
		dir        bool
		wantSize   int64
		wantDigest string
		ok         bool
	}{
		{name: "matches", wantSize: 3, wantDigest: digestOf("abc"), ok: true},
		{name: "unknown", wantSize: -1, ok: true},
		{name: "other size", wantSize: 4},
		{name: "other digest", wantSize: -1, wantDigest: digestOf("abd")},
		{name: "a directory wanted", dir: true, wantSize: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Put("f", LevelTask, tt.dir, tt.wantSize, tt.wantDigest, func(string) error {
				t.Errorf("fill called for a present entry")
				return nil
			})
			if tt.ok != (err == nil) || !tt.ok && !errors.Is(err, ErrMismatch) {
				t.Errorf("Put of a present entry = %v; want ok %v or ErrMismatch", err, tt.ok)
			}
		})
	}
	// A Put at a higher level raises the entry's level.
	e, err := c.Put("f", LevelWorker, false, -1, "", writeFill("abc"))
	if err != nil || e.Level != LevelWorker {
		t.Errorf("Put at a higher level = %v, %v; want level worker", e.Level, err)
	}
}

func TestAdopt(t *testing.T) {
	c := open(t, t.TempDir(), 1000)
	box := t.TempDir()

	src := filepath.Join(box, "out.txt")
	if err := os.WriteFile(src, []byte("output"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := c.Adopt("out-1", LevelWorkflow, src)
	if err != nil {
		t.Fatalf("Adopt(file) = %v", err)
	}
	want := Entry{Name: "out-1", Size: 6, Digest: digestOf("output"), Level: LevelWorkflow}
	if diff := cmp.Diff(want, got, ignoreTime); diff != "" {
		t.Errorf("Adopt(file) mismatch (-want +got):\n%s", diff)
	}
	if _, err := os.Lstat(src); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Adopt left its source: %v", err)
	}

	dsrc := filepath.Join(box, "outdir")
	if err := treeFill(map[string]string{"x": "1", "y/z*": "22"})(dsrc); err != nil {
		t.Fatal(err)
	}
	got, err = c.Adopt("out-2", LevelWorker, dsrc)
	if err != nil {
		t.Fatalf("Adopt(dir) = %v", err)
	}
	_, digest, _ := archive.DirDigest(c.Path("out-2"))
	want = Entry{Name: "out-2", Size: 3, Digest: digest, Level: LevelWorker, Dir: true}
	if diff := cmp.Diff(want, got, ignoreTime); diff != "" {
		t.Errorf("Adopt(dir) mismatch (-want +got):\n%s", diff)
	}

	// A new output of the same name replaces the old.
	if err := os.WriteFile(src, []byte("output, again"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Adopt("out-1", LevelWorkflow, src); err != nil || got.Digest != digestOf("output, again") {
		t.Errorf("Adopt again = %v, %v; want the new content", got.Digest, err)
	}
	if got := c.Used(); got != 13+3 {
		t.Errorf("Used = %d; want 16", got)
	}

	// Without room, the output stays where it was.
	big := filepath.Join(box, "big")
	if err := os.WriteFile(big, make([]byte, 2000), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Adopt("out-3", LevelWorkflow, big); !errors.Is(err, ErrDiskFull) {
		t.Errorf("Adopt(big) = %v; want ErrDiskFull", err)
	}
	if _, err := os.Stat(big); err != nil {
		t.Errorf("Adopt without room moved its source: %v", err)
	}
	checkClean(t, c)
}

func TestCopyTree(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := treeFill(map[string]string{"a": "1", "d/b*": "2"})(src); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../a", filepath.Join(src, "d", "l")); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	if err := copyTree(src, dst); err != nil {
		t.Fatalf("copyTree = %v", err)
	}
	_, want, err1 := archive.DirDigest(src)
	_, got, err2 := archive.DirDigest(dst)
	if err1 != nil || err2 != nil || got != want {
		t.Errorf("copy digest %s, %v; want %s, %v", got, err2, want, err1)
	}
}

func TestRemove(t *testing.T) {
	c := open(t, t.TempDir(), 0)
	put(t, c, "a", LevelTask, "1")
	put(t, c, "b", LevelWorkflow, "22")
	put(t, c, "c", LevelWorker, "333")
	put(t, c, "d", LevelForever, "4444")
	if err := c.Remove("a"); err != nil {
		t.Errorf("Remove(a) = %v", err)
	}
	if err := c.Remove("a"); err != nil {
		t.Errorf("Remove(a) again = %v; want nil", err)
	}
	c.RemoveBelow(LevelForever)
	var names []string
	for _, e := range c.Entries() {
		names = append(names, e.Name)
	}
	if diff := cmp.Diff([]string{"d"}, names); diff != "" {
		t.Errorf("Entries after RemoveBelow mismatch (-want +got):\n%s", diff)
	}
	if got := c.Used(); got != 4 {
		t.Errorf("Used = %d; want 4", got)
	}
	if des, _ := os.ReadDir(c.files); len(des) != 1 {
		t.Errorf("files holds %d entries; want 1", len(des))
	}
	checkClean(t, c)
}

func TestOpenKeepsForever(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir, 0)
	put(t, c, "task", LevelTask, "t")
	put(t, c, "keep", LevelForever, "kept across restarts")
	put(t, c, "tamper", LevelForever, "will change")
	put(t, c, "raised", LevelWorkflow, "raised later")
	if _, err := c.Put("raised", LevelForever, false, -1, "", writeFill("")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put("tree", LevelForever, true, -1, "", treeFill(map[string]string{"a": "1", "b/c": "2"})); err != nil {
		t.Fatal(err)
	}
	put(t, c, "gone", LevelForever, "removed by hand")
	c.SetDroppable("keep", false)
	want := c.Entries()
	want = slicesDelete(want, "task", "tamper", "gone")

	// The tampered entry changes size; the removed one disappears; junk
	// is left in tmp and files.
	p := c.Path("tamper")
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, []byte("changed!!!!!!"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(c.Path("gone"))
	os.WriteFile(filepath.Join(c.tmp, "put-9-half"), []byte("partial"), 0o644)
	os.WriteFile(filepath.Join(c.files, "stray"), []byte("unknown"), 0o644)

	c2 := open(t, dir, 0)
	if diff := cmp.Diff(want, c2.Entries(), ignoreTime); diff != "" {
		t.Errorf("Entries after reopening mismatch (-want +got):\n%s", diff)
	}
	var onDisk []string
	des, _ := os.ReadDir(c2.files)
	for _, de := range des {
		onDisk = append(onDisk, de.Name())
	}
	if diff := cmp.Diff([]string{"keep", "raised", "tree"}, onDisk); diff != "" {
		t.Errorf("files after reopening mismatch (-want +got):\n%s", diff)
	}
	checkClean(t, c2)
	if got := c2.Used(); got != int64(len("kept across restarts")+len("raised later")+2) {
		t.Errorf("Used after reopening = %d", got)
	}
	// The index now lists only what survived.
	c3 := open(t, dir, 0)
	if diff := cmp.Diff(want, c3.Entries(), ignoreTime); diff != "" {
		t.Errorf("Entries after reopening twice mismatch (-want +got):\n%s", diff)
	}
}

func slicesDelete(es []Entry, names ...string) []Entry {
	var out []Entry
	for _, e := range es {
		keep := true
		for _, n := range names {
			keep = keep && e.Name != n
		}
		if keep {
			e.Pins = 0
			out = append(out, e)
		}
	}
	return out
}

func TestLevelString(t *testing.T) {
	tests := []struct {
		l    Level
		want string
	}{{LevelTask, "task"}, {LevelWorkflow, "workflow"}, {LevelWorker, "worker"}, {LevelForever, "forever"}, {9, "level(9)"}}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.l.String(); got != tt.want {
				t.Errorf("Level(%d).String() = %q; want %q", int(tt.l), got, tt.want)
			}
		})
	}
}

func TestBadLevel(t *testing.T) {
	c := open(t, t.TempDir(), 0)
	if _, err := c.Put("f", 7, false, -1, "", writeFill("x")); err == nil {
		t.Errorf("Put at level 7 = nil; want an error")
	}
}

func TestRemoveWaitsForFill(t *testing.T) {
	c := open(t, t.TempDir(), 0)
	started := make(chan struct{})
	release := make(chan struct{})
	filled := make(chan error)
	go func() {
		_, err := c.Put("x", LevelWorkflow, false, -1, "", func(p string) error {
			close(started)
			<-release
			return os.WriteFile(p, []byte("x"), 0o644)
		})
		filled <- err
	}()
	<-started
	removed := make(chan error)
	go func() { removed <- c.Remove("x") }()
	close(release)
	if err := <-filled; err != nil {
		t.Fatalf("Put = %v", err)
	}
	if err := <-removed; err != nil {
		t.Fatalf("Remove = %v", err)
	}
	if _, ok := c.Get("x"); ok {
		t.Errorf("Get(x) after Remove = present; want absent")
	}
	if got := c.Used(); got != 0 {
		t.Errorf("Used = %d; want 0", got)
	}
}

// TestEvictionSparesHeld: a name the manager holds is never evicted, held
// before it is filled or after; Release and Remove end the hold.
func TestEvictionSparesHeld(t *testing.T) {
	c := open(t, t.TempDir(), 300)
	hundred := strings.Repeat("x", 100)
	if c.Hold("early") {
		t.Error("Hold(early) before its fill = true; want false")
	}
	put(t, c, "early", LevelWorkflow, hundred) // held before it came
	put(t, c, "late", LevelWorkflow, hundred)
	if !c.Hold("late") {
		t.Error("Hold(late) = false; want true")
	}
	put(t, c, "free", LevelWorkflow, hundred)

	// Only "free" may go.
	if _, err := c.Put("big", LevelWorkflow, false, 200, "", writeFill(hundred+hundred)); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Put(big) = %v; want ErrDiskFull", err)
	}
	put(t, c, "new", LevelWorkflow, hundred)
	if diff := cmp.Diff([]string{"free"}, c.Evicted()); diff != "" {
		t.Errorf("Evicted mismatch (-want +got):\n%s", diff)
	}
	// Released, "early" may go; "new", unheld and more recent, stays.
	c.Release("early")
	c.Get("new")
	put(t, c, "next", LevelWorkflow, hundred)
	if diff := cmp.Diff([]string{"early"}, c.Evicted()); diff != "" {
		t.Errorf("Evicted after Release mismatch (-want +got):\n%s", diff)
	}
	// Removed, "late" is not held any more when it comes again.
	if err := c.Remove("late"); err != nil {
		t.Fatal(err)
	}
	put(t, c, "late", LevelWorkflow, hundred)
	c.Get("new")
	c.Get("next")
	put(t, c, "last", LevelWorkflow, hundred)
	if diff := cmp.Diff([]string{"late"}, c.Evicted()); diff != "" {
		t.Errorf("Evicted after Remove mismatch (-want +got):\n%s", diff)
	}
	// A new connection to the manager starts with no hold.
	for _, n := range []string{"new", "next", "last"} {
		c.Hold(n)
	}
	c.ReleaseAll()
	put(t, c, "more", LevelWorkflow, hundred)
	if diff := cmp.Diff([]string{"new"}, c.Evicted()); diff != "" {
		t.Errorf("Evicted after ReleaseAll mismatch (-want +got):\n%s", diff)
	}
	checkClean(t, c)
}
