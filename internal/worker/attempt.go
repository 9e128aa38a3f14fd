package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/worker/archive"
	"trellis/internal/worker/cache"
	"trellis/internal/worker/sandbox"
)

// runAttempt runs one attempt from start to end and says how it went. It
// never returns nil; ctx cancellation kills the command. back is set, and
// o is then only for the log, when the attempt must be handed back: its
// output did not fit in a cache full of files still needed. box, where
// not "", is its sandbox, prepared with its inputs while it was held ahead
// (session.prepare). exited, where set, is called once the command's
// processes are gone, before the outputs are taken (sandbox.Spec.Exited).
func (w *Worker) runAttempt(ctx context.Context, run *pb.Run, box string, exited func()) (o *pb.Outcome, back *pb.AttemptReturned, cleanup func()) {
	spec := run.Spec
	dir, placed := box, box != ""
	if !placed {
		var err error
		if dir, err = w.boxes.get(); err != nil {
			return fail(pb.ResultKind_RESULT_KIND_FAILED, "%v", err), nil, func() {}
		}
	}
	cleanup = func() { w.boxes.put(dir) }
	outs := outputPaths(spec.Outputs)
	stamps := make([]cache.Stamp, 0, len(spec.Inputs))
	if !placed { // else its inputs, all inline, are in place: no stamps
		for _, in := range spec.Inputs {
			if in.Content == nil && w.cache.Pin(in.Name) {
				defer w.cache.Unpin(in.Name) // not evicted while the attempt uses it
			}
			s, err := w.placeInput(dir, in, outs[path.Clean(in.Path)])
			if err != nil {
				if ctx.Err() != nil {
					return fail(pb.ResultKind_RESULT_KIND_CANCELLED, "cancelled while fetching inputs"), nil, cleanup
				}
				return fail(pb.ResultKind_RESULT_KIND_INPUT_MISSING, "input %q: %v", in.Path, err), nil, cleanup
			}
			stamps = append(stamps, s)
		}
	}

	res, err := sandbox.Run(ctx, sandbox.Spec{
		Dir:      dir,
		Command:  spec.Command,
		Env:      w.environment(run),
		WallTime: time.Duration(spec.TimeLimitMs) * time.Millisecond,
		MemoryMB: spec.GetResources().GetMemoryMb(),
		DiskMB:   spec.GetResources().GetDiskMb(),
		Cores:    spec.GetResources().GetCores(),
		Warden:   w.warden,
		Exited:   exited,
	})
	w.checkInputs(stamps, "task", run.TaskId, "attempt", run.Attempt) // whatever the command did, and before its end is reported
	if res.Lingering {
		cleanup = func() { os.RemoveAll(dir) } // never to another attempt
	}
	if err != nil {
		return fail(pb.ResultKind_RESULT_KIND_FAILED, "start command: %v", err), nil, cleanup
	}
	o = &pb.Outcome{
		Kind: resultKind(res.Kind), ExitCode: int32(res.ExitCode), Message: res.Message,
		Stdout: res.Stdout, Stderr: res.Stderr, StdoutTruncated: res.StdoutTruncated, StderrTruncated: res.StderrTruncated,
		RunMs: res.Duration.Milliseconds(), PeakMemoryMb: res.PeakMemoryMB,
	}
	if o.Kind != pb.ResultKind_RESULT_KIND_SUCCESS {
		return o, nil, cleanup
	}
	budget := proto.MaxInlinePerMessage
	for _, out := range spec.Outputs {
		info, err := w.output(ctx, dir, out, run, &budget)
		if err != nil {
			o.Kind, o.Message = pb.ResultKind_RESULT_KIND_FAILED, err.Error()
			o.Outputs = nil
			if out.Keep && errors.Is(err, cache.ErrDiskFull) {
				// Not the task's fault: the core waits for space (#18).
				back = &pb.AttemptReturned{TaskId: run.TaskId, Attempt: run.Attempt, CacheFull: true, Need: outputSize(dir, out)}
			}
			return o, back, cleanup
		}
		o.Outputs = append(o.Outputs, info)
	}
	return o, nil, cleanup
}

