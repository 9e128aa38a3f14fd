package manager

import (
	"context"
	"net/http"
	"strings"
	"time"

	"trellis/internal/framed"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// workFramed serves a worker's Work stream over its own connection
// (package framed): an HTTP/1.1 request that asks to upgrade to
// framed.Upgrade, whose secret requireSecret checked, is answered 101 and
// the connection is handed to the same session code as an HTTP/2 stream.
func (m *Manager) workFramed(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), framed.Upgrade) {
		http.Error(w, "trellis: ask to upgrade to "+framed.Upgrade+" (trellis worker --transport framed)", http.StatusBadRequest)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok { // HTTP/2 has no upgrade
		http.Error(w, "trellis: the framed transport needs HTTP/1.1", http.StatusHTTPVersionNotSupported)
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		m.log.Warn("framed work stream: hijack", "peer", r.RemoteAddr, "err", err)
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Time{}) // the server's read deadlines were for the request
	if _, err := rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + framed.Upgrade + "\r\nConnection: Upgrade\r\n\r\n"); err != nil {
		return
	}
	if err := rw.Flush(); err != nil {
		return
	}
	stream := &framedWork{framed.New[*pb.ManagerMessage, *pb.WorkerMessage](conn, rw.Reader, proto.MaxMessageBytes, proto.CompressMinBytes,
		func() *pb.WorkerMessage { return new(pb.WorkerMessage) })}
	// A hijacked connection is the manager's to end: the server's
	// shutdown does not see it.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() { // exits when the manager stops or the stream ends
		select {
		case <-m.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := m.work(ctx, stream, r.RemoteAddr); err != nil {
		stream.End(err) // the worker reads it as the error an HTTP/2 stream's end carries
		return
	}
	stream.End(nil)
}

// framedWork is a Work stream over a connection of its own.
type framedWork struct {
	*framed.Stream[*pb.ManagerMessage, *pb.WorkerMessage]
}

// Abort closes the connection, so that a Receive blocked on it returns
// (an HTTP/2 stream's ends when its handler returns).
func (s *framedWork) Abort() { s.Close() }

// aborter is a stream whose blocked Receive must be ended by hand.
type aborter interface{ Abort() }

var _ aborter = (*framedWork)(nil)
