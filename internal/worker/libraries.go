package worker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/sysmon"
	"trellis/internal/worker/cache"
	"trellis/internal/worker/libhost"
	"trellis/internal/worker/sandbox"
)

// stopGrace is how long a library may take to exit once asked to.
const stopGrace = 5 * time.Second

// libInstance is a library process this worker runs for the manager.
type libInstance struct {
	id       uint64
	attempt  uint32
	name     string // its library's
	host     *libhost.Host
	dir      string             // its sandbox; calls with files get a directory inside
	cancel   context.CancelFunc // stops it (its context is the worker's, not a session's)
	stopping bool               // the manager asked: its end is not a crash
	// The session its reports go to (guarded by libraries.mu); nil while
	// it is kept for a manager that restarts (keptRun names the manager's
	// run), its reports held in pending until a session of that run takes
	// it over.
	sess    *session
	keptRun string
	pending []event
	// calls counts the calls started in it whose end is not yet reported:
	// the instance's end waits for them, so that a call that timed out
	// (and got the library killed) is reported as such, not as a crash.
	calls atomic.Int32
}

// libraries holds the running library instances; attempts of calls look
// them up concurrently. When the connection to the manager breaks, the
// instances go on running, kept (with the calls running in them, kept.go)
// for a manager that restarts with its journal: it adopts them, or stops
// them; a manager of another run never sees them (attach stops them).
type libraries struct {
	mu   sync.Mutex // guards byID, the sessions and reports of instances, and session.libsClosed
	byID map[uint64]*libInstance
	wg   sync.WaitGroup // the goroutines of running instances
}

// count returns how many library instances the worker holds.
func (l *libraries) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.byID)
}

// dead reports whether the library process has ended: true for a call
// that the end failed or timed out, as it learns so (Done may close later).
func (inst *libInstance) dead() bool { return inst.host.Exited() }

// register adds inst, started for session s, unless s has ended meanwhile.
func (l *libraries) register(inst *libInstance, s *session) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.libsClosed {
		return false
	}
	inst.sess = s
	l.byID[inst.id] = inst
	return true
}

// emit hands ev, from instance inst (nil: not registered yet, from session
// s), to the session it belongs to now, or holds it while it is kept.
func (l *libraries) emit(inst *libInstance, s *session, ev event) {
	l.mu.Lock()
	if inst != nil {
		if s = inst.sess; s == nil {
			inst.pending = append(inst.pending, ev)
			l.mu.Unlock()
			return
		}
	}
	l.mu.Unlock()
	s.emit(ev)
}

// detach ends session s's hold on its instances: with a run ID (the
// connection broke) they are kept for that manager's return, and their
// IDs returned; without one they are stopped. Instances s is still
// starting stop when they find it closed (register).
func (l *libraries) detach(s *session, runID string) map[uint64]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	s.libsClosed = true
	kept := make(map[uint64]bool)
	for id, inst := range l.byID {
		switch {
		case inst.sess != s:
		case runID != "" && !inst.stopping:
			inst.sess, inst.keptRun = nil, runID
			kept[id] = true
		default:
			inst.cancel()
		}
	}
	return kept
}

// attach hands the kept instances of manager run runID to session s, and
// returns the reports they held; those of another run are stopped.
func (l *libraries) attach(s *session, runID string) []event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var pending []event
	for _, inst := range l.byID {
		switch {
		case inst.sess != nil:
		case inst.keptRun == runID:
			inst.sess, inst.keptRun = s, ""
			pending = append(pending, inst.pending...)
			inst.pending = nil
		default:
			inst.cancel()
		}
	}
	return pending
}

// list says, for a Hello, which instances are kept and for which run.
func (l *libraries) list() (runID string, insts []*pb.KeptInstance) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, inst := range l.byID {
		if inst.sess == nil && !inst.dead() {
			runID = inst.keptRun
			insts = append(insts, &pb.KeptInstance{Instance: inst.id, Attempt: inst.attempt, Library: inst.name})
		}
	}
	return runID, insts
}

