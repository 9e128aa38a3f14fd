package framed

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
)

// The upgrades this package's streams are asked by, and where: a client's
// Watch stream (of the manager) and Calls stream (of a worker, on its file
// server's port).
const (
	WatchUpgrade = "trellis-watch/1"
	WatchPath    = "/trellis.v1.Manager/WatchFramed"
	CallsUpgrade = "trellis-calls/1"
	CallsPath    = "/trellis.v1.Worker/CallsFramed"
)

// DialTimeout bounds a dial, its TLS handshake and the upgrade.
const DialTimeout = 10 * time.Second

// Dial connects to addr (host:port), over TLS with tlsConfig when it is
// not nil, and asks to upgrade the connection to protocol upgrade at path,
// with the request's header h (its secret). It returns the connection and
// the reader that holds what came after the answer. The connection closes
// when ctx ends. keepIdle, when positive, turns on TCP keepalives after
// that much silence (probes every tenth of it, two unanswered lose it) and
// makes unacknowledged writes fail after 1.2 × keepIdle. A refusal comes
// back as the connect error it stands for (a wrong secret:
// Unauthenticated; a manager without the path, an older version:
// Unimplemented).
func Dial(ctx context.Context, addr string, tlsConfig *tls.Config, path, upgrade string, h http.Header, keepIdle time.Duration) (net.Conn, *bufio.Reader, error) {
	d := &net.Dialer{Timeout: DialTimeout}
	if keepIdle > 0 {
		d.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: keepIdle, Interval: keepIdle / 10, Count: 2}
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if keepIdle > 0 {
		userTimeout(conn, keepIdle*6/5)
	}
	conn.SetDeadline(time.Now().Add(DialTimeout))
	scheme := "http"
	if tlsConfig != nil {
		cfg := tlsConfig.Clone()
		cfg.NextProtos = []string{"http/1.1"} // an upgrade is HTTP/1.1's
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, nil, err
		}
		conn, scheme = tc, "https"
	}
	req := &http.Request{Method: http.MethodGet, URL: &url.URL{Scheme: scheme, Host: addr, Path: path},
		Host: addr, Header: h.Clone()}
	req.Header.Set("Upgrade", upgrade)
	req.Header.Set("Connection", "Upgrade")
	br := bufio.NewReaderSize(conn, 32<<10)
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, nil, err
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("upgrade to %s: %w", upgrade, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		conn.Close()
		return nil, nil, refused(upgrade, resp.StatusCode, body)
	}
	conn.SetDeadline(time.Time{})
	context.AfterFunc(ctx, func() { conn.Close() })
	return conn, br, nil
}

// refused turns the answer to an upgrade into the connect error it stands
// for.
func refused(upgrade string, status int, body []byte) error {
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
		return connect.NewError(connect.CodeUnimplemented, fmt.Errorf("the server does not serve %s (an older version?)", upgrade))
	}
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("upgrade to %s: HTTP %d: %s", upgrade, status, msg))
}

// Accept answers a request to upgrade to protocol upgrade: 101, and the
// connection is the caller's, to close, with the reader that holds what
// the client sent after its request. ok is false when it answered
// otherwise (a request without the upgrade, or over HTTP/2). keepIdle, when
// positive, turns on TCP keepalives after that much silence (probes every
// tenth of it, two unanswered lose it), so that a peer whose host died is
// found, as HTTP/2's pings find it.
func Accept(w http.ResponseWriter, r *http.Request, upgrade string, keepIdle time.Duration) (conn net.Conn, br *bufio.Reader, ok bool) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), upgrade) {
		http.Error(w, "trellis: ask to upgrade to "+upgrade, http.StatusBadRequest)
		return nil, nil, false
	}
	hj, ok := w.(http.Hijacker)
	if !ok { // HTTP/2 has no upgrade
		http.Error(w, "trellis: "+upgrade+" needs HTTP/1.1", http.StatusHTTPVersionNotSupported)
		return nil, nil, false
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, false
	}
	conn.SetDeadline(time.Time{}) // the server's deadlines were for the request
	if keepIdle > 0 {
		keepAlive(conn, keepIdle)
	}
	rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + upgrade + "\r\nConnection: Upgrade\r\n\r\n")
	if err := rw.Flush(); err != nil {
		conn.Close()
		return nil, nil, false
	}
	return conn, rw.Reader, true
}

// keepAlive turns on keepalives on the TCP connection under conn (through
// TLS, whose connection has NetConn, and the manager's gate, Underlying).
func keepAlive(conn net.Conn, idle time.Duration) {
	for {
		switch c := conn.(type) {
		case *net.TCPConn:
			c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: idle, Interval: idle / 10, Count: 2})
			return
		case interface{ NetConn() net.Conn }:
			conn = c.NetConn()
		case interface{ Underlying() net.Conn }:
			conn = c.Underlying()
		default:
			return
		}
	}
}
