package manager

import (
	"bytes"
	"fmt"
	"testing"

	goproto "google.golang.org/protobuf/proto"

	pb "trellis/internal/proto/trellisv1"
)

// TestRecordsByHand checks that the records encoded by hand (a dispatch,
// a task's end) are byte for byte what goproto.Marshal makes of them,
// zero values and large numbers included, each in a chunk of recordBuf
// beside others, and that the schema of the messages they encode has not
// grown (a new field must be encoded by hand too).
func TestRecordsByHand(t *testing.T) {
	if n := (&pb.JournalDispatched{}).ProtoReflect().Descriptor().Fields().Len(); n != 4 {
		t.Fatalf("JournalDispatched has %d fields, appendDispatched encodes 4: encode the new ones there", n)
	}
	if n := (&pb.JournalTaskDone{}).ProtoReflect().Descriptor().Fields().Len(); n != 4 {
		t.Fatalf("JournalTaskDone has %d fields, appendDone encodes 4: encode the new ones there", n)
	}
	outcomes := []*pb.Outcome{
		{},
		{Kind: pb.ResultKind_RESULT_KIND_SUCCESS, RunMs: 3, PeakMemoryMb: 1},
		{Kind: pb.ResultKind_RESULT_KIND_FAILED, ExitCode: -1, Message: "exit status 1", Stderr: []byte("oops"), StderrTruncated: true},
		{Kind: pb.ResultKind_RESULT_KIND_SUCCESS, Result: bytes.Repeat([]byte("r"), 300),
			Outputs:    []*pb.FileInfo{{Name: "sha256-ab", Size: 12, Digest: "sha256:ab", Uploaded: true}},
			ResultFile: &pb.FileInfo{Name: "sha256-cd", Size: 1 << 20}},
		{Kind: pb.ResultKind_RESULT_KIND_SUCCESS, Result: bytes.Repeat([]byte("big"), recordChunk/8)}, // a record of its own
	}
	var r recordBuf
	var kept [][]byte // records taken earlier: later ones must not write over them
	var want [][]byte
	for _, task := range []uint64{0, 1, 127, 128, 1 << 40, ^uint64(0)} {
		for _, attempt := range []uint32{0, 1, 300, ^uint32(0)} {
			for _, worker := range []string{"", "w", "incarnation-0123456789abcdef"} {
				name := fmt.Sprintf("task %d attempt %d worker %q", task, attempt, worker)
				d := &pb.JournalRecord{Rec: &pb.JournalRecord_Dispatched{Dispatched: &pb.JournalDispatched{TaskId: task, Attempt: attempt, Worker: worker, Epoch: task / 3}}}
				n := sizeDispatched(task, attempt, worker, task/3)
				if room := recordSize(kindDispatched, n); room != goproto.Size(d) {
					t.Fatalf("dispatch of %s: room for %d bytes, goproto.Size says %d", name, room, goproto.Size(d))
				}
				got := r.take(appendDispatched(r.room(recordSize(kindDispatched, n)), n, task, attempt, worker, task/3))
				check(t, "dispatch of "+name, d, got)
				kept, want = append(kept, got), append(want, bytes.Clone(got))
				for i, o := range outcomes {
					done := &pb.JournalRecord{Rec: &pb.JournalRecord_Done{Done: &pb.JournalTaskDone{TaskId: task, Attempt: attempt, Outcome: o, Worker: worker}}}
					size := goproto.Size(o)
					n := sizeDone(task, attempt, size, worker)
					if room := recordSize(kindDone, n); room != goproto.Size(done) {
						t.Fatalf("end of %s, outcome %d: room for %d bytes, goproto.Size says %d", name, i, room, goproto.Size(done))
					}
					got, err := appendDone(r.room(recordSize(kindDone, n)), n, task, attempt, o, size, worker)
					if err != nil {
						t.Fatal(err)
					}
					got = r.take(got)
					check(t, fmt.Sprintf("end of %s, outcome %d", name, i), done, got)
					kept, want = append(kept, got), append(want, bytes.Clone(got))
				}
			}
		}
	}
	for i := range kept {
		if !bytes.Equal(kept[i], want[i]) {
			t.Fatalf("record %d taken from recordBuf changed after later records", i)
		}
	}
}

func check(t *testing.T, what string, m *pb.JournalRecord, got []byte) {
	t.Helper()
	want, err := goproto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: by hand %x, goproto.Marshal %x", what, got, want)
	}
	if cap(got) != len(got) {
		t.Errorf("%s: record's slice has room past its end (cap %d, len %d): a later record could be appended into it", what, cap(got), len(got))
	}
}
