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
	got := s.runSpec(&taskRecord{spec: stored}, core.Dispatch{Task: 1, Attempt: 1, Worker: 1, Files: &core.DispatchFiles{Keep: []core.FileID{s.fileIDs["out"]}}})
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
			if !setField(m, fd) {
				t.Fatalf("%s: field %s of kind %s: teach setField its kind", m.Descriptor().FullName(), fd.Name(), fd.Kind())
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

// setField gives field fd of m a value that is not its default; false for
// a kind it does not know.
func setField(m protoreflect.Message, fd protoreflect.FieldDescriptor) bool {
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
		return false
	}
	return true
}

// TestPlainSpecKeepsEveryField: a task is kept as a plainSpec only when
// every field it sets is one plainSpec keeps, and the spec built from it
// is the one submitted. It fails when the schema gains a field that
// isPlain does not know: teach isPlain or plainSpec that field.
func TestPlainSpecKeepsEveryField(t *testing.T) {
	keeps := map[protoreflect.Name]bool{"name": true, "command": true, "resources": true, "retries": true,
		"retry_on_error": true, "time_limit_ms": true, "priority": true, "category": true, "key": true,
		"unplaceable_timeout_ms": true, "deterministic": true, "effects": true, "workflow": true}
	full := &pb.TaskSpec{Name: "n", Command: "c", Resources: &pb.Resources{Cores: 0.5, MemoryMb: 2, DiskMb: 3, Gpus: 4},
		Retries: 5, RetryOnError: true, TimeLimitMs: 6, Priority: 7, Category: "cat", Key: "k",
		UnplaceableTimeoutMs: 8, Deterministic: true, Effects: pb.Effects_EFFECTS_AT_MOST_ONCE, Workflow: "w"}
	fields := full.ProtoReflect().Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if keeps[fd.Name()] != full.ProtoReflect().Has(fd) {
			t.Fatalf("field %s: set it in this test if plainSpec keeps it, else teach isPlain that a task setting it is not plain", fd.Name())
		}
		if keeps[fd.Name()] {
			continue
		}
		other := proto.Clone(full).(*pb.TaskSpec)
		if !setField(other.ProtoReflect(), fd) {
			t.Fatalf("field %s of kind %s: teach setField its kind", fd.Name(), fd.Kind())
		}
		if isPlain(other) {
			t.Errorf("a task with %s set is plain: plainSpec would lose it", fd.Name())
		}
	}
	for _, spec := range []*pb.TaskSpec{full, {Command: "true"}, {Command: "true", Resources: &pb.Resources{}}} {
		if !isPlain(spec) {
			t.Fatalf("%v is not plain", spec)
		}
		rec := plainRecord(spec, nil, nil)
		if diff := cmp.Diff(spec, rec.stored(), protocmp.Transform()); diff != "" {
			t.Errorf("the plain record's spec (-submitted +built):\n%s", diff)
		}
		if rec.stored() == rec.stored() {
			t.Errorf("stored() returned one spec twice: a dispatch could change what another sends")
		}
	}
}

// TestPlainSpecShared: plain tasks submitted one after another share one
// plainSpec while they differ only in name and key, and each still has
// its own spec.
func TestPlainSpecShared(t *testing.T) {
	specs := []*pb.TaskSpec{
		{Name: "a", Key: "1", Command: "true", Resources: &pb.Resources{Cores: 1}},
		{Name: "b", Key: "2", Command: "true", Resources: &pb.Resources{Cores: 1}},
		{Key: "3", Command: "true", Resources: &pb.Resources{Cores: 1}},
		{Name: "d", Key: "4", Command: "true", Resources: &pb.Resources{Cores: 2}},
		{Name: "e", Key: "5", Command: "false", Resources: &pb.Resources{Cores: 2}},
		{Name: "f", Key: "6", Command: "false", Resources: &pb.Resources{Cores: 2}},
	}
	shared := []bool{false, true, true, false, false, true} // with the task before
	var last *plainSpec
	for i, spec := range specs {
		rec := plainRecord(spec, nil, last)
		if got := rec.plain == last; got != shared[i] {
			t.Errorf("task %d (%v) shares the plainSpec of the one before: %v; want %v", i, spec, got, shared[i])
		}
		if diff := cmp.Diff(spec, rec.stored(), protocmp.Transform()); diff != "" {
			t.Errorf("task %d: the plain record's spec (-submitted +built):\n%s", i, diff)
		}
		last = rec.plain
	}
}
