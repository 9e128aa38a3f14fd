package libhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"trellis/internal/sysmon"
	"trellis/sdk/go/library/wire"
)

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// helperSpec is a Spec that runs TestHelperProcess as a library in mode.
func helperSpec(t testing.TB, mode string) Spec {
	return Spec{
		Name:         "helper",
		Command:      "exec " + shellQuote(os.Args[0]) + " -test.run='^TestHelperProcess$' -- lib " + mode,
		Dir:          t.TempDir(),
		Env:          []string{"GO_WANT_HELPER_PROCESS=1"},
		StartTimeout: 30 * time.Second,
	}
}

// start starts spec and stops it when the test ends.
func start(t testing.TB, spec Spec) *Host {
	t.Helper()
	h, err := Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { h.Stop(5 * time.Second) })
	return h
}

// inFlightCalls returns how many slots are taken.
func (h *Host) inFlightCalls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.inFlight
}

// waitingCalls returns how many calls wait in line for a slot.
func (h *Host) waitingCalls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.waiting)
}

// pollUntil calls cond until it returns true or the deadline passes.
func pollUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond) // a poll interval, not a synchronisation
	}
}

// waitDone waits for h to die.
func waitDone(t testing.TB, h *Host) {
	t.Helper()
	select {
	case <-h.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the library did not die")
	}
}

// printfCommand returns a shell command that writes b exactly.
func printfCommand(b []byte) string {
	var s strings.Builder
	s.WriteString("printf '")
	for _, c := range b {
		fmt.Fprintf(&s, "\\%03o", c)
	}
	s.WriteString("'")
	return s.String()
}

// rawFrame encodes a frame from a raw header.
func rawFrame(header string, body string) []byte {
	b := []byte{0, 0, 0, 0, 0, 0, 0, 0}
	b[0], b[1], b[2], b[3] = byte(len(header)>>24), byte(len(header)>>16), byte(len(header)>>8), byte(len(header))
	b[4], b[5], b[6], b[7] = byte(len(body)>>24), byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
	return append(append(b, header...), body...)
}

func lines(t testing.TB, path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

func TestStartAndCall(t *testing.T) {
	t.Parallel()
	spec := helperSpec(t, "ok")
	h := start(t, spec)
	want := []string{"echo", "noop", "fail", "panic", "exit", "wait", "ignore", "conc", "alloc", "startenv", "lookupenv", "env", "deadline", "log", "print"}
	if diff := cmp.Diff(want, h.Functions()); diff != "" {
		t.Errorf("Functions mismatch (-want +got):\n%s", diff)
	}
	for i := range 3 {
		got, err := h.Call(context.Background(), "echo", []byte(fmt.Sprintf(`{"n":%d}`, i)), 0)
		if err != nil || string(got) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Errorf("Call(echo) = %q, %v", got, err)
		}
	}
	got, err := h.Call(context.Background(), "print", nil, time.Minute)
	if err != nil || string(got) != "printed" {
		t.Errorf("Call(print) = %q, %v; want %q", got, err, "printed")
	}
	pollUntil(t, 5*time.Second, "the stray print on stderr", func() bool { return bytes.Contains(h.Stderr(), []byte("a stray print")) })

	// Set-up runs once per instance.
	if n := lines(t, filepath.Join(spec.Dir, "setups")); n != 1 {
		t.Errorf("set-up ran %d times in one instance; want 1", n)
	}
	h2 := start(t, spec) // a second instance in the same directory
	if _, err := h2.Call(context.Background(), "noop", nil, 0); err != nil {
		t.Errorf("Call on the second instance: %v", err)
	}
	if n := lines(t, filepath.Join(spec.Dir, "setups")); n != 2 {
		t.Errorf("set-up ran %d times in two instances; want 2", n)
	}
	if err := h.Stop(5 * time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

func TestEnvironment(t *testing.T) {
	t.Parallel()
	spec := helperSpec(t, "ok")
	spec.Name, spec.Slots, spec.Mode = "mylib", 3, "fork"
	spec.Env = append(spec.Env, "EXTRA=1", "TRELLIS_LIBRARY_SLOTS=99")
	h := start(t, spec)
	got, err := h.Call(context.Background(), "env", []byte("TRELLIS_LIBRARY_PROTOCOL TRELLIS_LIBRARY_NAME TRELLIS_LIBRARY_SLOTS TRELLIS_LIBRARY_MODE HOME TMPDIR EXTRA"), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"TRELLIS_LIBRARY_PROTOCOL=1", "TRELLIS_LIBRARY_NAME=mylib", "TRELLIS_LIBRARY_SLOTS=3", "TRELLIS_LIBRARY_MODE=fork",
		"HOME=" + spec.Dir, "TMPDIR=" + spec.Dir, "EXTRA=1", "PWD=" + spec.Dir,
	}, "\n")
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("environment mismatch (-want +got):\n%s", diff)
	}
}

