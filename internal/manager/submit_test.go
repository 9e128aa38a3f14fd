package manager

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	goproto "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"trellis/internal/core"
	pb "trellis/internal/proto/trellisv1"
)

// TestSubmitRefusesProducedOutputs checks that a submit naming an output
// that another task produces, earlier or in the same request, is refused as
// a whole: the core's catalog knows who produces what.
func TestSubmitRefusesProducedOutputs(t *testing.T) {
	m := startManager(t)
	producer := func(key, out string) *pb.TaskSpec {
		t := missingInput(key)
		t.Outputs = []*pb.FileRef{{Name: out, Path: "out"}}
		return t
	}
	if _, err := submit(t, m, producer("a", "out-1")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		tasks []*pb.TaskSpec
		want  string
	}{
		{"produced by an earlier task", []*pb.TaskSpec{producer("b", "out-2"), producer("c", "out-1")},
			`task "c": output file out-1 is already produced by another task`},
		{"produced twice in one request", []*pb.TaskSpec{producer("d", "out-3"), producer("e", "out-3")},
			`task "e": output file out-3 is already produced by another task`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := submit(t, m, tc.tasks...)
			var cerr *connect.Error
			if !errors.As(err, &cerr) || cerr.Code() != connect.CodeInvalidArgument || cerr.Message() != tc.want {
				t.Errorf("submit: got %v, want invalid argument: %s", err, tc.want)
			}
		})
	}
	// Nothing of a refused request was kept: its other outputs are free.
	if _, err := submit(t, m, producer("f", "out-2"), producer("g", "out-3")); err != nil {
		t.Errorf("submit of outputs only refused requests named: %v", err)
	}
}

// TestSubmitAfter checks that "after" reaches the core: a task after one
// that ends input missing ends input missing too, naming it, transitively.
func TestSubmitAfter(t *testing.T) {
	m := startManager(t)
	b, c := missingInput("b"), missingInput("c")
	b.Inputs, c.Inputs = nil, nil
	b.After, c.After = []uint32{2}, []uint32{0} // b after a, c after b; a first in the request is not needed
	ids, err := submit(t, m, b, c, missingInput("a"))
	if err != nil {
		t.Fatal(err)
	}
	type done struct {
		Key     string
		Kind    pb.ResultKind
		Message string
	}
	var got []done
	for _, e := range watch(t, m, 0, 3) {
		got = append(got, done{e.Key, e.Outcome.GetKind(), e.Outcome.GetMessage()})
	}
	missing := pb.ResultKind_RESULT_KIND_INPUT_MISSING
	want := []done{
		{"a", missing, `input "in" (file sha256-a) is not at the manager`},
		{"b", missing, fmt.Sprintf("after task %d, which ended with input missing", ids[2])},
		{"c", missing, fmt.Sprintf("after task %d, which ended with input missing", ids[0])},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// TestSubmitLeavesRequestAlone checks that the manager never writes into a
// submitted message: the record it keeps is its own copy, with what the
// submit decided filled in.
func TestSubmitLeavesRequestAlone(t *testing.T) {
	m, err := Listen(Config{Listen: "127.0.0.1:0", Secret: "s", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.ln.Close()
	const hello = "sha256-2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	task := &pb.TaskSpec{Name: "t", Key: "t", Command: "cat in", Resources: &pb.Resources{Cores: 1},
		Inputs:  []*pb.FileRef{{Name: hello, Path: "in", Content: []byte("hello")}, {Name: "tmp-u", Path: "u"}},
		Outputs: []*pb.FileRef{{Name: "out-t", Path: "out"}, {Name: "tmp-t", Path: "tmp"}}}
	req := &pb.SubmitRequest{Session: "s1", Tasks: []*pb.TaskSpec{task}, Files: []*pb.FileDecl{
		{Name: "tmp-t", Kind: pb.FileKind_FILE_KIND_TEMP, Level: pb.CacheLevel_CACHE_LEVEL_WORKFLOW},
		{Name: "tmp-u", Kind: pb.FileKind_FILE_KIND_TEMP, Level: pb.CacheLevel_CACHE_LEVEL_TASK},
	}}
	before := goproto.CloneOf(req)
	s := m.state // the loop does not run: the test owns the state
	r := s.submit(req, nil)
	if r.err != nil {
		t.Fatal(r.err)
	}
	ids := r.ids
	if diff := cmp.Diff(before, req, protocmp.Transform()); diff != "" {
		t.Errorf("the request changed (-before +after):\n%s", diff)
	}
	want := goproto.CloneOf(task)
	want.Inputs[0].Size, want.Inputs[0].Digest = 5, "sha256:"+hello[len("sha256-"):]
	want.Inputs[1].Level = pb.CacheLevel_CACHE_LEVEL_TASK
	want.Outputs[0].Upload = true // undeclared: a plain output
	want.Outputs[1].Keep, want.Outputs[1].Level = true, pb.CacheLevel_CACHE_LEVEL_WORKFLOW
	want.Keep = pb.Keep_KEEP_LINEAGE // the default, without a --checkpoint-dir
	rec := s.tasks[core.TaskID(ids[0])]
	if rec == nil {
		t.Fatalf("no record of task %d", ids[0])
	}
	if diff := cmp.Diff(want, rec.spec, protocmp.Transform()); diff != "" {
		t.Errorf("the task's record (-want +got):\n%s", diff)
	}
}

// TestSubmitsStream checks the Submits stream over HTTP/2: each request is
// answered in order, as Submit answers it, and a refused one ends the
// stream with Submit's error.
func TestSubmitsStream(t *testing.T) {
	m := startManager(t)
	stream := clientOf(t, m).Submits(context.Background())
	defer stream.CloseResponse()
	var ids []uint64
	for _, tasks := range [][]*pb.TaskSpec{{missingInput("a")}, {missingInput("b"), missingInput("c")}} {
		if err := stream.Send(&pb.SubmitRequest{Session: "s1", Tasks: tasks}); err != nil {
			t.Fatalf("send: %v", err)
		}
		resp, err := stream.Receive()
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		ids = append(ids, resp.TaskIds...)
	}
	if diff := cmp.Diff([]uint64{1, 2, 3}, ids); diff != "" {
		t.Errorf("task IDs (-want +got):\n%s", diff)
	}
	// The same refusal as TestSubmitRefusesProducedOutputs's, through the stream.
	out := func(key string) *pb.TaskSpec {
		t := missingInput(key)
		t.Outputs = []*pb.FileRef{{Name: "out-1", Path: "out"}}
		return t
	}
	if err := stream.Send(&pb.SubmitRequest{Session: "s1", Tasks: []*pb.TaskSpec{out("d"), out("e")}}); err != nil {
		t.Fatalf("send: %v", err)
	}
	const want = `task "e": output file out-1 is already produced by another task`
	if resp, err := stream.Receive(); connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), want) {
		t.Errorf("refused submit: got %v, %v; want invalid argument: %s", resp, err, want)
	}
	if _, err := stream.Receive(); err == nil {
		t.Errorf("the stream goes on after a refused submit; want it ended")
	}
}
