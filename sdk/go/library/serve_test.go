package library

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"trellis/sdk/go/library/wire"
)

// harness runs ServeIO over pipes and plays the worker.
type harness struct {
	t    *testing.T
	in   *io.PipeWriter
	w    *bufio.Writer
	r    *bufio.Reader
	done chan struct{} // closed when ServeIO has returned
	err  error         // ServeIO's result, set before done closes
	hs   wire.Handshake
}

// serve starts l.ServeIO in a goroutine that the test's cleanup waits for,
// and reads the handshake.
func serve(t *testing.T, l *Library) *harness {
	t.Helper()
	h := startServe(t, l)
	hs, err := wire.ReadHandshake(h.r)
	if err != nil {
		t.Fatalf("ReadHandshake: %v", err)
	}
	h.hs = hs
	return h
}

func startServe(t *testing.T, l *Library) *harness {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	h := &harness{t: t, in: inW, w: bufio.NewWriter(inW), r: bufio.NewReader(outR), done: make(chan struct{})}
	go func() { // exits when ServeIO returns, which the cleanup causes
		h.err = l.ServeIO(context.Background(), inR, outW)
		outW.Close()
		close(h.done)
	}()
	t.Cleanup(func() {
		inW.Close()
		io.Copy(io.Discard, outR)
		<-h.done
	})
	return h
}

func (h *harness) send(hdr wire.Header, body string) {
	h.t.Helper()
	if err := wire.WriteFrame(h.w, &hdr, []byte(body)); err != nil {
		h.t.Fatal(err)
	}
	if err := h.w.Flush(); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) call(id uint64, fn, args string) {
	h.t.Helper()
	h.send(wire.Header{Type: wire.TypeCall, ID: id, Fn: fn}, args)
}

func (h *harness) read() wire.Frame {
	h.t.Helper()
	f, err := wire.ReadFrame(h.r)
	if err != nil {
		h.t.Fatalf("ReadFrame: %v", err)
	}
	return f
}

// stop closes the input and returns ServeIO's result.
func (h *harness) stop() error {
	h.in.Close()
	go io.Copy(io.Discard, h.r) // ends when ServeIO closes its output
	return h.wait()
}

// wait returns ServeIO's result once it has returned.
func (h *harness) wait() error {
	<-h.done
	return h.err
}

func echo(ctx context.Context, args []byte) ([]byte, error) { return args, nil }

func TestHandshakeAndSetup(t *testing.T) {
	var setups atomic.Int32
	l := New("math")
	l.Register("add", JSON(func(ctx context.Context, a [2]int) (int, error) { return a[0] + a[1], nil }))
	l.Register("echo", echo)
	l.Setup(func(ctx context.Context) error { setups.Add(1); return nil })
	h := serve(t, l)
	want := wire.Handshake{Version: 1, Name: "math", Functions: []string{"add", "echo"}}
	if diff := cmp.Diff(want, h.hs); diff != "" {
		t.Errorf("handshake mismatch (-want +got):\n%s", diff)
	}
	h.call(1, "add", "[1,2]")
	f := h.read()
	if diff := cmp.Diff(wire.Frame{Header: wire.Header{Type: "result", ID: 1, OK: true}, Body: []byte("3")}, f); diff != "" {
		t.Errorf("result mismatch (-want +got):\n%s", diff)
	}
	if err := h.stop(); err != nil {
		t.Errorf("ServeIO = %v; want nil at the end of input", err)
	}
	if n := setups.Load(); n != 1 {
		t.Errorf("set-up ran %d times; want 1", n)
	}
}

func TestSetupFails(t *testing.T) {
	l := New("broken")
	l.Setup(func(ctx context.Context) error { return errors.New("no model file") })
	h := startServe(t, l)
	if _, err := wire.ReadHandshake(h.r); err != io.EOF {
		t.Errorf("ReadHandshake = %v; want io.EOF (no handshake)", err)
	}
	if err := h.wait(); err == nil || !strings.Contains(err.Error(), "set-up: no model file") {
		t.Errorf("ServeIO = %v; want the set-up error", err)
	}
}