// TestGoMaxProcs: a library limited to some cores by a CPU quota gets
// GOMAXPROCS of its cores rounded up, unless its environment sets it; one
// without a limit, or whose cores no quota enforces, gets none.
func TestGoMaxProcs(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cores float64
		quota bool
		env   string
		want  string
	}{
		{0.5, true, "", "GOMAXPROCS=1"},
		{2.5, true, "", "GOMAXPROCS=3"},
		{0.5, true, "GOMAXPROCS=4", "GOMAXPROCS=4"},
		{0, true, "", "GOMAXPROCS="},
		{1, false, "", "GOMAXPROCS="},
		{2.5, false, "GOMAXPROCS=4", "GOMAXPROCS=4"},
	} {
		spec := helperSpec(t, "ok")
		spec.Cores, spec.CPUQuota = c.cores, c.quota
		if c.env != "" {
			spec.Env = append(spec.Env, c.env)
		}
		h := start(t, spec)
		got, err := h.Call(context.Background(), "env", []byte("GOMAXPROCS"), 0)
		if err != nil {
			t.Fatal(err)
		}
		if got, _, _ := strings.Cut(string(got), "\n"); got != c.want {
			t.Errorf("cores %v, quota enforced %v, environment %q: GOMAXPROCS is %q; want %q", c.cores, c.quota, c.env, got, c.want)
		}
	}
}

// TestMonitorSetting: a library started with MonitorSetting runs with the
// Go runtime monitor's setting in GODEBUG, its own GODEBUG after it; the
// Go SDK puts its own back for what it starts. Without MonitorSetting,
// GODEBUG is the library's own.
func TestMonitorSetting(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		setting bool
		env     string
		start   string // GODEBUG as the process started
		now     string // GODEBUG as the library sees it (and passes it on)
	}{
		{true, "", sysmon.Setting, "(unset)"},
		{true, "GODEBUG=gctrace=0", sysmon.Setting + ",gctrace=0", "gctrace=0"},
		{true, "GODEBUG=schedtrace=3600000", "schedtrace=3600000", "schedtrace=3600000"},
		{false, "", "(unset)", "(unset)"},
		{false, "GODEBUG=gctrace=0", "gctrace=0", "gctrace=0"},
	} {
		spec := helperSpec(t, "ok")
		spec.MonitorSetting = c.setting
		spec.Env = slices.DeleteFunc(slices.Clone(spec.Env), func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") })
		if c.env != "" {
			spec.Env = append(spec.Env, c.env)
		}
		h := start(t, spec)
		started, err := h.Call(context.Background(), "startenv", []byte("GODEBUG"), 0)
		if err != nil {
			t.Fatal(err)
		}
		now, err := h.Call(context.Background(), "lookupenv", []byte("GODEBUG"), 0)
		if err != nil {
			t.Fatal(err)
		}
		if string(started) != c.start || string(now) != c.now {
			t.Errorf("setting %v, environment %q: GODEBUG %q at start, %q now; want %q and %q", c.setting, c.env, started, now, c.start, c.now)
		}
	}
}

