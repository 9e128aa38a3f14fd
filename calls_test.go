package trellis_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"trellis"
	"trellis/local"
	"trellis/sdk/go/library"
)

// TestHelperLibrary is not a test: the library tests run the test binary
// as a library process (go-plugin style) through it.
func TestHelperLibrary(t *testing.T) {
	if os.Getenv("TRELLIS_TEST_LIBRARY") != "1" {
		t.Skip("run as a library by the tests below")
	}
	lib := library.New("testlib")
	lib.Setup(func(context.Context) error {
		if f := os.Getenv("TRELLIS_TEST_SETUPS"); f != "" {
			fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			fh.WriteString("setup\n")
			fh.Close()
		}
		if os.Getenv("TRELLIS_TEST_SETUP_FAILS") == "1" {
			return errors.New("the model is not there")
		}
		return nil
	})
	lib.Register("add", library.JSON(func(_ context.Context, a [2]int) (int, error) { return a[0] + a[1], nil }))
	lib.Register("fail", library.JSON(func(_ context.Context, what string) (int, error) { return 0, fmt.Errorf("cannot %s", what) }))
	lib.Register("sleep", library.JSON(func(ctx context.Context, ms int) (int, error) {
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			return ms, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}))
	lib.Register("crash", func(context.Context, []byte) ([]byte, error) { os.Exit(3); return nil, nil })
	lib.Register("echo", func(_ context.Context, b []byte) ([]byte, error) { return b, nil })
	lib.Register("big", library.JSON(func(_ context.Context, n int) (string, error) { return strings.Repeat("x", n), nil }))
	lib.Register("key", func(ctx context.Context, _ []byte) ([]byte, error) { return []byte(library.IdempotencyKey(ctx)), nil })
	// upper reads in.txt from the call's directory and writes OUT.txt there.
	lib.Register("upper", func(ctx context.Context, _ []byte) ([]byte, error) {
		in, err := os.ReadFile(filepath.Join(library.Dir(ctx), "in.txt"))
		if err != nil {
			return nil, err
		}
		return []byte("ok"), os.WriteFile(filepath.Join(library.Dir(ctx), "OUT.txt"), bytes.ToUpper(in), 0o644)
	})
	library.Main(lib)
}

func testLibrary(name string, slots int, env ...string) *trellis.Library {
	return &trellis.Library{Name: name, Slots: slots,
		Command: strings.Join(append(env, "TRELLIS_TEST_LIBRARY=1", os.Args[0], "-test.run=^TestHelperLibrary$"), " ")}
}

