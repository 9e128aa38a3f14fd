package framed

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"connectrpc.com/connect"
	goproto "google.golang.org/protobuf/proto"

	pb "trellis/internal/proto/trellisv1"
)

// pair returns the two ends of a framed stream over an in-memory pipe.
func pair(max int) (*Stream[*pb.WorkerMessage, *pb.ManagerMessage], *Stream[*pb.ManagerMessage, *pb.WorkerMessage]) {
	a, b := net.Pipe()
	return New[*pb.WorkerMessage, *pb.ManagerMessage](a, nil, max, 1<<16, func() *pb.ManagerMessage { return new(pb.ManagerMessage) }),
		New[*pb.ManagerMessage, *pb.WorkerMessage](b, nil, max, 1<<16, func() *pb.WorkerMessage { return new(pb.WorkerMessage) })
}

// Messages arrive whole and in order, both ways; a clean end reads as
// io.EOF and an end with an error as that connect error.
func TestRoundTrip(t *testing.T) {
	worker, manager := pair(1 << 20)
	hello := &pb.WorkerMessage{Msg: &pb.WorkerMessage_Hello{Hello: &pb.Hello{Name: "w", Incarnation: strings.Repeat("x", 70000)}}}
	done := &pb.WorkerMessage{Msg: &pb.WorkerMessage_Done{Done: &pb.AttemptDone{TaskId: 7, Attempt: 2}}}
	go func() { // exits once it has sent
		worker.Send(hello)
		worker.Send(done)
		worker.End(nil)
	}()
	for i, want := range []*pb.WorkerMessage{hello, done} {
		got, err := manager.Receive()
		if err != nil || !goproto.Equal(got, want) {
			t.Fatalf("message %d: %v, %v; want %v", i, got, err, want)
		}
	}
	if _, err := manager.Receive(); err != io.EOF {
		t.Fatalf("after a clean end: %v; want io.EOF", err)
	}
	go func() { // exits once it has sent
		manager.Send(&pb.ManagerMessage{Msg: &pb.ManagerMessage_Welcome{Welcome: &pb.Welcome{WorkerId: 3}}})
		manager.End(connect.NewError(connect.CodeInvalidArgument, errors.New("hello: no resources")))
	}()
	if m, err := worker.Receive(); err != nil || m.GetWelcome().GetWorkerId() != 3 {
		t.Fatalf("welcome: %v, %v", m, err)
	}
	_, err := worker.Receive()
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "hello: no resources") {
		t.Fatalf("after an end with an error: %v; want invalid_argument, with its message", err)
	}
}

// A frame over the limit, of an unknown kind, without its kind byte, or
// cut short is an error that says so; a message over the limit is not sent.
func TestBadFrames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bytes []byte
		want  string
	}{
		{"over the limit", []byte{0x81, 0x08, 0}, "a frame of 1024 bytes, over the size limit of 100"},
		{"unknown kind", []byte{2, 9, 0}, "a frame of unknown kind 9"},
		{"no kind", []byte{0}, "a frame without its kind byte"},
		{"cut short", []byte{5, 0, 1}, "unexpected EOF"},
		{"nothing after the length", []byte{0x80}, "EOF"},
		{"undecodable message", []byte{3, 0, 0xff, 0xff}, "decode a message of 2 bytes"},
		{"not gzip", []byte{3, 2, 1, 2}, "a compressed frame of 2 bytes"},
		{"compressed over the limit", frame(2, gzipped(make([]byte, 200))), "a compressed message over the size limit of 100 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := net.Pipe()
			s := New[*pb.WorkerMessage, *pb.ManagerMessage](a, bufio.NewReader(bytes.NewReader(tc.bytes)), 100, 0, func() *pb.ManagerMessage { return new(pb.ManagerMessage) })
			if _, err := s.Receive(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Receive = %v; want an error containing %q", err, tc.want)
			}
		})
	}
	worker, _ := pair(100)
	big := &pb.WorkerMessage{Msg: &pb.WorkerMessage_Hello{Hello: &pb.Hello{Name: strings.Repeat("n", 200)}}}
	if err := worker.Send(big); err == nil || !errors.Is(err, ErrTooLarge) {
		t.Errorf("Send of a message over the limit = %v; want refused", err)
	}
}

// FuzzReceive: no input makes Receive panic or return a message with an
// error; what it decodes encodes again to a message that decodes the same.
func FuzzReceive(f *testing.F) {
	f.Add([]byte{3, 0, 0x0a, 0})
	f.Add([]byte{2, 1, 3})
	f.Add([]byte{0x81, 0x08, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, _ := net.Pipe()
		s := New[*pb.WorkerMessage, *pb.ManagerMessage](a, bufio.NewReader(bytes.NewReader(data)), 1<<16, 0, func() *pb.ManagerMessage { return new(pb.ManagerMessage) })
		for range 4 {
			m, err := s.Receive()
			if err != nil {
				if m != nil {
					t.Fatalf("Receive returned %v with error %v", m, err)
				}
				return
			}
			b, merr := goproto.Marshal(m)
			again := new(pb.ManagerMessage)
			if merr != nil || goproto.Unmarshal(b, again) != nil || !goproto.Equal(m, again) {
				t.Fatalf("a received message does not survive a round trip: %v", m)
			}
		}
	})
}

// Sends from several goroutines at once arrive whole, each sender's in
// order, while the other end sends back; Close ends a blocked Receive.
func TestConcurrentSends(t *testing.T) {
	worker, manager := pair(1 << 20)
	const senders, each = 4, 200
	for s := range senders {
		go func() { // exits once it has sent
			for i := range each {
				worker.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Done{Done: &pb.AttemptDone{TaskId: uint64(s), Attempt: uint32(i)}}})
			}
		}()
	}
	go func() { // exits once the worker's side is closed
		for {
			if _, err := worker.Receive(); err != nil {
				return
			}
		}
	}()
	next := make([]uint32, senders)
	for range senders * each {
		m, err := manager.Receive()
		if err != nil {
			t.Fatal(err)
		}
		d := m.GetDone()
		if d.Attempt != next[d.TaskId] {
			t.Fatalf("sender %d: message %d came after %d", d.TaskId, d.Attempt, next[d.TaskId])
		}
		next[d.TaskId]++
		manager.Send(&pb.ManagerMessage{Msg: &pb.ManagerMessage_Welcome{Welcome: &pb.Welcome{WorkerId: 1}}})
	}
	blocked := make(chan error, 1)
	go func() { // exits when Close ends its Receive
		_, err := manager.Receive()
		blocked <- err
	}()
	manager.Close()
	if err := <-blocked; err == nil {
		t.Error("Receive after Close returned no error")
	}
	worker.Close()
}

// frame encodes one frame of kind with payload.
func frame(kind byte, payload []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(len(payload)+1))
	return append(append(b, kind), payload...)
}

func gzipped(b []byte) []byte {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b)
	zw.Close()
	return z.Bytes()
}