func TestResults(t *testing.T) {
	l := New("t")
	l.Register("echo", echo)
	l.Register("fail", func(ctx context.Context, args []byte) ([]byte, error) { return nil, errors.New("bad input") })
	l.Register("empty-error", func(ctx context.Context, args []byte) ([]byte, error) { return nil, errors.New("") })
	l.Register("panic", func(ctx context.Context, args []byte) ([]byte, error) { panic("oh no") })
	l.Register("json", JSON(func(ctx context.Context, a struct{ X int }) (map[string]int, error) {
		return map[string]int{"y": a.X * 2}, nil
	}))
	l.Register("log", func(ctx context.Context, args []byte) ([]byte, error) { Log(ctx, "hello"); return nil, nil })
	h := serve(t, l)

	tests := []struct {
		fn, args string
		want     wire.Frame
	}{
		{"echo", "abc", wire.Frame{Header: wire.Header{Type: "result", OK: true}, Body: []byte("abc")}},
		{"echo", "", wire.Frame{Header: wire.Header{Type: "result", OK: true}}},
		{"fail", "", wire.Frame{Header: wire.Header{Type: "result", Error: "bad input"}}},
		{"empty-error", "", wire.Frame{Header: wire.Header{Type: "result", Error: "error"}}},
		{"nope", "", wire.Frame{Header: wire.Header{Type: "result", Error: `unknown function "nope"`}}},
		{"json", `{"X":21}`, wire.Frame{Header: wire.Header{Type: "result", OK: true}, Body: []byte(`{"y":42}`)}},
		{"json", `not json`, wire.Frame{Header: wire.Header{Type: "result", Error: "decode arguments: invalid character 'o' in literal null (expecting 'u')"}}},
	}
	for i, tt := range tests {
		id := uint64(i + 10)
		h.call(id, tt.fn, tt.args)
		tt.want.Header.ID = id
		if diff := cmp.Diff(tt.want, h.read()); diff != "" {
			t.Errorf("%s(%q) mismatch (-want +got):\n%s", tt.fn, tt.args, diff)
		}
	}

	h.call(1, "panic", "")
	f := h.read()
	if f.Header.Error != "panic: oh no" || !strings.Contains(f.Header.Traceback, "serve_test.go") || f.Header.OK {
		t.Errorf("panic result = %+v; want error %q and a traceback naming serve_test.go", f.Header, "panic: oh no")
	}

	h.call(2, "log", "")
	if diff := cmp.Diff(wire.Header{Type: "log", Msg: "hello"}, h.read().Header); diff != "" {
		t.Errorf("log frame mismatch (-want +got):\n%s", diff)
	}
	if f := h.read(); !f.Header.OK || f.Header.ID != 2 {
		t.Errorf("result after log = %+v; want ok for id 2", f.Header)
	}
}

func TestCancelAndTimeout(t *testing.T) {
	l := New("t")
	started := make(chan struct{}, 1)
	l.Register("wait", func(ctx context.Context, args []byte) ([]byte, error) {
		started <- struct{}{}
		<-ctx.Done()
		return []byte("too late"), nil // a cancelled call is answered as cancelled anyway
	})
	l.Register("deadline", func(ctx context.Context, args []byte) ([]byte, error) {
		if _, ok := ctx.Deadline(); !ok {
			return nil, errors.New("no deadline")
		}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	t.Setenv(wire.EnvSlots, "4")
	h := serve(t, l)

	h.call(1, "wait", "")
	<-started
	h.send(wire.Header{Type: wire.TypeCancel, ID: 99}, "") // unknown: ignored
	h.send(wire.Header{Type: wire.TypeCancel, ID: 1}, "")
	want := wire.Header{Type: "result", ID: 1, Error: "cancelled", Cancelled: true}
	if diff := cmp.Diff(want, h.read().Header); diff != "" {
		t.Errorf("cancelled result mismatch (-want +got):\n%s", diff)
	}

	h.send(wire.Header{Type: wire.TypeCall, ID: 2, Fn: "deadline", TimeoutMS: 20}, "")
	want = wire.Header{Type: "result", ID: 2, Error: "context deadline exceeded"}
	if diff := cmp.Diff(want, h.read().Header); diff != "" {
		t.Errorf("timed-out result mismatch (-want +got):\n%s", diff)
	}

	// The end of input cancels running calls; they still answer.
	h.call(3, "wait", "")
	<-started
	h.in.Close()
	want = wire.Header{Type: "result", ID: 3, Error: "cancelled", Cancelled: true}
	if diff := cmp.Diff(want, h.read().Header); diff != "" {
		t.Errorf("result at end of input mismatch (-want +got):\n%s", diff)
	}
	if err := h.wait(); err != nil {
		t.Errorf("ServeIO = %v; want nil", err)
	}
}

func TestSlots(t *testing.T) {
	for _, slots := range []int{1, 3} {
		t.Run(fmt.Sprint(slots), func(t *testing.T) {
			t.Setenv(wire.EnvSlots, fmt.Sprint(slots))
			var running, peak atomic.Int32
			release := make(chan struct{})
			l := New("t")
			l.Register("hold", func(ctx context.Context, args []byte) ([]byte, error) {
				n := running.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				<-release
				running.Add(-1)
				return nil, nil
			})
			h := serve(t, l)
			const calls = 6
			for i := range calls {
				h.call(uint64(i+1), "hold", "")
			}
			deadline := time.Now().Add(5 * time.Second)
			for running.Load() < int32(slots) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond) // give an over-commit the chance to show
			close(release)
			seen := map[uint64]bool{}
			for range calls {
				f := h.read()
				if !f.Header.OK || seen[f.Header.ID] {
					t.Errorf("result %+v: want one ok result per call", f.Header)
				}
				seen[f.Header.ID] = true
			}
			if p := peak.Load(); p != int32(slots) {
				t.Errorf("peak concurrency = %d; want %d", p, slots)
			}
		})
	}
}

func TestProtocolErrors(t *testing.T) {
	tests := []struct {
		name  string
		frame func(h *harness)
		want  string
	}{
		{"garbage", func(h *harness) { h.in.Write([]byte("\xff\xff\xff\xff\x00\x00\x00\x00")) }, "malformed frame"},
		{"duplicate id", func(h *harness) { h.call(1, "block", ""); h.call(1, "block", "") }, "call id 1 is already in flight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(wire.EnvSlots, "2")
			l := New("t")
			l.Register("block", func(ctx context.Context, args []byte) ([]byte, error) { <-ctx.Done(); return nil, nil })
			h := serve(t, l)
			h.send(wire.Header{Type: "from-the-future"}, "") // ignored
			tt.frame(h)
			go io.Copy(io.Discard, h.r)
			err := h.wait()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ServeIO = %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestProtocolVersion(t *testing.T) {
	t.Setenv(wire.EnvProtocol, "2")
	l := New("t")
	h := startServe(t, l)
	if err := h.wait(); err == nil || !strings.Contains(err.Error(), "protocol") {
		t.Errorf("ServeIO = %v; want a protocol version error", err)
	}
}

func TestRegisterPanics(t *testing.T) {
	tests := []struct {
		name string
		do   func()
	}{
		{"bad library name", func() { New("a|b") }},
		{"empty library name", func() { New("") }},
		{"bad function name", func() { New("x").Register("a b", echo) }},
		{"empty function name", func() { New("x").Register("", echo) }},
		{"nil function", func() { New("x").Register("f", nil) }},
		{"duplicate", func() { l := New("x"); l.Register("f", echo); l.Register("f", echo) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", tt.name)
				}
			}()
			tt.do()
		})
	}
	l := New("x")
	l.Register("b", echo)
	l.Register("a", echo)
	if diff := cmp.Diff([]string{"b", "a"}, l.Functions()); diff != "" {
		t.Errorf("Functions mismatch (-want +got):\n%s", diff)
	}
}

func TestSlotsFromEnv(t *testing.T) {
	for env, want := range map[string]int{"": 1, "x": 1, "0": 1, "-3": 1, "4": 4, "99999999": maxSlots} {
		t.Setenv(wire.EnvSlots, env)
		if got := slotsFromEnv(); got != want {
			t.Errorf("slotsFromEnv with %q = %d; want %d", env, got, want)
		}
	}
}

// TestHelperProcess is a library run by TestServeStdio; it is not a test.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("GO_WANT_HELPER_PROCESS") != "1" {
		t.Skip("helper process")
	}
	l := New("stdio")
	l.Register("print", func(ctx context.Context, args []byte) ([]byte, error) {
		fmt.Println("stray print") // must land on stderr
		return []byte("ok"), nil
	})
	Main(l)
}

