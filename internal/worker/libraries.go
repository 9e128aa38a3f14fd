package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/worker/libhost"
)

// stopGrace is how long a library may take to exit once asked to.
const stopGrace = 5 * time.Second

// libInstance is a library process this worker runs for the manager.
type libInstance struct {
	host     *libhost.Host
	stopping bool // the manager asked: its end is not a crash
}

// libraries holds the running library instances; attempts of calls look
// them up concurrently.
type libraries struct {
	mu   sync.Mutex // guards byID
	byID map[uint64]*libInstance
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

// runLibrary starts an instance, reports it started (or not), and reports
// its end. It returns when the instance has ended or ctx (the connection)
// has; then the manager already counts the instance lost.
func (w *Worker) runLibrary(ctx context.Context, sl *pb.StartLibrary, post func(*pb.WorkerMessage)) {
	spec := sl.Library
	ended := func(kind pb.ResultKind, msg string, stderr []byte) {
		post(&pb.WorkerMessage{Msg: &pb.WorkerMessage_LibraryEnded{LibraryEnded: &pb.LibraryEnded{
			Instance: sl.Instance, Attempt: sl.Attempt, Kind: kind, Message: msg, Stderr: stderr}}})
	}
	dir := filepath.Join(w.boxes, fmt.Sprintf("l%d.a%d", sl.Instance&^(1<<63), sl.Attempt))
	if err := os.Mkdir(dir, 0o755); err != nil {
		ended(pb.ResultKind_RESULT_KIND_FAILED, "create sandbox: "+err.Error(), nil)
		return
	}
	defer os.RemoveAll(dir)
	for _, in := range spec.Inputs {
		if in.Content == nil && w.cache.Pin(in.Name) {
			defer w.cache.Unpin(in.Name)
		}
		if err := w.placeInput(ctx, dir, in); err != nil {
			ended(pb.ResultKind_RESULT_KIND_FAILED, fmt.Sprintf("library %s: input %q: %v", spec.Name, in.Path, err), nil)
			return
		}
	}
	host, err := libhost.Start(ctx, libhost.Spec{
		Name: spec.Name, Command: spec.Command, Dir: dir, Env: spec.Env, Slots: int(max(spec.Slots, 1)), Mode: spec.Mode,
		MemoryMB: spec.GetResources().GetMemoryMb(), StartTimeout: time.Duration(spec.StartTimeoutMs) * time.Millisecond,
	})
	if err != nil {
		ended(pb.ResultKind_RESULT_KIND_FAILED, exitReason(err), stderrOf(err))
		return
	}
	inst := &libInstance{host: host}
	w.libs.set(sl.Instance, inst)
	defer w.libs.set(sl.Instance, nil)
	post(&pb.WorkerMessage{Msg: &pb.WorkerMessage_LibraryStarted{LibraryStarted: &pb.LibraryStarted{
		Instance: sl.Instance, Attempt: sl.Attempt, Functions: host.Functions()}}})
	select {
	case <-host.Done():
	case <-ctx.Done():
		host.Stop(stopGrace)
		return
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

// runCall runs one function call in its instance. A nil outcome means the
// library itself died: its end, reported apart, settles the call.
func (w *Worker) runCall(ctx context.Context, run *pb.Run) *pb.Outcome {
	c := run.Spec.GetCall()
	inst := w.libs.get(run.Instance)
	if inst == nil || c == nil {
		return fail(pb.ResultKind_RESULT_KIND_WORKER_LOST, "library instance %d is not running here", run.Instance)
	}
	start := time.Now()
	res, err := inst.host.Call(ctx, c.Function, c.Args, time.Duration(run.Spec.TimeLimitMs)*time.Millisecond)
	o := &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS, Result: res, RunMs: time.Since(start).Milliseconds()}
	var ce *libhost.CallError
	switch {
	case err == nil:
	case errors.As(err, &ce):
		o.Kind, o.ExitCode, o.Message, o.Traceback = pb.ResultKind_RESULT_KIND_FAILED, 1, ce.Message, ce.Traceback
	case errors.Is(err, libhost.ErrTimeout):
		o.Kind, o.ExitCode, o.Message = pb.ResultKind_RESULT_KIND_TIMED_OUT, -1, fmt.Sprintf("call %s.%s: %v", c.Library, c.Function, err)
	case errors.Is(err, libhost.ErrCancelled) || ctx.Err() != nil:
		o.Kind, o.ExitCode, o.Message = pb.ResultKind_RESULT_KIND_CANCELLED, -1, "cancelled"
	case errors.Is(err, libhost.ErrUnknownFunction):
		o.Kind, o.ExitCode, o.Message = pb.ResultKind_RESULT_KIND_FAILED, -1, fmt.Sprintf("library %s has no function %q", c.Library, c.Function)
	default:
		return nil // crashed or over its memory: LibraryEnded settles it
	}
	return o
}
