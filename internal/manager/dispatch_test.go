package manager

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"

	"trellis/internal/core"
	pb "trellis/internal/proto/trellisv1"
)

// TestRunSpec: a dispatch's spec has the inputs' size and digest the
// manager knows and the Keep flags the core chose, and the stored spec
// stays as it was submitted.
func TestRunSpec(t *testing.T) {
	s := &state{fileIDs: make(map[string]core.FileID), fileInfo: map[string]*pb.FileInfo{
		"in": {Name: "in", Size: 7, Digest: "sha256:77"},
	}, data: newDataState()}
	stored := &pb.TaskSpec{Name: "t", Command: "cp in out", Resources: &pb.Resources{Cores: 1}, Env: []string{"A=1"},
		Inputs:  []*pb.FileRef{{Name: "in", Path: "in", Size: -1}, {Name: "sha256-x", Path: "x", Content: []byte("x")}},
		Outputs: []*pb.FileRef{{Name: "temp", Path: "t", Keep: true}, {Name: "out", Path: "out", Upload: true, Keep: true}, {Name: "plain", Path: "p", Upload: true}},
	}
	for _, name := range []string{"in", "sha256-x", "temp", "out", "plain"} {
		s.fileID(name)
	}
	before := proto.Clone(stored)
	got := s.runSpec(stored, core.Dispatch{Task: 1, Attempt: 1, Worker: 1, Files: &core.DispatchFiles{Keep: []core.FileID{s.fileIDs["out"]}}})
	want := &pb.TaskSpec{Name: "t", Command: "cp in out", Resources: &pb.Resources{Cores: 1}, Env: []string{"A=1"},
		Inputs:  []*pb.FileRef{{Name: "in", Path: "in", Size: 7, Digest: "sha256:77"}, {Name: "sha256-x", Path: "x", Content: []byte("x")}},
		Outputs: []*pb.FileRef{{Name: "temp", Path: "t"}, {Name: "out", Path: "out", Upload: true, Keep: true}, {Name: "plain", Path: "p", Upload: true}},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("runSpec mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before, stored, protocmp.Transform()); diff != "" {
		t.Errorf("runSpec changed the stored spec (-before +after):\n%s", diff)
	}
}

// TestShallowCopiesEveryField: copySpec and copyRef copy every field of
// their message, as the schema has it now.
func TestShallowCopiesEveryField(t *testing.T) {
	for _, tc := range []struct {
		msg  proto.Message
		copy func(proto.Message) proto.Message
	}{
		{&pb.TaskSpec{}, func(m proto.Message) proto.Message { return copySpec(m.(*pb.TaskSpec)) }},
		{&pb.FileRef{}, func(m proto.Message) proto.Message { return copyRef(m.(*pb.FileRef)) }},
	} {
		m := tc.msg.ProtoReflect()
		fields := m.Descriptor().Fields()
		for i := 0; i < fields.Len(); i++ { // a value in every field
			fd := fields.Get(i)
			switch {
			case fd.IsList():
				l := m.Mutable(fd).List()
				l.Append(l.NewElement())
			case fd.Message() != nil:
				m.Mutable(fd)
			case fd.Kind() == protoreflect.BoolKind:
				m.Set(fd, protoreflect.ValueOfBool(true))
			case fd.Kind() == protoreflect.StringKind:
				m.Set(fd, protoreflect.ValueOfString("x"))
			case fd.Kind() == protoreflect.BytesKind:
				m.Set(fd, protoreflect.ValueOfBytes([]byte("x")))
			case fd.Kind() == protoreflect.EnumKind:
				m.Set(fd, protoreflect.ValueOfEnum(1))
			case fd.Kind() == protoreflect.Int64Kind:
				m.Set(fd, protoreflect.ValueOfInt64(7))
			case fd.Kind() == protoreflect.Int32Kind:
				m.Set(fd, protoreflect.ValueOfInt32(7))
			case fd.Kind() == protoreflect.Uint32Kind:
				m.Set(fd, protoreflect.ValueOfUint32(7))
			default:
				t.Fatalf("%s: field %s of kind %s: teach this test its kind", m.Descriptor().FullName(), fd.Name(), fd.Kind())
			}
			if !m.Has(fd) {
				t.Fatalf("%s: could not set field %s", m.Descriptor().FullName(), fd.Name())
			}
		}
		if got := tc.copy(tc.msg); !proto.Equal(got, tc.msg) {
			t.Errorf("the copy of %s differs: got %v, want %v", m.Descriptor().FullName(), got, tc.msg)
		}
	}
}
