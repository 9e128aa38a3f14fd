package cache

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// writeThrough changes the file at p as a task would through its link:
// root writes despite the read-only mode, another user makes it writable
// first. The mode is put back after, so that only the bytes tell.
func writeThrough(t *testing.T, p string, flag int, data string) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|flag, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

func TestCheckFile(t *testing.T) {
	const content = "original"
	tests := []struct {
		name    string
		change  func(t *testing.T, c *Cache, dest string)
		changed bool // Check reports it, drops the entry and Evicted names it
	}{
		{name: "untouched", change: func(*testing.T, *Cache, string) {}},
		{name: "read", change: func(t *testing.T, _ *Cache, dest string) {
			if b, err := os.ReadFile(dest); err != nil || string(b) != content {
				t.Fatalf("read %q, %v", b, err)
			}
		}},
		{name: "appended", changed: true, change: func(t *testing.T, _ *Cache, dest string) {
			writeThrough(t, dest, os.O_APPEND, " and more")
		}},
		{name: "rewritten to the same size", changed: true, change: func(t *testing.T, _ *Cache, dest string) {
			writeThrough(t, dest, 0, "ORIGINAL")
		}},
		{name: "made writable", changed: true, change: func(t *testing.T, _ *Cache, dest string) {
			if err := os.Chmod(dest, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "replaced in the sandbox", change: func(t *testing.T, _ *Cache, dest string) {
			if err := os.Remove(dest); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dest, []byte("the task's own"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "linked into another sandbox meanwhile", change: func(t *testing.T, c *Cache, dest string) {
			if _, err := c.Link("f", dest+".other"); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "entry replaced in the cache meanwhile", change: func(t *testing.T, c *Cache, dest string) {
			writeThrough(t, dest, os.O_APPEND, " and more") // the old copy, no longer the cache's
			if err := c.Remove("f"); err != nil {
				t.Fatal(err)
			}
			put(t, c, "f", LevelWorkflow, "new")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := open(t, t.TempDir(), 0)
			put(t, c, "f", LevelWorkflow, content)
			// An hour old, so that a write now changes the modification
			// time even where timestamps are coarse.
			old := time.Now().Add(-time.Hour)
			if err := os.Chtimes(c.Path("f"), old, old); err != nil {
				t.Fatal(err)
			}
			dest := filepath.Join(t.TempDir(), "box", "in")
			s, err := c.Link("f", dest)
			if err != nil {
				t.Fatalf("Link = %v", err)
			}
			tt.change(t, c, dest)
			err = c.Check(s)
			if got := errors.Is(err, ErrChanged); got != tt.changed {
				t.Fatalf("Check = %v; want ErrChanged: %v", err, tt.changed)
			}
			_, held := c.Get("f")
			var wantEvicted []string
			if tt.changed {
				wantEvicted = []string{"f"}
				if !strings.Contains(err.Error(), "cached f changed") {
					t.Errorf("Check = %v; want it to name the entry", err)
				}
			}
			if held == tt.changed {
				t.Errorf("after Check the cache holds f: %v; want %v", held, !tt.changed)
			}
			if diff := cmp.Diff(wantEvicted, c.Evicted()); diff != "" {
				t.Errorf("Evicted mismatch (-want +got):\n%s", diff)
			}
			if err := c.Check(s); err != nil {
				t.Errorf("second Check = %v; want nil: the entry was dealt with", err)
			}
			checkClean(t, c)
		})
	}
}

func TestCheckDir(t *testing.T) {
	tests := []struct {
		name    string
		change  func(t *testing.T, dest string)
		changed bool
	}{
		{name: "untouched", change: func(*testing.T, string) {}},
		{name: "a file added", change: func(t *testing.T, dest string) {
			if err := os.WriteFile(filepath.Join(dest, "sub", "new"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "a file removed", change: func(t *testing.T, dest string) {
			if err := os.Remove(filepath.Join(dest, "a")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "a file appended to", changed: true, change: func(t *testing.T, dest string) {
			writeThrough(t, filepath.Join(dest, "sub", "b"), os.O_APPEND, "tampered")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := open(t, t.TempDir(), 0)
			if _, err := c.Put("tree", LevelForever, true, -1, "", treeFill(map[string]string{"a": "alpha", "sub/b": "beta"})); err != nil {
				t.Fatal(err)
			}
			old := time.Now().Add(-time.Hour)
			if err := os.Chtimes(filepath.Join(c.Path("tree"), "sub", "b"), old, old); err != nil {
				t.Fatal(err)
			}
			dest := filepath.Join(t.TempDir(), "in")
			s, err := c.Link("tree", dest)
			if err != nil {
				t.Fatalf("Link = %v", err)
			}
			tt.change(t, dest)
			err = c.Check(s)
			if got := errors.Is(err, ErrChanged); got != tt.changed {
				t.Fatalf("Check = %v; want ErrChanged: %v", err, tt.changed)
			}
			if tt.changed && !strings.Contains(err.Error(), "cached tree file sub/b changed") {
				t.Errorf("Check = %v; want it to name the file", err)
			}
			if _, held := c.Get("tree"); held == tt.changed {
				t.Errorf("after Check the cache holds tree: %v; want %v", held, !tt.changed)
			}
			// A forever entry that goes leaves the index too.
			if _, indexed := c.readIndex()["tree"]; indexed == tt.changed {
				t.Errorf("after Check the index records tree: %v; want %v", indexed, !tt.changed)
			}
			checkClean(t, c)
		})
	}
}

func TestCopy(t *testing.T) {
	c := open(t, t.TempDir(), 0)
	put(t, c, "f", LevelWorkflow, "original")
	if _, err := c.Put("tree", LevelWorkflow, true, -1, "", treeFill(map[string]string{"a": "alpha", "sub/run*": "#!/bin/sh\n"})); err != nil {
		t.Fatal(err)
	}
	box := t.TempDir()
	for name, files := range map[string]map[string]string{
		"f":    {".": "-rw-r--r-- original"},
		"tree": {"a": "-rw-r--r-- alpha", "sub/run": "-rwxr-xr-x #!/bin/sh\n"},
	} {
		dest := filepath.Join(box, "in", name)
		if err := c.Copy(name, dest); err != nil {
			t.Fatalf("Copy(%s) = %v", name, err)
		}
		for rel, want := range files {
			p := filepath.Join(dest, rel)
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(p)
			if got := fi.Mode().String() + " " + string(b); got != want {
				t.Errorf("copy of %s/%s: %q; want %q (writable, its own)", name, rel, got, want)
			}
			cached, _ := os.Stat(filepath.Join(c.Path(name), rel))
			if os.SameFile(fi, cached) {
				t.Errorf("copy of %s/%s is a hard link of the cached file", name, rel)
			}
			// The command changes it in place: the cache does not see it.
			if err := os.WriteFile(p, []byte("changed"), 0); err != nil {
				t.Errorf("writing the copy of %s/%s: %v", name, rel, err)
			}
		}
	}
	if b, _ := os.ReadFile(c.Path("f")); string(b) != "original" {
		t.Errorf("cached f holds %q after its copy changed; want %q", b, "original")
	}
	if b, _ := os.ReadFile(filepath.Join(c.Path("tree"), "a")); string(b) != "alpha" {
		t.Errorf("cached tree/a holds %q after its copy changed; want %q", b, "alpha")
	}
	if err := c.Copy("nope", filepath.Join(box, "nope")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Copy(nope) = %v; want ErrNotFound", err)
	}
	if err := c.Copy("f", filepath.Join(box, "in", "f")); err == nil {
		t.Errorf("Copy onto an existing path = nil; want an error")
	}
	if b, _ := os.ReadFile(filepath.Join(box, "in", "f")); string(b) != "changed" {
		t.Errorf("a failed Copy onto an existing path left %q there; want it untouched", b)
	}
}
