package trellis_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"trellis"
	"trellis/local"
)

func startLocal(t *testing.T, workers int) *trellis.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := local.Start(ctx, local.Config{Workers: workers, Workdir: t.TempDir()})
	if err != nil {
		t.Fatalf("local.Start: %v", err)
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

// Files over the inline limit go through the manager's store: upload,
// worker fetch, staged output, consumer fetch, client download.
func TestLocalLargeFiles(t *testing.T) {
	c := startLocal(t, 2)
	dir := t.TempDir()
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	in := filepath.Join(dir, "big.bin")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	copied := trellis.Output(filepath.Join(dir, "copy.bin"))
	twice := trellis.Output(filepath.Join(dir, "twice.bin"))
	cp := trellis.NewTask("cp in.bin out.bin").AddInput(trellis.LocalFile(in), "in.bin").AddOutput(copied, "out.bin")
	cat := trellis.NewTask("cat a b > ab").AddInput(copied, "a").AddInput(copied, "b").AddOutput(twice, "ab")
	hs, err := c.Submit(context.Background(), cp, cat)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if r := wait(t, h); !r.OK() {
			t.Fatalf("%s: %v", h.Name, r.Err())
		}
	}
	for path, want := range map[string][]byte{copied.Path(): data, twice.Path(): append(append([]byte{}, data...), data...)} {
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, %v; want the %d bytes written", path, len(got), err, len(want))
		}
	}
}

func TestLocalCancelRunning(t *testing.T) {
	c := startLocal(t, 1)
	marker := filepath.Join(t.TempDir(), "started")
	hs, err := c.Submit(context.Background(), trellis.NewTask("touch "+marker+"; sleep 30"))
	if err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatal("task did not start")
		}
	}
	if err := hs[0].Cancel(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := wait(t, hs[0]); r.Kind != trellis.Cancelled {
		t.Errorf("got %v (%s), want cancelled", r.Kind, r.Message)
	}
}

// RetryOnError spends retries on failures of the command; without it a
// failure is final. A counter outside the sandbox counts the attempts.
func TestLocalRetryOnError(t *testing.T) {
	c := startLocal(t, 1)
	dir := t.TempDir()
	flaky := func(name string, retry bool) *trellis.Task {
		counter := filepath.Join(dir, name)
		tk := trellis.NewTask(fmt.Sprintf("n=$(cat %[1]s 2>/dev/null || echo 0); echo $((n+1)) > %[1]s; [ $n -ge 1 ]", counter))
		tk.RetryOnError = retry
		return tk
	}
	hs, err := c.Submit(context.Background(), flaky("with", true), flaky("without", false))
	if err != nil {
		t.Fatal(err)
	}
	if r := wait(t, hs[0]); !r.OK() || r.Attempts != 2 {
		t.Errorf("with RetryOnError: %v after %d attempts; want success after 2", r.Err(), r.Attempts)
	}
	if r := wait(t, hs[1]); r.Kind != trellis.Failed || r.Attempts != 1 || r.ExitCode != 1 {
		t.Errorf("without RetryOnError: %v, exit %d after %d attempts; want failed, exit 1, after 1", r.Kind, r.ExitCode, r.Attempts)
	}
}

// After orders tasks that share no file; a failed predecessor skips the rest.
func TestLocalAfter(t *testing.T) {
	c := startLocal(t, 2)
	marker := filepath.Join(t.TempDir(), "first")
	first := trellis.NewTask("sleep 0.2; touch " + marker)
	second := trellis.NewTask("test -e " + marker)
	second.After = []*trellis.Task{first}
	bad := trellis.NewTask("exit 1")
	never := trellis.NewTask("true")
	never.After = []*trellis.Task{bad}
	hs, err := c.Submit(context.Background(), second, first, never, bad)
	if err != nil {
		t.Fatal(err)
	}
	if r := wait(t, hs[0]); !r.OK() {
		t.Errorf("second: %v; it ran before first", r.Err())
	}
	if r := wait(t, hs[2]); r.Kind != trellis.InputMissing {
		t.Errorf("task after a failure: %v, want input missing (skipped)", r.Kind)
	}
	if _, err := c.Submit(context.Background(), never); !errors.Is(err, trellis.ErrInvalid) {
		t.Errorf("After naming a task outside the call: %v, want ErrInvalid", err)
	}
}