func TestLog(t *testing.T) {
	t.Parallel()
	spec := helperSpec(t, "ok")
	logs := make(chan string, 1)
	spec.OnLog = func(msg string) { logs <- msg }
	h := start(t, spec)
	if _, err := h.Call(context.Background(), "log", []byte("a call"), 0); err != nil {
		t.Fatal(err)
	}
	if got := <-logs; got != "hello from a call" {
		t.Errorf("OnLog got %q; want %q", got, "hello from a call")
	}

	h2 := start(t, helperSpec(t, "ok"))
	if _, err := h2.Call(context.Background(), "log", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(h2.Stderr(), []byte("log: hello from x\n")) {
		t.Errorf("Stderr = %q; want the log message", h2.Stderr())
	}
}

func TestSlots(t *testing.T) {
	t.Parallel()
	for _, slots := range []int{1, 3} {
		t.Run(strconv.Itoa(slots), func(t *testing.T) {
			t.Parallel()
			spec := helperSpec(t, "ok")
			spec.Slots = slots
			h := start(t, spec)
			var wg sync.WaitGroup
			peaks := make([]int, 3*slots)
			for i := range peaks {
				wg.Go(func() {
					got, err := h.Call(context.Background(), "conc", nil, 0)
					if err != nil {
						t.Errorf("Call(conc): %v", err)
					}
					peaks[i], _ = strconv.Atoi(string(got))
				})
			}
			wg.Wait()
			b, err := os.ReadFile(filepath.Join(spec.Dir, "maxconc"))
			if err != nil {
				t.Fatal(err)
			}
			if got := string(b); got != strconv.Itoa(slots) {
				t.Errorf("peak concurrency in the library = %s; want %d", got, slots)
			}
			for _, p := range peaks {
				if p > slots {
					t.Errorf("a call saw %d concurrent calls; slots = %d", p, slots)
				}
			}
		})
	}
}

func TestCallErrors(t *testing.T) {
	t.Parallel()
	h := start(t, helperSpec(t, "ok"))
	_, err := h.Call(context.Background(), "fail", []byte("42"), 0)
	var ce *CallError
	if !errors.As(err, &ce) || ce.Message != "bad input 42" || ce.Traceback != "" {
		t.Errorf("Call(fail) = %#v; want a *CallError %q", err, "bad input 42")
	}
	_, err = h.Call(context.Background(), "panic", nil, 0)
	if !errors.As(err, &ce) || ce.Message != "panic: boom" || !strings.Contains(ce.Traceback, "helper_test.go") {
		t.Errorf("Call(panic) = %#v; want a *CallError %q with a traceback through helper_test.go", err, "panic: boom")
	}
	_, err = h.Call(context.Background(), "nope", nil, 0)
	if !errors.Is(err, ErrUnknownFunction) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Call(nope) = %v; want ErrUnknownFunction naming it", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err = h.Call(ctx, "echo", nil, 0); !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Errorf("Call with a done context = %v; want ErrCancelled and context.Canceled", err)
	}
	// The library survives all of that.
	if got, err := h.Call(context.Background(), "echo", []byte("still here"), 0); err != nil || string(got) != "still here" {
		t.Errorf("Call(echo) = %q, %v", got, err)
	}
	if h.Err() != nil {
		t.Errorf("Err = %v; want nil", h.Err())
	}
}

func TestTimeoutAndCancel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		call func(h *Host) error
		want []error
		mark string // what the function's context said
	}{
		{"timeout", func(h *Host) error {
			_, err := h.Call(context.Background(), "wait", nil, 100*time.Millisecond)
			return err
		}, []error{ErrTimeout}, "context"},
		{"cancel", func(h *Host) error {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_, err := h.Call(ctx, "wait", nil, time.Minute)
			return err
		}, []error{ErrCancelled, context.DeadlineExceeded}, "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spec := helperSpec(t, "ok")
			spec.CancelGrace = 10 * time.Second // a kill would fail the test
			h := start(t, spec)
			start := time.Now()
			err := tt.call(h)
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Errorf("Call = %v; want %v", err, want)
				}
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Call took %v", d)
			}
			mark := filepath.Join(spec.Dir, "cancelled")
			pollUntil(t, 5*time.Second, "the function's context to end", func() bool { _, err := os.Stat(mark); return err == nil })
			if b, _ := os.ReadFile(mark); !strings.Contains(string(b), tt.mark) {
				t.Errorf("the function's ctx.Err() = %q; want %q", b, tt.mark)
			}
			// The library answered the cancel and serves on; the slot is free.
			if got, err := h.Call(context.Background(), "echo", []byte("x"), time.Minute); err != nil || string(got) != "x" {
				t.Errorf("Call(echo) after %s = %q, %v", tt.name, got, err)
			}
			if h.Err() != nil {
				t.Errorf("Err = %v; want nil", h.Err())
			}
		})
	}
}