func TestCalls(t *testing.T) {
	c := startLocal(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	setups := filepath.Join(t.TempDir(), "setups")
	lib := testLibrary("testlib", 4, "TRELLIS_TEST_SETUPS="+setups)
	lib.MaxInstances = 1
	if err := c.Install(ctx, lib); err != nil {
		t.Fatal(err)
	}
	t.Run("blocking", func(t *testing.T) {
		got, err := c.Call(ctx, "testlib", "add", []byte("[1,2]"))
		if err != nil || string(got) != "3" {
			t.Fatalf("add(1,2) = %q, %v; want 3", got, err)
		}
	})
	t.Run("a function's error", func(t *testing.T) {
		_, err := c.Call(ctx, "testlib", "fail", []byte(`"fly"`))
		var ce *trellis.CallError
		if !errors.As(err, &ce) || ce.Result.Kind != trellis.Failed || !strings.Contains(ce.Result.Message, "cannot fly") {
			t.Fatalf("fail(fly) = %v; want a failed call saying cannot fly", err)
		}
	})
	t.Run("many async calls, set-up once", func(t *testing.T) {
		var calls []*trellis.Task
		for i := range 2500 { // more than one Submit message carries
			calls = append(calls, trellis.NewCall("testlib", "add", []byte(fmt.Sprintf("[%d,%d]", i, i))))
		}
		hs, err := c.Submit(ctx, calls...)
		if err != nil {
			t.Fatal(err)
		}
		for i, h := range hs {
			r, err := h.Wait(ctx)
			if err != nil || !r.OK() || string(r.Output) != fmt.Sprint(2*i) {
				t.Fatalf("call %d: %v, %v, %q", i, err, r.Err(), r.Output)
			}
		}
		if b, _ := os.ReadFile(setups); strings.Count(string(b), "setup") != 1 {
			t.Errorf("set-up ran %d times; want once (MaxInstances 1, no crash yet)", strings.Count(string(b), "setup"))
		}
	})
	t.Run("idempotency key", func(t *testing.T) {
		call := trellis.NewCall("testlib", "key", nil)
		call.Key = "k1"
		hs, err := c.Submit(ctx, call, trellis.NewCall("testlib", "key", nil))
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, h := range hs {
			r, err := h.Wait(ctx)
			if err != nil || !r.OK() {
				t.Fatalf("key: %v, %v", err, r.Err())
			}
			keys = append(keys, string(r.Output))
		}
		session, key, _ := strings.Cut(keys[0], "/")
		if session == "" || key != "k1" || !strings.HasPrefix(keys[1], session+"/") || keys[1] == keys[0] {
			t.Errorf("library.IdempotencyKey of two calls: %q; want SESSION/k1 and another key of the same session", keys)
		}
	})
	t.Run("time limit", func(t *testing.T) {
		call := trellis.NewCall("testlib", "sleep", []byte("5000"))
		call.TimeLimit = 200 * time.Millisecond
		hs, err := c.Submit(ctx, call)
		if err != nil {
			t.Fatal(err)
		}
		if r, _ := hs[0].Wait(ctx); r.Kind != trellis.TimedOut {
			t.Errorf("sleep past its limit: %v (%s); want timed out", r.Kind, r.Message)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		hs, err := c.Submit(ctx, trellis.NewCall("testlib", "sleep", []byte("5000")))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // let it start; the result is cancelled either way
		hs[0].Cancel(ctx)
		if r, _ := hs[0].Wait(ctx); r.Kind != trellis.Cancelled {
			t.Errorf("cancelled call: %v (%s); want cancelled", r.Kind, r.Message)
		}
	})
	t.Run("a crash is retried in a new instance", func(t *testing.T) {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // a call that is in flight when the library crashes
			defer wg.Done()
			c.Call(ctx, "testlib", "sleep", []byte("300"))
		}()
		crash := trellis.NewCall("testlib", "crash", nil)
		crash.Retries = 0
		hs, err := c.Submit(ctx, crash)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := hs[0].Wait(ctx)
		if r.Kind != trellis.Failed || !strings.Contains(r.Message, "library crashed") {
			t.Errorf("crash: %v (%s); want failed: library crashed", r.Kind, r.Message)
		}
		wg.Wait()
		if got, err := c.Call(ctx, "testlib", "add", []byte("[2,2]")); err != nil || string(got) != "4" {
			t.Errorf("after the crash: %q, %v; want 4 from a new instance", got, err)
		}
	})
}

func TestLibraryThatCannotStart(t *testing.T) {
	c := startLocal(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Install(ctx, testLibrary("broken", 1, "TRELLIS_TEST_SETUP_FAILS=1")); err != nil {
		t.Fatal(err)
	}
	_, err := c.Call(ctx, "broken", "add", []byte("[1,2]"))
	var ce *trellis.CallError
	if !errors.As(err, &ce) || !strings.Contains(ce.Result.Message, "library failed to start") || !strings.Contains(ce.Result.Message, "the model is not there") {
		t.Fatalf("call of a library that cannot start: %v; want it to fail with the set-up's reason", err)
	}
	if _, err := c.Call(ctx, "nosuch", "add", nil); !errors.Is(err, trellis.ErrInvalid) {
		t.Errorf("call of a library never installed: %v; want ErrInvalid", err)
	}
}

// TestCallData: arguments and results too large for the messages travel as
// files, and calls read input files and write output files.
func TestCallData(t *testing.T) {
	c := startLocal(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Install(ctx, testLibrary("testlib", 2)); err != nil {
		t.Fatal(err)
	}
	t.Run("large arguments and result", func(t *testing.T) {
		big := make([]byte, 3<<20+17)
		for i := range big {
			big[i] = byte(i * 7)
		}
		got, err := c.Call(ctx, "testlib", "echo", big)
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("echo of %d bytes: %d bytes back, %v", len(big), len(got), err)
		}
	})
	t.Run("input and output files", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "out.txt")
		call := trellis.NewCall("testlib", "upper", nil).
			AddInput(trellis.Buffer([]byte("shout\n")), "in.txt").
			AddOutput(trellis.Output(out), "OUT.txt")
		hs, err := c.Submit(ctx, call)
		if err != nil {
			t.Fatal(err)
		}
		r, err := hs[0].Wait(ctx)
		if err != nil || !r.OK() {
			t.Fatalf("upper: %v %v", r.Err(), err)
		}
		if b, err := os.ReadFile(out); err != nil || string(b) != "SHOUT\n" {
			t.Fatalf("output %q, %v; want SHOUT", b, err)
		}
	})
	t.Run("a temp file from a task", func(t *testing.T) {
		tmp := trellis.Temp()
		maker := trellis.NewTask("echo made by a task > t.txt").AddOutput(tmp, "t.txt")
		out := filepath.Join(t.TempDir(), "out.txt")
		call := trellis.NewCall("testlib", "upper", nil).AddInput(tmp, "in.txt").AddOutput(trellis.Output(out), "OUT.txt")
		call.After = []*trellis.Task{maker}
		if err := runAll(ctx, c, maker, call); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(out); err != nil || string(b) != "MADE BY A TASK\n" {
			t.Fatalf("output %q, %v", b, err)
		}
	})
	t.Run("a missing input file", func(t *testing.T) {
		call := trellis.NewCall("testlib", "upper", nil).AddInput(trellis.LocalFile(filepath.Join(t.TempDir(), "nope")), "in.txt")
		hs, err := c.Submit(ctx, call)
		if err == nil {
			var r *trellis.Result
			r, err = hs[0].Wait(ctx)
			if err == nil && r.OK() {
				t.Fatal("a call with a missing input succeeded")
			}
		}
	})
}

