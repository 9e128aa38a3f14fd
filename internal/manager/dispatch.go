package manager

import (
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

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
func (s *state) runSpec(stored *pb.TaskSpec, a core.Dispatch) *pb.TaskSpec {
	spec := shallow(stored)
	spec.Inputs = s.runInputs(stored.Inputs, a.Inline())
	spec.Outputs = make([]*pb.FileRef, len(stored.Outputs))
	for i, out := range stored.Outputs {
		out = shallow(out)
		out.Keep = slices.Contains(a.Keep(), s.fileIDs[out.Name])
		spec.Outputs[i] = out
	}
	return spec
}

// runInputs returns new refs of the inputs of a dispatch, with the size and
// digest of those the manager knows, and the content of those the core
// says travel inline (the worker does not hold them; every other input is
// in its cache).
func (s *state) runInputs(stored []*pb.FileRef, inline []core.FileID) []*pb.FileRef {
	ins := make([]*pb.FileRef, len(stored))
	for i, in := range stored {
		in = shallow(in)
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

// shallow returns a copy of m that shares its fields' values: messages,
// lists and bytes are not copied, so the copy's fields are to be replaced,
// not changed in place.
func shallow[M proto.Message](m M) M {
	src := m.ProtoReflect()
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
	return dst.Interface().(M)
}