// TestServeStdio runs a library as a process: stray prints to os.Stdout go
// to stderr, the protocol is intact, and the end of stdin exits with 0.
func TestServeStdio(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("stdout is redirected on Linux only")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "GO_WANT_HELPER_PROCESS=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(out)
	if _, err := wire.ReadHandshake(r); err != nil {
		t.Fatalf("ReadHandshake: %v (stderr %q)", err, stderr.String())
	}
	w := bufio.NewWriter(in)
	wire.WriteFrame(w, &wire.Header{Type: wire.TypeCall, ID: 1, Fn: "print"}, nil)
	w.Flush()
	f, err := wire.ReadFrame(r)
	if err != nil || !f.Header.OK || string(f.Body) != "ok" {
		t.Errorf("result = %+v %q, %v; want ok %q", f.Header, f.Body, err, "ok")
	}
	in.Close()
	if rest, _ := io.ReadAll(r); len(rest) != 0 {
		t.Errorf("stdout after the result = %q; want nothing", rest)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("library exit: %v; want status 0", err)
	}
	if !strings.Contains(stderr.String(), "stray print") {
		t.Errorf("stderr = %q; want the stray print", stderr.String())
	}
}

// TestReadersReused: calls one after the other run on the goroutines done
// with theirs (which read the next call), not on a new goroutine each (40
// calls ran on 40 goroutines before).
func TestReadersReused(t *testing.T) {
	l := New("reuse")
	l.Register("goroutine", func(context.Context, []byte) ([]byte, error) {
		b := make([]byte, 64)
		b = b[:runtime.Stack(b, false)]
		id, _, _ := strings.Cut(strings.TrimPrefix(string(b), "goroutine "), " ")
		return []byte(id), nil
	})
	h := serve(t, l)
	seen := make(map[string]bool)
	const calls = 40
	for i := range calls {
		h.call(uint64(i+1), "goroutine", "")
		f := h.read()
		if !f.Header.OK {
			t.Fatalf("call %d: %+v", i+1, f.Header)
		}
		seen[string(f.Body)] = true
	}
	if len(seen) > calls/5 {
		// A few: the reader, the one done with the last call, and one made
		// now and then when that one was not yet waiting to read.
		t.Errorf("%d calls one after the other ran on %d goroutines; want a few, not one each", calls, len(seen))
	}
	if err := h.stop(); err != nil {
		t.Errorf("ServeIO: %v", err)
	}
}
