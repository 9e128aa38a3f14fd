package proto

import (
	"bytes"
	"slices"
	"testing"

	goproto "google.golang.org/protobuf/proto"

	pb "trellis/internal/proto/trellisv1"
)

func unlink(name string, size int) *pb.ManagerMessage {
	return &pb.ManagerMessage{Msg: &pb.ManagerMessage_Unlink{Unlink: &pb.Unlink{Names: []string{name + string(bytes.Repeat([]byte("x"), size))}}}}
}

func wrapManager(ms []*pb.ManagerMessage) *pb.ManagerMessage {
	return &pb.ManagerMessage{Msg: &pb.ManagerMessage_Batch{Batch: &pb.ManagerBatch{Msgs: append([]*pb.ManagerMessage(nil), ms...)}}}
}

// flatten undoes the batching, checking that batches respect the limits.
func flatten(t *testing.T, sent []*pb.ManagerMessage) []string {
	t.Helper()
	var names []string
	for _, m := range sent {
		if b := m.GetBatch(); b != nil {
			if len(b.Msgs) < 2 || len(b.Msgs) > MaxBatchMessages {
				t.Fatalf("batch of %d messages", len(b.Msgs))
			}
			if n := goproto.Size(m); n > MaxBatchBytes+64 {
				t.Fatalf("batch of %d bytes", n)
			}
			for _, inner := range b.Msgs {
				names = append(names, inner.GetUnlink().Names[0][:1])
			}
			continue
		}
		names = append(names, m.GetUnlink().Names[0][:1])
	}
	return names
}

func TestSendQueuedKeepsOrderWithinLimits(t *testing.T) {
	cases := []struct {
		name  string
		sizes []int
		sends int
	}{
		{"alone", []int{10}, 1},
		{"burst", []int{10, 10, 10, 10}, 1},
		{"big one splits", []int{10, 10, MaxBatchBytes - 10, 10}, 3},
		{"too many", make([]int, MaxBatchMessages+5), 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch := make(chan *pb.ManagerMessage, len(tc.sizes))
			var want []string
			for i, n := range tc.sizes {
				name := string(rune('a' + i%26))
				want = append(want, name)
				if i > 0 {
					ch <- unlink(name, n)
				}
			}
			var sent []*pb.ManagerMessage
			err := SendQueued(unlink("a", tc.sizes[0]), ch, wrapManager, func(m *pb.ManagerMessage) error {
				sent = append(sent, m)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(sent) != tc.sends {
				t.Errorf("%d sends, want %d", len(sent), tc.sends)
			}
			if got := flatten(t, sent); !slices.Equal(got, want) {
				t.Errorf("order %v, want %v", got, want)
			}
		})
	}
}