// placeInput puts one input into the sandbox. A small inline input is
// written there directly (the message already carried it: caching it would
// save nothing); others are linked from the cache, where the manager staged
// them before it sent the attempt, or copied from it when the input is
// also an output (private: the command changes it in place). The stamp of
// what it linked is for checkInputs.
func (w *Worker) placeInput(dir string, in *pb.FileRef, private bool) (cache.Stamp, error) {
	dest, err := sandbox.Confine(dir, in.Path)
	if err != nil {
		return cache.Stamp{}, err
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return cache.Stamp{}, err
	}
	switch {
	case in.Content != nil:
		return cache.Stamp{}, writeChecked(dest, in)
	case private:
		err = w.cache.Copy(in.Name, dest)
	default:
		var s cache.Stamp
		if s, err = w.cache.Link(in.Name, dest); err == nil {
			return s, nil
		}
	}
	if errors.Is(err, cache.ErrNotFound) {
		return cache.Stamp{}, fmt.Errorf("not staged in the cache: %w", err)
	}
	return cache.Stamp{}, err
}

// outputSize is the size of a regular output in the sandbox, or 0 if
// unknown (a directory, or it is gone).
func outputSize(dir string, out *pb.FileRef) int64 {
	p, err := sandbox.Confine(dir, out.Path)
	if err != nil {
		return 0
	}
	if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
		return fi.Size()
	}
	return 0
}

// writeChecked writes an inline input after checking it against its digest.
func writeChecked(dest string, in *pb.FileRef) error {
	if in.Digest != "" {
		sum := sha256.Sum256(in.Content)
		if in.Digest != "sha256:"+hex.EncodeToString(sum[:]) {
			return fmt.Errorf("inline content does not match digest %s", in.Digest)
		}
	}
	return os.WriteFile(dest, in.Content, 0o644)
}

// output takes one output out of the sandbox: into the cache when the
// manager wants it kept there (a replica that peers may fetch), and to the
// manager when it wants it uploaded.
func (w *Worker) output(ctx context.Context, dir string, out *pb.FileRef, run *pb.Run, budget *int) (*pb.FileInfo, error) {
	src, err := sandbox.Confine(dir, out.Path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(src)
	if !out.Keep && (err != nil || !fi.IsDir()) {
		return w.upload(ctx, dir, out, run, budget) // a directory goes through the cache, as its tar
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("output %q was not created", out.Path)
	case err != nil:
		return nil, err
	case !fi.Mode().IsRegular() && !fi.IsDir():
		return nil, fmt.Errorf("output %q is not a regular file or a directory", out.Path)
	}
	e, err := w.cache.Adopt(out.Name, level(out.Level), src)
	if err != nil {
		return nil, fmt.Errorf("keep output %q: %w", out.Path, err)
	}
	info := &pb.FileInfo{Name: out.Name, Size: e.Size, Digest: e.Digest, Kept: true, Dir: e.Dir}
	if out.Upload && e.Dir {
		if err := w.uploadDir(ctx, out.Name, run); err != nil {
			return nil, fmt.Errorf("upload output %q: %w", out.Path, err)
		}
		info.Uploaded = true
	} else if out.Upload {
		f, err := os.Open(w.cache.Path(out.Name))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		up, err := w.send(ctx, f, e.Size, out.Name, run, budget)
		if err != nil {
			return nil, fmt.Errorf("upload output %q: %w", out.Path, err)
		}
		info.Content, info.Uploaded = up.Content, true
	}
	return info, nil
}

// uploadDir sends a cached directory to the manager's staging area for this
// attempt, as its tar stream.
func (w *Worker) uploadDir(ctx context.Context, name string, run *pb.Run) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(archive.WriteTar(w.cache.Path(name), pw)) }() // exits when the tar is written or the request stops reading
	defer pr.Close()
	return w.put(ctx, fmt.Sprintf("/files/%s?task=%d&attempt=%d&dir=1", name, run.TaskId, run.Attempt), pr, -1)
}

