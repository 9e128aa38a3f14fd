package libhost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"trellis/internal/sysmon"
	"trellis/internal/worker/sandbox"
	"trellis/sdk/go/library/wire"
)

// Defaults applied to zero fields of a Spec.
const (
	DefaultStartTimeout = 60 * time.Second
	DefaultCancelGrace  = 2 * time.Second
)

// ioGrace bounds how long the host waits for the library's output to end
// once the process has exited, and for a process that closed its output to
// exit.
const ioGrace = time.Second

// Spec describes one library process.
type Spec struct {
	// Name is the library's name as installed (TRELLIS_LIBRARY_NAME).
	Name string
	// Command is run as /bin/sh -c Command in Dir, in a process group of
	// its own.
	Command string
	// Dir is the working directory, HOME and TMPDIR of the library.
	Dir string
	// Env holds "K=V" entries added to the sandbox's base environment
	// (PATH, HOME, TMPDIR); the TRELLIS_LIBRARY_* variables come last.
	Env []string
	// Slots is how many calls may be in the library at once; 0 means 1.
	Slots int
	// Mode is "direct" or "fork", passed to the library; "" means "direct".
	Mode string
	// MemoryMB limits the resident memory of the process group, in MiB; 0
	// means no limit. Over it the group is killed and every call in flight
	// fails with ErrResourceExceeded.
	MemoryMB int64
	// Cores limits the library's CPU time to this many cores where Warden
	// enforces CPU; 0 means no limit.
	Cores float64
	// CPUQuota says that Warden enforces Cores for the library: only then
	// does it get GOMAXPROCS of its cores. The worker sets it from
	// sandbox.Warden.LimitsCPU; a field, not derived here, so that a test
	// can try both cases on any machine.
	CPUQuota bool
	// MonitorSetting starts the library with the Go runtime monitor's
	// setting in GODEBUG (sysmon.ChildEnv), as the worker runs itself: a
	// Go library's monitor then stays out of the deep sleep that it would
	// take, and be woken from, between every two calls. The worker sets it
	// where it runs with the setting (sysmon.Active). Other languages
	// ignore it; the SDKs put GODEBUG back for the library's own children
	// (sysmon.Restore).
	MonitorSetting bool
	// Warden contains the library's processes (sandbox.Warden); nil
	// contains them by process group and parent-death signal only.
	Warden *sandbox.Warden
	// PollInterval is how often memory is sampled; 0 means
	// sandbox.DefaultPollInterval.
	PollInterval time.Duration
	// StartTimeout bounds the wait for the handshake; 0 means
	// DefaultStartTimeout.
	StartTimeout time.Duration
	// CancelGrace is how long a cancelled call may take to answer before
	// the library is killed; 0 means DefaultCancelGrace.
	CancelGrace time.Duration
	// OnLog, if set, receives the library's log frames, from the host's
	// reading goroutine: it must return quickly. If nil, log messages are
	// added to the stderr tail.
	OnLog func(msg string)
}

// Host is one running library process. Its methods are safe for concurrent
// use.
type Host struct {
	spec   Spec
	cmd    *exec.Cmd
	child  *sandbox.Child
	pgid   int
	stdin  *os.File // frames to the library, through bw
	stdout *os.File // frames from the library; read by readLoop only
	stderr *tail

	// Set by readLoop before it reports the handshake on ready; read-only
	// once Start has returned.
	fns   []string
	fnSet map[string]bool

	ready      chan error    // readLoop to Start: the handshake's outcome
	wake       chan struct{} // 1-slot: writeLoop has frames, or must stop
	poke       chan struct{} // 1-slot: superviseLoop must look at cancel deadlines
	exited     chan struct{} // closed by waitLoop once the process has exited
	readerDone chan struct{} // closed when readLoop returns
	done       chan struct{} // closed by waitLoop when all is settled
	wg         sync.WaitGroup

	// wmu is held while frames are written: by writeLoop, or by a call
	// that writes its own frame (see Call). It is taken after mu, never
	// the other way round.
	wmu sync.Mutex
	bw  *bufio.Writer // on stdin; guarded by wmu

	stopOnce sync.Once
	stopErr  error

	mu           sync.Mutex       // guards the fields below
	nextID       uint64           // the last call id used
	calls        map[uint64]*call // calls not yet answered (abandoned ones included), by id
	inFlight     int              // calls holding a slot: queued, sent, or abandoned after sending
	waiting      []*call          // calls waiting for a slot, first come first served
	queue        []outFrame       // frames for writeLoop
	started      bool             // the handshake was read
	stopping     bool             // Stop was called
	reaped       bool             // the process has exited: its group may no longer be signalled
	stoppedFirst bool             // Stop was called before the process exited
	killKind     error            // why the host killed the group (first reason wins)
	killWhy      string
	dead         *ExitError // set just before done is closed
}