func TestWaitForSlotCancelled(t *testing.T) {
	t.Parallel()
	spec := helperSpec(t, "ok")
	spec.Slots = 1
	h := start(t, spec)
	first := make(chan error, 1)
	ctx1, cancel1 := context.WithCancel(context.Background())
	defer cancel1()
	go func() { // waited for below
		_, err := h.Call(ctx1, "wait", nil, 0)
		first <- err
	}()
	pollUntil(t, 5*time.Second, "the first call to take the slot", func() bool { return h.inFlightCalls() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := h.Call(ctx, "echo", nil, 0); !errors.Is(err, ErrCancelled) {
		t.Errorf("Call waiting for a slot = %v; want ErrCancelled", err)
	}
	cancel1()
	if err := <-first; !errors.Is(err, ErrCancelled) {
		t.Errorf("first Call = %v; want ErrCancelled", err)
	}
	if _, err := h.Call(context.Background(), "echo", nil, 0); err != nil {
		t.Errorf("Call after both: %v", err)
	}
}

func TestWaitForSlotTimesOut(t *testing.T) {
	t.Parallel()
	spec := helperSpec(t, "ok")
	spec.Slots = 1
	h := start(t, spec)
	const firstLimit = 2 * time.Second
	began := time.Now() // the first call's limit runs out no sooner than began+firstLimit
	first := make(chan error, 1)
	go func() { // waited for below
		_, err := h.Call(context.Background(), "wait", nil, firstLimit)
		first <- err
	}()
	pollUntil(t, 5*time.Second, "the first call to take the slot", func() bool { return h.inFlightCalls() == 1 })
	if _, err := h.Call(context.Background(), "echo", nil, 50*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Errorf("Call waiting for a slot = %v; want ErrTimeout", err)
	}
	// A call that waited is sent with what is left of its time limit.
	second := make(chan []byte, 1)
	go func() { // waited for below
		got, err := h.Call(context.Background(), "deadline", nil, 10*time.Second)
		if err != nil {
			t.Errorf("Call(deadline): %v", err)
		}
		second <- got
	}()
	pollUntil(t, 5*time.Second, "the second call to wait for the slot", func() bool { return h.waitingCalls() == 1 })
	// It began before now and gets the slot no sooner than the first
	// call's limit runs out: it waited at least this long.
	waited := began.Add(firstLimit).Sub(time.Now())
	if err := <-first; !errors.Is(err, ErrTimeout) {
		t.Errorf("first Call = %v; want ErrTimeout", err)
	}
	ms, _ := strconv.Atoi(string(<-second))
	if max := (10*time.Second - waited).Milliseconds(); ms <= 0 || int64(ms) > max {
		t.Errorf("the library saw %d ms left; want at most %d: 10 s less the %v it waited at least", ms, max, waited)
	}
	if got, err := h.Call(context.Background(), "deadline", nil, 0); err != nil || string(got) != "none" {
		t.Errorf("Call(deadline) without a limit = %q, %v; want none", got, err)
	}
}

func TestUnresponsive(t *testing.T) {
	t.Parallel()
	spec := helperSpec(t, "ok")
	spec.Slots = 2
	spec.CancelGrace = 200 * time.Millisecond
	h := start(t, spec)
	other := make(chan error, 1)
	go func() { // waited for below
		_, err := h.Call(context.Background(), "wait", nil, 0)
		other <- err
	}()
	start := time.Now()
	_, err := h.Call(context.Background(), "ignore", nil, 50*time.Millisecond)
	if !errors.Is(err, ErrTimeout) {
		t.Errorf("Call(ignore) = %v; want ErrTimeout", err)
	}
	// Its caller must know that the library died with the call, at once:
	// the worker holds the call's report until the library's end.
	if !h.Exited() {
		t.Errorf("Exited = false as the call that got the library killed returns; want true")
	}
	waitDone(t, h)
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("killed after %v; want after the time limit plus the cancel grace (250ms)", d)
	}
	err = <-other
	for _, target := range []error{ErrUnresponsive, ErrCrashed} {
		if !errors.Is(err, target) || !errors.Is(h.Err(), target) {
			t.Errorf("in-flight call error = %v, Err = %v; want both to match %v", err, h.Err(), target)
		}
	}
	if !strings.Contains(err.Error(), "(ignore) did not stop within 200ms of its cancel") || !strings.Contains(err.Error(), "killed by signal 9") {
		t.Errorf("error = %q; want the call and the grace named, and the kill", err)
	}
	if _, err := h.Call(context.Background(), "echo", nil, 0); !errors.Is(err, ErrUnresponsive) {
		t.Errorf("Call after the kill = %v; want ErrUnresponsive", err)
	}
}

func TestCrash(t *testing.T) {
	t.Parallel()
	spec := helperSpec(t, "ok")
	spec.Slots = 2
	h := start(t, spec)
	other := make(chan error, 1)
	go func() { // waited for below
		_, err := h.Call(context.Background(), "wait", nil, 0)
		other <- err
	}()
	pollUntil(t, 5*time.Second, "the other call to be in flight", func() bool { return h.inFlightCalls() == 1 })
	_, err := h.Call(context.Background(), "exit", nil, 0)
	if !errors.Is(err, ErrCrashed) || errors.Is(err, ErrUnresponsive) {
		t.Fatalf("Call(exit) = %v; want ErrCrashed", err)
	}
	if !h.Exited() {
		t.Errorf("Exited = false as a call that the crash failed returns; want true")
	}
	for _, want := range []string{"library crashed", "exit status 3", "dying now"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Status != "exit status 3" || ee.Stderr != "dying now" {
		t.Errorf("error = %#v; want an *ExitError with status and stderr", err)
	}
	if err2 := <-other; err2 != err {
		t.Errorf("the other call's error = %v; want the same %v", err2, err)
	}
	waitDone(t, h)
	if h.Err() != err {
		t.Errorf("Err = %v; want %v", h.Err(), err)
	}
	if _, err2 := h.Call(context.Background(), "echo", nil, 0); !errors.Is(err2, ErrNotSent) || !errors.Is(err2, err) {
		t.Errorf("Call after the crash = %v; want ErrNotSent and %v", err2, err)
	}
	if err := h.Stop(time.Second); err != nil || h.Err() != ee {
		t.Errorf("Stop after a crash = %v, Err = %v; want nil and the crash", err, h.Err())
	}
}

func TestStartFailures(t *testing.T) {
	t.Parallel()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		spec    func(t *testing.T) Spec
		ctx     context.Context
		want    []string
		atLeast time.Duration
	}{
		{"set-up fails", func(t *testing.T) Spec { return helperSpec(t, "setupfail") }, nil,
			[]string{"library failed to start: exited before its handshake (exit status 1)", "loading the model", "set-up: no model file"}, 0},
		{"exits at once", shellSpec("echo oops >&2; exit 3"), nil,
			[]string{"exited before its handshake (exit status 3); stderr: oops"}, 0},
		{"prints garbage", shellSpec("echo hello; sleep 10"), nil,
			[]string{`wire: bad handshake: want TRELLIS-LIBRARY|VERSION|NAME|FUNCTIONS, got "hello" (killed by signal 9)`}, 0},
		{"other version", shellSpec("echo 'TRELLIS-LIBRARY|2|x|f'; sleep 10"), nil,
			[]string{"unsupported protocol version 2"}, 0},
		{"never handshakes", shellSpec("echo starting >&2; sleep 10"), nil,
			[]string{"no handshake within 300ms (killed by signal 9); stderr: starting"}, 300 * time.Millisecond},
		{"closes its output", shellSpec("exec >&-; sleep 10"), nil,
			[]string{"closed its standard output (killed by signal 9)"}, 0},
		{"not found", shellSpec("exec /nonexistent/lib"), nil,
			[]string{"(exit status 127)", "/nonexistent/lib"}, 0},
		{"cancelled", shellSpec("sleep 10"), cancelled,
			[]string{"cancelled before start"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spec := tt.spec(t)
			spec.StartTimeout = 300 * time.Millisecond
			if tt.name == "set-up fails" {
				spec.StartTimeout = 30 * time.Second
			}
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			start := time.Now()
			h, err := Start(ctx, spec)
			if h != nil {
				h.Stop(0)
				t.Fatalf("Start succeeded")
			}
			if !errors.Is(err, ErrStartFailed) {
				t.Errorf("Start = %v; want ErrStartFailed", err)
			}
			for _, want := range tt.want {
				if !strings.Contains(fmt.Sprint(err), want) {
					t.Errorf("Start = %q; want it to contain %q", err, want)
				}
			}
			if d := time.Since(start); d < tt.atLeast || d > 10*time.Second {
				t.Errorf("Start took %v; want at least %v", d, tt.atLeast)
			}
		})
	}
}

// shellSpec returns a Spec for a shell-script library.
func shellSpec(script string) func(t *testing.T) Spec {
	return func(t *testing.T) Spec {
		return Spec{Name: "sh", Command: script, Dir: t.TempDir()}
	}
}

func TestBadSpec(t *testing.T) {
	t.Parallel()
	for _, spec := range []Spec{
		{Dir: "/tmp"},
		{Command: "true"},
		{Command: "true", Dir: "/tmp", Slots: -1},
		{Command: "true", Dir: "/tmp", Mode: "thread"},
	} {
		if h, err := Start(context.Background(), spec); err == nil {
			h.Stop(0)
			t.Errorf("Start(%+v) succeeded", spec)
		}
	}
}

func TestMalformedFrames(t *testing.T) {
	t.Parallel()
	hello := "printf 'TRELLIS-LIBRARY|1|bad|f\\n'; head -c 8 >/dev/null; "
	tests := []struct {
		name, output, want string
	}{
		{"header over the limit", "\xff\xff\xff\xff\x00\x00\x00\x00", "malformed frame from library: header of 4294967295 bytes is over the limit of 65536"},
		{"not an object", string(rawFrame(`[1,2]`, "")), "malformed frame from library: header is not a JSON object"},
		{"unknown id", string(rawFrame(`{"type":"result","id":99,"ok":true}`, "")), "malformed frame from library: result for unknown call id 99"},
		{"ends inside", string(rawFrame(`{"type":"result","id":1,"ok":true}`, "abc")[:20]) + "", "malformed frame from library: stream ends inside a frame's header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			script := hello + printfCommand([]byte(tt.output)) + "; exec sleep 10"
			if tt.name == "ends inside" {
				script = hello + printfCommand([]byte(tt.output)) + "; exit 0"
			}
			h := start(t, Spec{Name: "sh", Command: script, Dir: t.TempDir()})
			_, err := h.Call(context.Background(), "f", []byte("x"), 0)
			if !errors.Is(err, ErrProtocol) || !strings.Contains(fmt.Sprint(err), tt.want) {
				t.Errorf("Call = %v; want ErrProtocol containing %q", err, tt.want)
			}
			waitDone(t, h)
			if !errors.Is(h.Err(), ErrProtocol) {
				t.Errorf("Err = %v; want ErrProtocol", h.Err())
			}
		})
	}
}

