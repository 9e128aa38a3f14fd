package manager

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"trellis/internal/framed"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/syncbuf"
)

// upgrade dials m and asks for a framed Work stream with secret and the
// Upgrade header upgrade; it returns the response and, on 101, the stream.
func upgrade(t *testing.T, m *Manager, secret, upgrade string) (*http.Response, *framed.Stream[*pb.WorkerMessage, *pb.ManagerMessage], net.Conn) {
	t.Helper()
	conn, err := net.Dial("tcp", m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req, _ := http.NewRequest(http.MethodGet, "http://"+m.Addr()+framed.Path, nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Upgrade", upgrade)
	req.Header.Set("Connection", "Upgrade")
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return resp, nil, conn
	}
	return resp, framed.New[*pb.WorkerMessage, *pb.ManagerMessage](conn, br, proto.MaxMessageBytes, 0,
		func() *pb.ManagerMessage { return new(pb.ManagerMessage) }), conn
}

// The manager upgrades a request with the secret and the Upgrade header to
// a framed Work stream, which welcomes a hello; it refuses a wrong secret
// (401) and a request without the header (400, saying what to ask); a
// frame over the message limit ends the session as an oversized message.
func TestFramedWorkStream(t *testing.T) {
	var log syncbuf.Buffer
	m, _ := runManager(t, Config{Listen: "127.0.0.1:0", Secret: "s", Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if resp, _, _ := upgrade(t, m, "wrong", framed.Upgrade); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong secret: HTTP %d; want 401", resp.StatusCode)
	}
	if resp, _, _ := upgrade(t, m, "s", "websocket"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("another upgrade: HTTP %d; want 400", resp.StatusCode)
	} else if body, _ := io.ReadAll(resp.Body); !strings.Contains(string(body), "ask to upgrade to "+framed.Upgrade) {
		t.Errorf("another upgrade: %q; want it to say what to ask", body)
	}

	_, s, conn := upgrade(t, m, "s", framed.Upgrade)
	if s == nil {
		t.Fatal("no upgrade with the secret")
	}
	hello := &pb.Hello{Name: "f", Protocol: proto.Protocol, Resources: &pb.Resources{Cores: 1, MemoryMb: 100, DiskMb: 100}}
	if err := s.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	if msg, err := s.Receive(); err != nil || msg.GetWelcome() == nil {
		t.Fatalf("after the hello: %v, %v; want a welcome", msg, err)
	}
	// A frame's length over the limit, without the bytes: the manager
	// must not wait for them.
	conn.Write(binary.AppendUvarint(nil, proto.MaxMessageBytes+2))
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(log.String(), "oversized message: framed: a frame of") {
		if time.Now().After(deadline) {
			t.Fatalf("the manager's log does not say the worker left for an oversized message:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		snap, err := m.Snapshot(context.Background())
		if err == nil && len(snap.Status.Workers) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers after the oversized frame: %v, %v; want none", snap.Status.GetWorkers(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