// Start runs the library and waits for its handshake. ctx bounds the start
// only; the library then runs until Stop, its death, or a kill by the host.
// Every failure to start is an *ExitError of Kind ErrStartFailed, with the
// exit status and stderr tail; no goroutine or process is left behind.
func Start(ctx context.Context, spec Spec) (*Host, error) {
	if err := spec.fill(); err != nil {
		return nil, err
	}
	h := &Host{
		spec:       spec,
		stderr:     &tail{limit: stderrLimit},
		ready:      make(chan error, 1),
		wake:       make(chan struct{}, 1),
		poke:       make(chan struct{}, 1),
		exited:     make(chan struct{}),
		readerDone: make(chan struct{}),
		done:       make(chan struct{}),
		calls:      make(map[uint64]*call),
	}
	if err := ctx.Err(); err != nil {
		return nil, &ExitError{Kind: ErrStartFailed, Reason: "cancelled before start: " + err.Error()}
	}
	if err := h.spawn(); err != nil {
		return nil, &ExitError{Kind: ErrStartFailed, Reason: err.Error()}
	}
	h.wg.Go(h.waitLoop)
	h.wg.Go(h.readLoop)
	h.wg.Go(h.writeLoop)
	h.wg.Go(h.superviseLoop)

	timer := time.NewTimer(spec.StartTimeout)
	defer timer.Stop()
	select {
	case err := <-h.ready:
		if err == nil {
			return h, nil
		}
		// The library printed a bad line (and was killed) or closed its
		// output; waitLoop reports how it ended.
	case <-timer.C:
		h.kill(ErrStartFailed, fmt.Sprintf("no handshake within %v", spec.StartTimeout))
	case <-ctx.Done():
		h.kill(ErrStartFailed, "cancelled: "+context.Cause(ctx).Error())
	}
	h.wg.Wait()
	return nil, h.exitErr()
}

// fill validates spec and applies the defaults.
func (s *Spec) fill() error {
	switch {
	case s.Command == "":
		return errors.New("libhost: start library: empty command")
	case s.Dir == "":
		return errors.New("libhost: start library: empty directory")
	case s.Slots < 0:
		return fmt.Errorf("libhost: start library: %d slots", s.Slots)
	case s.Mode != "" && s.Mode != "direct" && s.Mode != "fork":
		return fmt.Errorf("libhost: start library: unknown mode %q", s.Mode)
	}
	s.Slots = max(s.Slots, 1)
	if s.Mode == "" {
		s.Mode = "direct"
	}
	if s.StartTimeout <= 0 {
		s.StartTimeout = DefaultStartTimeout
	}
	if s.CancelGrace <= 0 {
		s.CancelGrace = DefaultCancelGrace
	}
	if s.PollInterval <= 0 {
		s.PollInterval = sandbox.DefaultPollInterval
	}
	dir, err := filepath.Abs(s.Dir)
	if err != nil {
		return fmt.Errorf("libhost: start library in %q: %w", s.Dir, err)
	}
	s.Dir = dir
	return nil
}

// spawn starts the process with its pipes.
func (h *Host) spawn() error {
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return err
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return err
	}
	env := append(sandbox.Environ(h.spec.Dir, h.spec.Env), goMaxProcs(h.spec)...)
	if h.spec.MonitorSetting {
		env = sysmon.ChildEnv(env)
	}
	env = append(env,
		wire.EnvProtocol+"="+strconv.Itoa(wire.Version),
		wire.EnvName+"="+h.spec.Name,
		wire.EnvSlots+"="+strconv.Itoa(h.spec.Slots),
		wire.EnvMode+"="+h.spec.Mode,
	)
	h.cmd = &exec.Cmd{
		Path:      "/bin/sh",
		Args:      []string{"sh", "-c", h.spec.Command},
		Dir:       h.spec.Dir,
		Env:       env,
		Stdin:     stdinR,
		Stdout:    stdoutW,
		Stderr:    h.stderr,
		WaitDelay: ioGrace,
	}
	h.child, err = h.spec.Warden.Start(h.cmd, h.spec.Cores)
	stdinR.Close() // the child has its copies
	stdoutW.Close()
	if err != nil {
		stdinW.Close()
		stdoutR.Close()
		return fmt.Errorf("start command in %q: %w", h.spec.Dir, err)
	}
	h.pgid = h.child.Pid() // the shell leads its group
	h.stdin, h.stdout = stdinW, stdoutR
	h.bw = bufio.NewWriterSize(stdinW, ioBuffer)
	return nil
}