func TestHugeArguments(t *testing.T) {
	t.Parallel()
	h := start(t, helperSpec(t, "ok"))
	args := bytes.Repeat([]byte("0123456789abcdef"), 10<<20/16)
	got, err := h.Call(context.Background(), "echo", args, time.Minute)
	if err != nil || !bytes.Equal(got, args) {
		t.Errorf("Call(echo, 10 MiB) = %d bytes, %v; want the arguments back", len(got), err)
	}
	if _, err := h.Call(context.Background(), "echo", make([]byte, wire.MaxBody+1), 0); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Errorf("Call with arguments over the limit = %v; want a refusal", err)
	}
}

func TestMemoryLimit(t *testing.T) {
	t.Parallel()
	spec := helperSpec(t, "ok")
	spec.MemoryMB = 100
	spec.PollInterval = 10 * time.Millisecond
	h := start(t, spec)
	_, err := h.Call(context.Background(), "alloc", []byte("300"), time.Minute)
	if !errors.Is(err, ErrResourceExceeded) || !strings.Contains(err.Error(), "exceeded the limit of 100 MB") {
		t.Errorf("Call(alloc 300 MB) = %v; want ErrResourceExceeded", err)
	}
	waitDone(t, h)
	if !errors.Is(h.Err(), ErrResourceExceeded) {
		t.Errorf("Err = %v; want ErrResourceExceeded", h.Err())
	}
}

