package manager

import (
	"slices"
	"strconv"

	"trellis/internal/core"
	pb "trellis/internal/proto/trellisv1"
)

// A dispatch sends a spec built for it: the specs stored at submit and
// install are never changed after, so that a Run in a session's outbound
// queue and the stored record never share what one of them changes.

// runSpec builds the spec of one dispatch of a task from the one stored
// at submit, which it leaves as it is: a shallow copy with new input and
// output refs. Inputs get the size and digest the manager knows now, and
// the content of those the core says travel inline (a.Inline); outputs
// are kept in the worker's cache if the core says so (a.Keep).
func (s *state) runSpec(rec *taskRecord, a core.Dispatch) *pb.TaskSpec {
	if rec.plain != nil {
		return rec.plain.taskSpec(rec.pname, rec.pkey) // built for this dispatch
	}
	stored := rec.spec
	if len(stored.Inputs) == 0 && len(stored.Outputs) == 0 {
		return stored // nothing to fill in (most calls): it is never changed, so it can be shared
	}
	spec := copySpec(stored)
	spec.Inputs = s.runInputs(stored.Inputs, a.Inline())
	spec.Outputs = make([]*pb.FileRef, len(stored.Outputs))
	for i, out := range stored.Outputs {
		out = copyRef(out)
		out.Keep = slices.Contains(a.Keep(), s.fileIDs[out.Name])
		spec.Outputs[i] = out
	}
	return spec
}

// idempotencyKey names a task the same way in every attempt: by its
// session and the key its client gave it (the Go client gives every task
// one), so that it stays the same when a manager restarts with its
// journal. A task without a key is named by its ID ("#ID").
func idempotencyKey(rec *taskRecord, id core.TaskID) string {
	if key := rec.key(); key != "" {
		return rec.session() + "/" + key
	}
	return rec.session() + "/#" + strconv.FormatUint(uint64(id), 10)
}

// runInputs returns new refs of the inputs of a dispatch, with the size and
// digest of those the manager knows, and the content of those the core
// says travel inline (the worker does not hold them; every other input is
// in its cache).
func (s *state) runInputs(stored []*pb.FileRef, inline []core.FileID) []*pb.FileRef {
	ins := make([]*pb.FileRef, len(stored))
	for i, in := range stored {
		in = copyRef(in)
		if info := s.fileInfo[in.Name]; info != nil {
			in.Size, in.Digest = info.Size, info.Digest
		}
		if in.Content == nil && len(inline) > 0 && slices.Contains(inline, s.fileIDs[in.Name]) {
			if b, ok := s.m.store.inline(in.Name); ok {
				in.Content = b
			}
		}
		ins[i] = in
	}
	return ins
}

// copySpec and copyRef return copies of a message that share its fields'
// values: messages, lists and bytes are not copied, so the copy's fields are
// to be replaced, not changed in place. They are written out field by field
// (on the loop, per dispatch, where copying by reflection cost a third of
// the loop's time for calls); TestShallowCopiesEveryField fails when the
// schema gains a field they miss.
func copySpec(t *pb.TaskSpec) *pb.TaskSpec {
	return &pb.TaskSpec{Name: t.Name, Command: t.Command, Inputs: t.Inputs, Outputs: t.Outputs, Env: t.Env,
		Resources: t.Resources, Retries: t.Retries, RetryOnError: t.RetryOnError, TimeLimitMs: t.TimeLimitMs,
		Priority: t.Priority, Category: t.Category, Tags: t.Tags, After: t.After, Call: t.Call, Key: t.Key,
		UnplaceableTimeoutMs: t.UnplaceableTimeoutMs, Deterministic: t.Deterministic, Effects: t.Effects,
		Workflow: t.Workflow, Keep: t.Keep, Replicas: t.Replicas}
}

func copyRef(f *pb.FileRef) *pb.FileRef {
	return &pb.FileRef{Name: f.Name, Path: f.Path, Size: f.Size, Digest: f.Digest, Content: f.Content,
		Keep: f.Keep, Upload: f.Upload, Level: f.Level}
}
