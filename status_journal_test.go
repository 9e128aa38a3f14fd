package trellis

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	pb "trellis/internal/proto/trellisv1"
)

// TestStatusOfJournal: the journal's size and last snapshot reach Status
// (and so --json); no snapshot gives no LastSnapshot.
func TestStatusOfJournal(t *testing.T) {
	at := time.UnixMilli(1_796_000_000_000)
	got := statusOf(&pb.StatusResponse{Journal: &pb.JournalStatus{Path: "p", Durable: 10, FileBytes: 4096, SinceSnapshot: 3,
		SnapshotUnixMs: at.UnixMilli(), SnapshotFolded: 7, SnapshotRecords: 2, SnapshotBytes: 100, SnapshotError: "disk full"}}).Journal
	want := &JournalStatus{Path: "p", Durable: 10, FileBytes: 4096, SinceSnapshot: 3, SnapshotError: "disk full",
		LastSnapshot: &JournalSnapshot{At: at, Folded: 7, Records: 2, Bytes: 100}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("journal status (-want +got):\n%s", diff)
	}
	if got := statusOf(&pb.StatusResponse{Journal: &pb.JournalStatus{Path: "p", Durable: 1, SinceSnapshot: 1}}).Journal; got.LastSnapshot != nil {
		t.Errorf("journal status without a snapshot: LastSnapshot %+v, want nil", got.LastSnapshot)
	}
}