// stop stops every instance and waits for their goroutines: when the
// worker stops.
func (l *libraries) stop() {
	l.mu.Lock()
	for _, inst := range l.byID {
		inst.cancel()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

func (l *libraries) get(id uint64) *libInstance {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byID[id]
}

func (l *libraries) set(id uint64, inst *libInstance) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if inst == nil {
		delete(l.byID, id)
	} else {
		l.byID[id] = inst
	}
}

// runLibrary starts an instance for session s, reports it started (or
// not), and reports its end to the session it belongs to then (see
// libraries). It returns when the instance has ended or is stopped (ctx,
// the worker's, ends, or cancel is called: then its end is not reported,
// as the manager already counts it lost or stopped).
func (w *Worker) runLibrary(ctx context.Context, cancel context.CancelFunc, sl *pb.StartLibrary, s *session) {
	spec := sl.Library
	var inst *libInstance // once registered
	ended := func(kind pb.ResultKind, msg string, stderr []byte) {
		w.libs.emit(inst, s, evLibraryEnded{&pb.WorkerMessage{Msg: &pb.WorkerMessage_LibraryEnded{LibraryEnded: &pb.LibraryEnded{
			Instance: sl.Instance, Attempt: sl.Attempt, Kind: kind, Message: msg, Stderr: stderr}}}})
	}
	dir := filepath.Join(w.boxes.dir, fmt.Sprintf("l%d.a%d", sl.Instance, sl.Attempt))
	if err := os.Mkdir(dir, 0o755); err != nil {
		ended(pb.ResultKind_RESULT_KIND_FAILED, "create sandbox: "+err.Error(), nil)
		return
	}
	defer os.RemoveAll(dir)
	stamps := make([]cache.Stamp, 0, len(spec.Inputs))
	for _, in := range spec.Inputs {
		if in.Content == nil && w.cache.Pin(in.Name) {
			defer w.cache.Unpin(in.Name)
		}
		st, err := w.placeInput(dir, in, false)
		if err != nil {
			ended(pb.ResultKind_RESULT_KIND_FAILED, fmt.Sprintf("library %s: input %q: %v", spec.Name, in.Path, err), nil)
			return
		}
		stamps = append(stamps, st)
	}
	host, err := libhost.Start(ctx, libhost.Spec{
		Name: spec.Name, Command: spec.Command, Dir: dir, Env: spec.Env, Slots: int(max(spec.Slots, 1)), Mode: spec.Mode,
		MemoryMB: spec.GetResources().GetMemoryMb(), StartTimeout: time.Duration(spec.StartTimeoutMs) * time.Millisecond,
		Cores: spec.GetResources().GetCores(), CPUQuota: w.warden.LimitsCPU(), Warden: w.warden,
		MonitorSetting: sysmon.Active(),
	})
	if err != nil {
		ended(pb.ResultKind_RESULT_KIND_FAILED, exitReason(err), stderrOf(err))
		return
	}
	inst = &libInstance{id: sl.Instance, attempt: sl.Attempt, name: spec.Name, host: host, dir: dir, cancel: cancel}
	if !w.libs.register(inst, s) { // the session ended while it started
		host.Stop(stopGrace)
		return
	}
	defer w.libs.set(sl.Instance, nil)
	w.libs.emit(inst, s, evLibraryStarted{&pb.WorkerMessage{Msg: &pb.WorkerMessage_LibraryStarted{LibraryStarted: &pb.LibraryStarted{
		Instance: sl.Instance, Attempt: sl.Attempt, Functions: host.Functions()}}}})
	select {
	case <-host.Done():
	case <-ctx.Done():
		host.Stop(stopGrace)
		w.checkInputs(stamps, "library", spec.Name, "instance", sl.Instance)
		return
	}
	// Before its end is reported, as an attempt's.
	w.checkInputs(stamps, "library", spec.Name, "instance", sl.Instance)
	for inst.calls.Load() > 0 { // the host is dead: its calls end at once
		time.Sleep(time.Millisecond)
	}
	w.libs.mu.Lock()
	stopping := inst.stopping
	w.libs.mu.Unlock()
	herr := host.Err()
	switch {
	case stopping:
		ended(pb.ResultKind_RESULT_KIND_SUCCESS, "stopped", nil)
	case errors.Is(herr, libhost.ErrResourceExceeded):
		ended(pb.ResultKind_RESULT_KIND_RESOURCE_EXCEEDED, "library "+spec.Name+": "+exitReason(herr), host.Stderr())
	default:
		ended(pb.ResultKind_RESULT_KIND_FAILED, exitReason(herr), host.Stderr())
	}
}

// exitReason says how a library process ended, without the host's prefix
// (the manager and core add what it means to the calls).
func exitReason(err error) string {
	var ee *libhost.ExitError
	if !errors.As(err, &ee) {
		return err.Error()
	}
	parts := []string{}
	if ee.Reason != "" {
		parts = append(parts, ee.Reason)
	}
	if ee.Status != "" {
		parts = append(parts, ee.Status)
	}
	if len(parts) == 0 {
		return "exited"
	}
	return strings.Join(parts, ", ")
}

func stderrOf(err error) []byte {
	var ee *libhost.ExitError
	if errors.As(err, &ee) {
		return []byte(ee.Stderr)
	}
	return nil
}

// stopLibrary stops an instance the manager no longer wants.
func (w *Worker) stopLibrary(id uint64) {
	inst := w.libs.get(id)
	if inst == nil {
		return
	}
	w.libs.mu.Lock()
	inst.stopping = true
	w.libs.mu.Unlock()
	inst.host.Stop(stopGrace)
}

// handBack is the outcome runCall gives a call that never reached its
// library (it died or stopped first): the call is returned to the manager,
// to run elsewhere as if it had never started.
var handBack = &pb.Outcome{}

// runCall runs one function call in its instance. A nil outcome means the
// library itself died while it had the call: its end, reported apart,
// settles the call.
func (w *Worker) runCall(ctx context.Context, run *pb.Run, inst *libInstance) *pb.Outcome {
	c := run.Spec.GetCall()
	if inst == nil || c == nil {
		return fail(pb.ResultKind_RESULT_KIND_WORKER_LOST, "library instance %d is not running here", run.Instance)
	}
	args, dir := c.Args, ""
	var stamps []cache.Stamp
	if len(run.Spec.Inputs) > 0 || len(run.Spec.Outputs) > 0 {
		var o *pb.Outcome
		dir, stamps, o = w.callDir(ctx, inst, run)
		if o != nil {
			return o
		}
		defer os.RemoveAll(dir)
		if c.ArgsPath != "" {
			var err error
			if args, err = readConfined(dir, c.ArgsPath); err != nil {
				return fail(pb.ResultKind_RESULT_KIND_INPUT_MISSING, "call %s.%s: arguments file: %v", c.Library, c.Function, err)
			}
		}
	}
	o := callIn(ctx, inst, dir, run.IdempotencyKey, c.Library, c.Function, args, time.Duration(run.Spec.TimeLimitMs)*time.Millisecond)
	w.checkInputs(stamps, "task", run.TaskId, "attempt", run.Attempt)
	if o == nil || o == handBack || o.Kind != pb.ResultKind_RESULT_KIND_SUCCESS {
		return o
	}
	if err := w.callResults(ctx, dir, run, o); err != nil {
		o.Kind, o.Message, o.Result, o.Outputs, o.ResultFile = pb.ResultKind_RESULT_KIND_FAILED, fmt.Sprintf("call %s.%s: %v", c.Library, c.Function, err), nil, nil, nil
	}
	return o
}

// callIn runs function fn of library lib in inst and returns its outcome:
// nil if the instance died (LibraryEnded settles it), handBack if the call
// was not sent.
func callIn(ctx context.Context, inst *libInstance, dir, key, lib, fn string, args []byte, timeLimit time.Duration) *pb.Outcome {
	start := time.Now()
	res, err := inst.host.CallIn(ctx, dir, key, fn, args, timeLimit)
	o := &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS, Result: res, RunMs: time.Since(start).Milliseconds()}
	var ce *libhost.CallError
	switch {
	case err == nil:
	case errors.As(err, &ce):
		o.Kind, o.ExitCode, o.Message, o.Traceback = pb.ResultKind_RESULT_KIND_FAILED, 1, ce.Message, ce.Traceback
	case errors.Is(err, libhost.ErrTimeout):
		o.Kind, o.ExitCode, o.Message = pb.ResultKind_RESULT_KIND_TIMED_OUT, -1, fmt.Sprintf("call %s.%s: %v", lib, fn, err)
	case errors.Is(err, libhost.ErrCancelled) || ctx.Err() != nil:
		o.Kind, o.ExitCode, o.Message = pb.ResultKind_RESULT_KIND_CANCELLED, -1, "cancelled"
	case errors.Is(err, libhost.ErrNotSent):
		return handBack
	case errors.Is(err, libhost.ErrUnknownFunction):
		o.Kind, o.ExitCode, o.Message = pb.ResultKind_RESULT_KIND_FAILED, -1, fmt.Sprintf("library %s has no function %q", lib, fn)
	default:
		return nil // crashed or over its memory: LibraryEnded settles it
	}
	return o
}