func TestStop(t *testing.T) {
	t.Parallel()
	t.Run("graceful", func(t *testing.T) {
		t.Parallel()
		h := start(t, helperSpec(t, "ok"))
		if err := h.Stop(5 * time.Second); err != nil {
			t.Errorf("Stop = %v; want nil", err)
		}
		select {
		case <-h.Done():
		default:
			t.Error("Done is open after Stop")
		}
		if err := h.Err(); err != nil {
			t.Errorf("Err after Stop = %v; want nil", err)
		}
		if err := h.Stop(5 * time.Second); err != nil {
			t.Errorf("second Stop = %v; want nil", err)
		}
		if _, err := h.Call(context.Background(), "echo", nil, 0); !errors.Is(err, ErrStopped) {
			t.Errorf("Call after Stop = %v; want ErrStopped", err)
		}
	})
	t.Run("in-flight call", func(t *testing.T) {
		t.Parallel()
		h := start(t, helperSpec(t, "ok"))
		res := make(chan error, 1)
		go func() { // waited for below
			_, err := h.Call(context.Background(), "wait", nil, 0)
			res <- err
		}()
		pollUntil(t, 5*time.Second, "the call to be in flight", func() bool { return h.inFlightCalls() == 1 })
		if err := h.Stop(5 * time.Second); err != nil {
			t.Errorf("Stop = %v; want nil", err)
		}
		if err := <-res; !errors.Is(err, ErrStopped) {
			t.Errorf("in-flight call = %v; want ErrStopped", err)
		}
	})
	t.Run("does not exit", func(t *testing.T) {
		t.Parallel()
		h := start(t, helperSpec(t, "ok"))
		res := make(chan error, 1)
		go func() { // waited for below
			_, err := h.Call(context.Background(), "ignore", nil, 0)
			res <- err
		}()
		pollUntil(t, 5*time.Second, "the call to be in flight", func() bool { return h.inFlightCalls() == 1 })
		start := time.Now()
		err := h.Stop(200 * time.Millisecond)
		if !errors.Is(err, ErrStopped) || !strings.Contains(err.Error(), "did not exit within 200ms of stop (killed by signal 9)") {
			t.Errorf("Stop = %v; want ErrStopped after a kill", err)
		}
		if d := time.Since(start); d < 200*time.Millisecond || d > 5*time.Second {
			t.Errorf("Stop took %v; want the grace of 200ms and a little", d)
		}
		if err := <-res; !errors.Is(err, ErrStopped) {
			t.Errorf("in-flight call = %v; want ErrStopped", err)
		}
		if h.Err() != nil {
			t.Errorf("Err = %v; want nil after Stop", h.Err())
		}
		if err2 := h.Stop(time.Second); err2 != err {
			t.Errorf("second Stop = %v; want %v", err2, err)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		t.Parallel()
		h := start(t, helperSpec(t, "ok"))
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				if err := h.Stop(5 * time.Second); err != nil {
					t.Errorf("Stop = %v", err)
				}
			})
		}
		wg.Wait()
	})
}

