package manager

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
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