// callDir makes the call's own directory inside its instance's sandbox and
// puts its input files there, returning the stamps of what it linked. A
// non-nil outcome says why it could not.
func (w *Worker) callDir(ctx context.Context, inst *libInstance, run *pb.Run) (string, []cache.Stamp, *pb.Outcome) {
	dir := filepath.Join(inst.dir, ".calls", fmt.Sprintf("t%d.a%d", run.TaskId, run.Attempt))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, fail(pb.ResultKind_RESULT_KIND_FAILED, "create the call's directory: %v", err)
	}
	outs := outputPaths(run.Spec.Outputs)
	stamps := make([]cache.Stamp, 0, len(run.Spec.Inputs))
	for _, in := range run.Spec.Inputs {
		if in.Content == nil && w.cache.Pin(in.Name) {
			defer w.cache.Unpin(in.Name) // linked now: eviction cannot take it from the call
		}
		st, err := w.placeInput(dir, in, outs[path.Clean(in.Path)])
		if err != nil {
			os.RemoveAll(dir)
			if ctx.Err() != nil {
				return "", nil, fail(pb.ResultKind_RESULT_KIND_CANCELLED, "cancelled while fetching inputs")
			}
			return "", nil, fail(pb.ResultKind_RESULT_KIND_INPUT_MISSING, "input %q: %v", in.Path, err)
		}
		stamps = append(stamps, st)
	}
	return dir, stamps, nil
}

// callResults takes a successful call's output files out of its directory,
// and sends a result too large for the messages to the manager's store.
func (w *Worker) callResults(ctx context.Context, dir string, run *pb.Run, o *pb.Outcome) error {
	budget := proto.MaxInlinePerMessage
	for _, out := range run.Spec.Outputs {
		info, err := w.output(ctx, dir, out, run, &budget)
		if err != nil {
			return err
		}
		o.Outputs = append(o.Outputs, info)
	}
	if len(o.Result) <= proto.MaxCallResultInline {
		return nil
	}
	sum := sha256.Sum256(o.Result)
	noInline := 0
	info, err := w.send(ctx, bytes.NewReader(o.Result), int64(len(o.Result)), "sha256-"+hex.EncodeToString(sum[:]), run, &noInline)
	if err != nil {
		return fmt.Errorf("upload its result of %d bytes: %w", len(o.Result), err)
	}
	o.Result, o.ResultFile = nil, info
	return nil
}

// readConfined reads the file at path inside dir.
func readConfined(dir, path string) ([]byte, error) {
	p, err := sandbox.Confine(dir, path)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}