// TestNoGoroutineLeaks runs sequentially, so parallel tests do not disturb
// the count.
func TestNoGoroutineLeaks(t *testing.T) {
	// The sandbox's fork thread starts with the first process and lives
	// with the test binary: a library started and stopped first puts it
	// in the count, so that only what a library leaves behind is counted.
	warm := start(t, helperSpec(t, "ok"))
	warm.Stop(5 * time.Second)
	before := runtime.NumGoroutine()
	h := start(t, helperSpec(t, "ok"))
	if _, err := h.Call(context.Background(), "echo", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Call(context.Background(), "wait", nil, 10*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatal(err)
	}
	h.Stop(5 * time.Second)

	crashed := start(t, helperSpec(t, "ok")) // dies without Stop
	crashed.Call(context.Background(), "exit", nil, 0)
	waitDone(t, crashed)

	spec := shellSpec("sleep 10")(t)
	spec.StartTimeout = 50 * time.Millisecond
	if _, err := Start(context.Background(), spec); err == nil {
		t.Fatal("Start succeeded")
	}
	pollUntil(t, 5*time.Second, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

// TestCrashLeavesWaitingCallsUnsent: a call that waited for a slot when the
// library crashed never reached it: its error says so (ErrNotSent), so that
// the worker hands it back to run elsewhere as if it never started, rather
// than failing it with the crash of a call it had nothing to do with.
func TestCrashLeavesWaitingCallsUnsent(t *testing.T) {
	t.Parallel()
	spec := helperSpec(t, "ok")
	spec.Slots = 1
	h := start(t, spec)
	crashed := make(chan error, 1)
	go func() { // waited for below
		_, err := h.Call(context.Background(), "exit", nil, 0)
		crashed <- err
	}()
	pollUntil(t, 5*time.Second, "the crashing call to hold the slot", func() bool { return h.inFlightCalls() == 1 })
	_, err := h.Call(context.Background(), "echo", nil, 0) // waits for the slot
	if !errors.Is(err, ErrNotSent) || !errors.Is(err, ErrCrashed) {
		t.Errorf("the waiting call's error = %v; want ErrNotSent with the crash", err)
	}
	if err := <-crashed; !errors.Is(err, ErrCrashed) || errors.Is(err, ErrNotSent) {
		t.Errorf("the crashing call's error = %v; want ErrCrashed, not ErrNotSent", err)
	}
}
