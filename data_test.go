package trellis_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"trellis"
	"trellis/local"
)

// Temp files stay in the cluster: a consumer on another worker pulls the
// producer's output from its peer; none of it passes through the manager.
func TestLocalTempFilesMovePeerToPeer(t *testing.T) {
	c := startLocal(t, 2)
	dir := t.TempDir()
	tmp := trellis.Temp().Keep() // kept, not pruned: fetched at the end
	// 1 MiB of known bytes.
	produce := trellis.NewTask("head -c 1048576 /dev/zero | tr '\\0' 'x' > blob").AddOutput(tmp, "blob")
	var consumers []*trellis.Task
	for i := range 2 {
		out := trellis.Output(filepath.Join(dir, fmt.Sprintf("sum-%d.txt", i)))
		// Both hold their slot a while, so they run on both workers.
		consumers = append(consumers, trellis.NewTask("sha256sum < in | cut -c1-64 > sum; sleep 0.3").AddInput(tmp, "in").AddOutput(out, "sum"))
	}
	hs, err := c.Submit(context.Background(), append([]*trellis.Task{produce}, consumers...)...)
	if err != nil {
		t.Fatal(err)
	}
	workers := map[string]bool{}
	for _, h := range hs {
		r := wait(t, h)
		if !r.OK() {
			t.Fatalf("%s: %v (stderr %q)", h.Name, r.Err(), r.Stderr)
		}
		workers[r.Worker] = true
	}
	sum := sha256.Sum256(bytes.Repeat([]byte("x"), 1<<20))
	want := hex.EncodeToString(sum[:]) + "\n"
	for i := range 2 {
		got, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("sum-%d.txt", i)))
		if err != nil || string(got) != want {
			t.Errorf("sum-%d.txt = %q, %v; want %q", i, got, err, want)
		}
	}
	s, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.BytesFromPeers < 1<<20 {
		t.Errorf("consumers ran on %v but %d bytes came from peers; want the 1 MiB temp file", workers, s.BytesFromPeers)
	}
	if s.BytesFromManager != 0 {
		t.Errorf("%d bytes went from the manager to workers; want 0 (temp files never pass through it)", s.BytesFromManager)
	}
	// The client can still fetch a temp file on demand.
	back := filepath.Join(dir, "blob")
	if err := c.Fetch(context.Background(), tmp, back); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if got, _ := os.ReadFile(back); !bytes.Equal(got, bytes.Repeat([]byte("x"), 1<<20)) {
		t.Errorf("fetched temp file: %d bytes, want the 1 MiB produced", len(got))
	}
}

// Directories work as files: a local directory as an input, and a
// directory that one task writes as a temp output and others read.
func TestLocalDirectories(t *testing.T) {
	c := startLocal(t, 2)
	src := t.TempDir()
	for path, content := range map[string]string{"a.txt": "alpha\n", "sub/b.txt": "beta\n", "sub/deeper/c.txt": "gamma\n"} {
		p := filepath.Join(src, path)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(content), 0o644)
	}
	tree := trellis.NewTask("cd in && find . -type f | sort && cat sub/deeper/c.txt").AddInput(trellis.LocalFile(src), "in")
	made := trellis.Temp()
	produce := trellis.NewTask("mkdir -p d/e && echo made > d/e/f && echo top > d/g").AddOutput(made, "d")
	var consume []*trellis.Task
	for range 2 {
		consume = append(consume, trellis.NewTask("cat x/e/f x/g; sleep 0.2").AddInput(made, "x"))
	}
	hs, err := c.Submit(context.Background(), append([]*trellis.Task{tree, produce}, consume...)...)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"./a.txt\n./sub/b.txt\n./sub/deeper/c.txt\ngamma\n", "", "made\ntop\n", "made\ntop\n"}
	for i, h := range hs {
		r := wait(t, h)
		if !r.OK() {
			t.Fatalf("%s: %v (stderr %q)", h.Name, r.Err(), r.Stderr)
		}
		if string(r.Stdout) != want[i] {
			t.Errorf("%s: stdout %q, want %q", h.Name, r.Stdout, want[i])
		}
	}
}

// A directory output comes back to the client as a directory.
func TestLocalDirectoryOutput(t *testing.T) {
	c := startLocal(t, 1)
	dest := filepath.Join(t.TempDir(), "result")
	out := trellis.Output(dest)
	hs, err := c.Submit(context.Background(), trellis.NewTask("mkdir -p r/s && echo one > r/a && echo two > r/s/b").AddOutput(out, "r"))
	if err != nil {
		t.Fatal(err)
	}
	if r := wait(t, hs[0]); !r.OK() {
		t.Fatalf("%v", r.Err())
	}
	for p, want := range map[string]string{"a": "one\n", "s/b": "two\n"} {
		if got, err := os.ReadFile(filepath.Join(dest, p)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", p, got, err, want)
		}
	}
}

// A task-level file leaves the worker's cache once the tasks that read it
// are done; a worker-level one stays.
func TestLocalTaskLevelCache(t *testing.T) {
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := local.Start(ctx, local.Config{Workers: 1, Workdir: root})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := t.TempDir()
	big := filepath.Join(dir, "big.txt")
	os.WriteFile(big, bytes.Repeat([]byte("y"), 100<<10), 0o644) // over the inline limit: cached
	kept := filepath.Join(dir, "kept.txt")
	os.WriteFile(kept, bytes.Repeat([]byte("z"), 100<<10), 0o644)
	a := trellis.LocalFile(big).Cache(trellis.CacheTask)
	b := trellis.LocalFile(kept).Cache(trellis.CacheWorker)
	hs, err := c.Submit(ctx, trellis.NewTask("wc -c < a").AddInput(a, "a"), trellis.NewTask("wc -c < a").AddInput(a, "a").AddInput(b, "b"))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if r := wait(t, h); !r.OK() {
			t.Fatal(r.Err())
		}
	}
	cached := func(f *trellis.File) bool {
		_, err := os.Stat(filepath.Join(root, "worker-1", "cache", "files", f.Name()))
		return err == nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for cached(a) {
		if time.Now().After(deadline) {
			t.Fatal("the task-level file is still in the worker's cache after its readers finished")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !cached(b) {
		t.Error("the worker-level file left the cache; want it kept")
	}
}
