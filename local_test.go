package trellis_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"trellis"
)

func startLocal(t *testing.T, workers int) *trellis.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := trellis.StartLocal(ctx, trellis.LocalConfig{Workers: workers, Workdir: t.TempDir()})
	if err != nil {
		t.Fatalf("StartLocal: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wait(t *testing.T, h *trellis.Handle) *trellis.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := h.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait(%s): %v", h.Name, err)
	}
	return r
}

func TestLocalChain(t *testing.T) {
	c := startLocal(t, 2)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	if err := os.WriteFile(in, []byte("b\na\nc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mid := trellis.Output(filepath.Join(dir, "sorted.txt"))
	final := trellis.Output(filepath.Join(dir, "count.txt"))
	sortT := trellis.NewTask("sort data > sorted").AddInput(trellis.LocalFile(in), "data").AddOutput(mid, "sorted")
	countT := trellis.NewTask("head -n 1 s > first; wc -l < s >> first").AddInput(mid, "s").AddOutput(final, "first")
	// Consumer first: the manager must still order them.
	hs, err := c.Submit(context.Background(), countT, sortT)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if r := wait(t, h); !r.OK() {
			t.Fatalf("%s: %v (stderr %q)", h.Name, r.Err(), r.Stderr)
		}
	}
	for path, want := range map[string]string{filepath.Join(dir, "sorted.txt"): "a\nb\nc\n", filepath.Join(dir, "count.txt"): "a\n3\n"} {
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
		}
	}
}
