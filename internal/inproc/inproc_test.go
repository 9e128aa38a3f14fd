package inproc

import (
	"errors"
	"io"
	"testing"

	pb "trellis/internal/proto/trellisv1"
)

func TestPipe(t *testing.T) {
	w, m := Pipe[*pb.WorkerMessage, *pb.ManagerMessage]()
	hb := &pb.WorkerMessage{Msg: &pb.WorkerMessage_Heartbeat{Heartbeat: &pb.Heartbeat{}}}
	for range 3 {
		if err := w.Send(hb); err != nil {
			t.Fatal(err)
		}
	}
	got, err := m.Receive()
	if err != nil || got.GetHeartbeat() == nil || got == hb {
		t.Fatalf("Receive = %v, %v; want a copy of the heartbeat", got, err)
	}
	w.CloseSend()
	if err := w.Send(hb); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after CloseSend: %v", err)
	}
	for range 2 { // sent before the half-close: still due
		if _, err := m.Receive(); err != nil {
			t.Fatalf("Receive after the half-close: %v", err)
		}
	}
	if _, err := m.Receive(); err != io.EOF {
		t.Fatalf("Receive at the end: %v; want io.EOF", err)
	}
	if err := m.Send(&pb.ManagerMessage{}); err != nil { // the other way is still open
		t.Fatal(err)
	}
	if _, err := w.Receive(); err != nil {
		t.Fatal(err)
	}
	m.Close()
	if _, err := w.Receive(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Receive after Close: %v", err)
	}
	if err := w.Send(hb); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
}
