package worker

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/framed"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// framedStream is the Work stream on a connection of its own (Config.Framed).
type framedStream struct {
	*framed.Stream[*pb.WorkerMessage, *pb.ManagerMessage]
}

// CloseSend tells the manager the worker sends no more: its Receive ends.
func (s framedStream) CloseSend() error { return s.End(nil) }

// failedStream is a stream that could not be opened: it fails as one that
// broke at once, with the reason.
type failedStream struct{ err error }

func (s failedStream) Send(*pb.WorkerMessage) error         { return s.err }
func (s failedStream) Receive() (*pb.ManagerMessage, error) { return nil, s.err }
func (s failedStream) CloseSend() error                     { return nil }

// dialTimeout bounds the dial, the TLS handshake and the upgrade.
const dialTimeout = 10 * time.Second

// dialFramed connects to the manager, over TLS when Config.TLS says so,
// and asks to upgrade the connection to a framed Work stream with the
// secret. The connection closes when ctx ends. A refusal comes back as the
// connect error an HTTP/2 stream would carry (a wrong secret:
// Unauthenticated), so that the session treats both alike.
func (w *Worker) dialFramed(ctx context.Context) (framedStream, error) {
	// A dead manager's host answers nothing: keepalives after PingIdle
	// of silence find it, as HTTP/2's pings do, and unacknowledged data
	// gives up after PingIdle+PingTimeout (tcpUserTimeout).
	d := &net.Dialer{Timeout: dialTimeout, KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: proto.PingIdle, Interval: proto.PingTimeout / 2, Count: 2}}
	conn, err := d.DialContext(ctx, "tcp", w.cfg.Manager)
	if err != nil {
		return framedStream{}, err
	}
	tcpUserTimeout(conn, proto.PingIdle+proto.PingTimeout)
	conn.SetDeadline(time.Now().Add(dialTimeout))
	scheme := "http"
	if w.cfg.TLS != nil {
		cfg := w.cfg.TLS.Clone()
		cfg.NextProtos = []string{"http/1.1"} // an upgrade is HTTP/1.1's
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(w.cfg.Manager)
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return framedStream{}, err
		}
		conn, scheme = tc, "https"
	}
	req := &http.Request{Method: http.MethodGet, URL: &url.URL{Scheme: scheme, Host: w.cfg.Manager, Path: framed.Path},
		Host: w.cfg.Manager, Header: http.Header{"Upgrade": {framed.Upgrade}, "Connection": {"Upgrade"}}}
	w.authorize(req.Header)
	br := bufio.NewReaderSize(conn, 32<<10)
	if err := req.Write(conn); err != nil {
		conn.Close()
		return framedStream{}, err
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return framedStream{}, fmt.Errorf("upgrade to the framed transport: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		conn.Close()
		return framedStream{}, upgradeRefused(resp.StatusCode, body)
	}
	conn.SetDeadline(time.Time{})
	context.AfterFunc(ctx, func() { conn.Close() })
	return framedStream{framed.New[*pb.WorkerMessage, *pb.ManagerMessage](conn, br, proto.MaxMessageBytes, proto.CompressMinBytes,
		func() *pb.ManagerMessage { return new(pb.ManagerMessage) })}, nil
}

// upgradeRefused turns the manager's answer to an upgrade into the
// connect error it stands for.
func upgradeRefused(status int, body []byte) error {
	msg := strings.TrimSpace(string(body))
	var ce struct{ Message string }
	if json.Unmarshal(body, &ce) == nil && ce.Message != "" {
		msg = ce.Message // connect's error body
	}
	switch status {
	case http.StatusUnauthorized:
		return connect.NewError(connect.CodeUnauthenticated, errors.New(msg))
	case http.StatusForbidden:
		return connect.NewError(connect.CodePermissionDenied, errors.New(msg))
	case http.StatusNotFound:
		return connect.NewError(connect.CodeUnimplemented, fmt.Errorf("the manager does not serve the framed transport (an older version?): start the worker without --transport framed"))
	}
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("upgrade to the framed transport: HTTP %d: %s", status, msg))
}