// Functions returns the function names the library announced, in its order.
func (h *Host) Functions() []string {
	return append([]string(nil), h.fns...)
}

// Done returns a channel that is closed once the process has exited and
// every call in flight has been answered or failed.
func (h *Host) Done() <-chan struct{} { return h.done }

// Exited reports whether the process has exited. It is true before any
// call in flight is failed for the exit, so the caller of a call that
// failed that way sees it at once; Done closes a moment later.
func (h *Host) Exited() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dead != nil
}

// Err returns why the library exited: nil while it runs and when it exited
// because of Stop, an *ExitError otherwise.
func (h *Host) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dead == nil || h.dead.Kind == ErrStopped {
		return nil
	}
	return h.dead
}

// Stderr returns the last 64 KiB of the library's standard error (and of its
// log messages when Spec.OnLog is nil).
func (h *Host) Stderr() []byte { return h.stderr.Bytes() }

// Stop closes the library's stdin, which asks it to exit, waits up to grace
// for it to exit, then kills its process group, and returns once every
// goroutine of the host has exited. grace <= 0 kills at once. Calls still in
// flight fail with an error matching ErrStopped unless the library answers
// them before it exits. Stop returns nil when the library exited with status
// 0 or had exited before Stop; otherwise an *ExitError of Kind ErrStopped
// saying how it ended. Later calls return the same.
func (h *Host) Stop(grace time.Duration) error {
	h.stopOnce.Do(func() { h.stopErr = h.stop(grace) })
	return h.stopErr
}

func (h *Host) stop(grace time.Duration) error {
	h.mu.Lock()
	wasDead := h.reaped
	h.stopping = true
	h.mu.Unlock()
	signal(h.wake)
	if !wasDead {
		t := time.NewTimer(max(grace, 0))
		select {
		case <-h.done:
		case <-t.C:
			h.kill(ErrStopped, fmt.Sprintf("did not exit within %v of stop", max(grace, 0)))
		}
		t.Stop()
	}
	h.wg.Wait()
	e := h.exitErr()
	if wasDead || e.Kind != ErrStopped || e.Reason == "" && e.Status == "exit status 0" {
		return nil
	}
	return e
}

// exitErr returns the final error; the host must be dead.
func (h *Host) exitErr() *ExitError {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dead
}

// kill sends SIGKILL to the process group, recording why; the first reason
// wins. Once the process has been seen to exit it signals nothing and
// records only a protocol error: a malformed frame found after the exit is
// still the best account of what went wrong, while the other reasons would
// hide the exit status.
func (h *Host) kill(kind error, why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.killKind == nil && (!h.reaped || kind == ErrProtocol) {
		h.killKind, h.killWhy = kind, why
	}
	if !h.reaped {
		h.child.Kill()
	}
}

// signal wakes the owner of a 1-slot channel without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// exitStatus describes how the process ended.
func exitStatus(ps *os.ProcessState) string {
	if ps == nil {
		return ""
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
		switch {
		case ws.Exited():
			return "exit status " + strconv.Itoa(ws.ExitStatus())
		case ws.Signaled():
			return "killed by signal " + strconv.Itoa(int(ws.Signal()))
		}
	}
	return ps.String()
}

// ceilMB converts bytes to MiB, rounding up.
func ceilMB(n int64) int64 {
	return (n + 1<<20 - 1) >> 20
}

// mbToBytes converts MiB to bytes, saturating.
func mbToBytes(mb int64) int64 {
	if mb > math.MaxInt64>>20 {
		return math.MaxInt64
	}
	return mb << 20
}

// goMaxProcs is GOMAXPROCS for a library limited to spec.Cores: its cores
// rounded up, unless spec.Env sets it or no limit is enforced (none: no
// cores, or a warden that sets no CPU quota, spec.CPUQuota false; a library
// may then use every core, and clients declare 1 core for a library that
// declares none). A Go library otherwise runs as many threads as the
// machine has cores, at least 2, however few its quota lets it use: every
// call then wakes an idle thread to read the next frame, which cost a Go
// library on half a core about a third of its CPU per call
// (docs/benchmarks.md, "Direct calls: CPU per call"). Other languages
// ignore the variable.
func goMaxProcs(spec Spec) []string {
	if spec.Cores <= 0 || !spec.CPUQuota || slices.ContainsFunc(spec.Env, func(kv string) bool { return strings.HasPrefix(kv, "GOMAXPROCS=") }) {
		return nil
	}
	return []string{"GOMAXPROCS=" + strconv.Itoa(int(math.Ceil(spec.Cores)))}
}