// TestLibraryEveryWorker: an instance starts on every worker at install.
func TestLibraryEveryWorker(t *testing.T) {
	c := startLocal(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	setups := filepath.Join(t.TempDir(), "setups")
	lib := testLibrary("testlib", 1, "TRELLIS_TEST_SETUPS="+setups)
	lib.Resources.Cores = 0.5
	lib.EveryWorker = true
	if err := c.Install(ctx, lib); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(setups)
		if n := strings.Count(string(b), "setup"); n == 3 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%d set-ups after install; want one per worker (3)", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 6 { // served by the instances already there
		if got, err := c.Call(ctx, "testlib", "add", []byte(fmt.Sprintf("[%d,1]", i))); err != nil || string(got) != fmt.Sprint(i+1) {
			t.Fatalf("add: %q %v", got, err)
		}
	}
	if b, _ := os.ReadFile(setups); strings.Count(string(b), "setup") != 3 {
		t.Fatalf("set-ups %q; want 3", b)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Libraries) != 1 {
		t.Fatalf("status lists %d libraries; want 1", len(st.Libraries))
	}
	l := st.Libraries[0]
	workers := map[string]bool{}
	for _, i := range l.Instances {
		if i.Ready && i.Worker != "" {
			workers[i.Worker] = true
		}
	}
	if l.Name != "testlib" || l.CallsDone != 6 || l.InstancesStarted != 3 || len(workers) != 3 {
		t.Fatalf("status of the library: %+v; want 6 calls done and 3 instances started, ready on 3 workers", l)
	}
}

// runAll submits tasks and fails unless every one succeeds.
func runAll(ctx context.Context, c *trellis.Client, tasks ...*trellis.Task) error {
	hs, err := c.Submit(ctx, tasks...)
	if err != nil {
		return err
	}
	for _, h := range hs {
		r, err := h.Wait(ctx)
		if err != nil {
			return err
		}
		if !r.OK() {
			return fmt.Errorf("%s: %v", h.Name, r.Err())
		}
	}
	return nil
}

// TestCallsOverTheNetwork: the same calls with the client and workers on
// HTTP/2, as remote ones are, rather than in process.
func TestCallsOverTheNetwork(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := local.Start(ctx, local.Config{Workers: 2, Workdir: t.TempDir(), Network: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Install(ctx, testLibrary("testlib", 4)); err != nil {
		t.Fatal(err)
	}
	var calls []*trellis.Task
	for i := range 1500 {
		calls = append(calls, trellis.NewCall("testlib", "add", []byte(fmt.Sprintf("[%d,1]", i))))
	}
	hs, err := c.Submit(ctx, calls...)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		if r, err := h.Wait(ctx); err != nil || !r.OK() || string(r.Output) != fmt.Sprint(i+1) {
			t.Fatalf("call %d: %v %q", i, err, r.Output)
		}
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 200_000) // 3.2 MB: files both ways
	got, err := c.Call(ctx, "testlib", "echo", big)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("echo of %d bytes: %d back, %v", len(big), len(got), err)
	}
	if _, err := c.Call(ctx, "testlib", "fail", []byte(`"swim"`)); err == nil || !strings.Contains(err.Error(), "cannot swim") {
		t.Fatalf("fail(swim): %v", err)
	}
}