// upload sends one output from the sandbox to the manager (see send).
func (w *Worker) upload(ctx context.Context, dir string, out *pb.FileRef, run *pb.Run, budget *int) (*pb.FileInfo, error) {
	f, size, err := sandbox.OpenOutput(dir, out.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := w.send(ctx, f, size, out.Name, run, budget)
	if err != nil {
		return nil, fmt.Errorf("upload output %q: %w", out.Path, err)
	}
	return info, nil
}

// send reads a small output into the report while the inline budget lasts,
// or else streams it to the manager's staging area for this attempt.
func (w *Worker) send(ctx context.Context, f io.Reader, size int64, name string, run *pb.Run, budget *int) (*pb.FileInfo, error) {
	if size <= proto.MaxInlineBytes && int(size) <= *budget {
		content := make([]byte, size)
		if _, err := io.ReadFull(f, content); err != nil {
			return nil, err
		}
		*budget -= int(size)
		sum := sha256.Sum256(content)
		return &pb.FileInfo{Name: name, Size: size, Digest: "sha256:" + hex.EncodeToString(sum[:]), Content: content, Uploaded: true}, nil
	}
	h := sha256.New()
	path := fmt.Sprintf("/files/%s?task=%d&attempt=%d", name, run.TaskId, run.Attempt)
	if err := w.put(ctx, path, io.TeeReader(f, h), size); err != nil {
		return nil, err
	}
	return &pb.FileInfo{Name: name, Size: size, Digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), Uploaded: true}, nil
}

// put sends body (size bytes, or -1 if unknown) to the manager at path.
func (w *Worker) put(ctx context.Context, path string, body io.Reader, size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, w.base+path, body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	w.authorize(req.Header)
	resp, err := w.files.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// environment is what a task sees besides its own env: its identity, its
// resources, and only the GPUs assigned to it.
func (w *Worker) environment(run *pb.Run) []string {
	r := run.Spec.GetResources()
	gpus := make([]string, len(run.Gpus))
	for i, g := range run.Gpus {
		gpus[i] = strconv.Itoa(int(g))
	}
	env := []string{
		"TRELLIS_TASK_ID=" + strconv.FormatUint(run.TaskId, 10),
		"TRELLIS_ATTEMPT=" + strconv.FormatUint(uint64(run.Attempt), 10),
		"TRELLIS_IDEMPOTENCY_KEY=" + run.IdempotencyKey,
		"CUDA_VISIBLE_DEVICES=" + strings.Join(gpus, ","),
		fmt.Sprintf("CORES=%g", r.GetCores()),
		"MEMORY=" + strconv.FormatInt(r.GetMemoryMb(), 10),
		"DISK=" + strconv.FormatInt(r.GetDiskMb(), 10),
	}
	return append(env, run.Spec.Env...)
}

func resultKind(k sandbox.Kind) pb.ResultKind {
	switch k {
	case sandbox.Success:
		return pb.ResultKind_RESULT_KIND_SUCCESS
	case sandbox.TimedOut:
		return pb.ResultKind_RESULT_KIND_TIMED_OUT
	case sandbox.MemoryExceeded, sandbox.DiskExceeded:
		return pb.ResultKind_RESULT_KIND_RESOURCE_EXCEEDED
	case sandbox.Cancelled:
		return pb.ResultKind_RESULT_KIND_CANCELLED
	}
	return pb.ResultKind_RESULT_KIND_FAILED
}

func fail(kind pb.ResultKind, format string, args ...any) *pb.Outcome {
	return &pb.Outcome{Kind: kind, ExitCode: -1, Message: fmt.Sprintf(format, args...)}
}
