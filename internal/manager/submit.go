package manager

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"trellis/internal/core"
	pb "trellis/internal/proto/trellisv1"
)

// storedFiles maps the cache names of files found at the manager's store to
// what the store says of them. Handlers look them up before they send the
// loop an event, so that the loop reads no disk: what it learns of the
// store arrives in events.
type storedFiles map[string]*pb.FileInfo

// statInputs looks up at the store the files that inputs and unpacked
// declarations may need from it: every input that does not travel inside
// its task, and every archive a declaration unpacks, except those the
// request itself produces or declares as staged from elsewhere.
func (st *store) statInputs(inputs [][]*pb.FileRef, outputs [][]*pb.FileRef, decls []*pb.FileDecl) storedFiles {
	skip := make(map[string]bool)
	for _, outs := range outputs {
		for _, f := range outs {
			skip[f.Name] = true
		}
	}
	for _, d := range decls {
		if d.Kind != pb.FileKind_FILE_KIND_MANAGER {
			skip[d.Name] = true
		}
	}
	found := make(storedFiles)
	look := func(name string) {
		if skip[name] {
			return
		}
		skip[name] = true
		if info, ok := st.stat(name); ok {
			found[name] = info
		}
	}
	for _, d := range decls {
		if d.Kind == pb.FileKind_FILE_KIND_UNPACK {
			look(d.UnpackFrom)
		}
	}
	for _, ins := range inputs {
		for _, f := range ins {
			if f.Content == nil {
				look(f.Name)
			}
		}
	}
	return found
}

// statSubmit is statInputs for a submit request.
func (st *store) statSubmit(req *pb.SubmitRequest) storedFiles {
	inputs := make([][]*pb.FileRef, len(req.Tasks))
	outputs := make([][]*pb.FileRef, len(req.Tasks))
	for i, t := range req.Tasks {
		inputs[i], outputs[i] = t.Inputs, t.Outputs
	}
	return st.statInputs(inputs, outputs, req.Files)
}

// checkInline checks that inline inputs match their content-derived names.
func checkInline(what string, inputs []*pb.FileRef) error {
	for _, in := range inputs {
		if in.Content == nil {
			continue
		}
		if want, ok := strings.CutPrefix(in.Name, "sha256-"); ok && want != inlineDigest(in.Content) {
			return fmt.Errorf("%s: inline input %q does not match its cache name %s", what, in.Path, in.Name)
		}
	}
	return nil
}

func inlineDigest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// taskSpec builds the record the manager keeps of a submitted task, once:
// a copy of the client's message (which the manager never writes into),
// with what the submit decides filled in: the size and digest of inline
// inputs, for the worker to check again; whether the worker keeps each
// output and sends it to the manager; and the cache level of each file.
// Nothing writes into it afterwards: a dispatch builds its Run from a copy.
func (s *state) taskSpec(msg *pb.TaskSpec) *pb.TaskSpec {
	// A shallow copy with its own file refs: the rest of the request (the
	// call's arguments, say) is never written, and is shared rather than
	// copied.
	spec := copySpec(msg)
	spec.Inputs, spec.Outputs = copyRefs(msg.Inputs), copyRefs(msg.Outputs)
	fillInline(spec.Inputs)
	spec.Keep = s.m.resolveKeep(spec)
	for _, out := range spec.Outputs {
		d := s.data.decls[out.Name]
		switch {
		case d == nil:
			out.Upload = true // a plain output, as clients without declarations send
		case d.Kind == pb.FileKind_FILE_KIND_TEMP:
			out.Keep, out.Level = true, d.Level
			if spec.Keep == pb.Keep_KEEP_CHECKPOINT_SYNC && s.m.cfg.CheckpointDir != "" {
				out.Upload = true // to the checkpoint directory
				s.m.store.syncOnCheck.Store(out.Name, true)
			}
		default:
			out.Keep, out.Upload, out.Level = true, true, d.Level
		}
	}
	for _, in := range spec.Inputs {
		if d := s.data.decls[in.Name]; d != nil {
			in.Level = d.Level
		}
	}
	return spec
}

// copyRefs returns copies of refs (see copyRef), nil for none.
func copyRefs(refs []*pb.FileRef) []*pb.FileRef {
	if len(refs) == 0 {
		return nil
	}
	out := make([]*pb.FileRef, len(refs))
	for i, f := range refs {
		out[i] = copyRef(f)
	}
	return out
}

// fillInline sets the size and digest of inline inputs, for the worker to
// check again. The refs must be the manager's own copy.
func fillInline(inputs []*pb.FileRef) {
	for _, in := range inputs {
		if in.Content != nil {
			in.Size, in.Digest = int64(len(in.Content)), "sha256:"+inlineDigest(in.Content)
		}
	}
}

// producedFile reports whether a task claimed name as an output: the core's
// catalog knows.
func (s *state) producedFile(name string) bool {
	id, ok := s.fileIDs[name]
	if !ok {
		return false
	}
	_, ok = s.core.Producer(id)
	return ok
}

// afterIDs turns a task's "after" indexes into the request into task IDs.
func afterIDs(after []uint32, ids []uint64) []core.TaskID {
	if len(after) == 0 {
		return nil
	}
	out := make([]core.TaskID, len(after))
	for i, a := range after {
		out[i] = core.TaskID(ids[a]) // checked at the edge: another task of the request
	}
	return out
}
