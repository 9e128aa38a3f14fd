package gate_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"testing"
	"time"

	"trellis/internal/certs"
	"trellis/internal/gate"
)

// server serves a gated listener of at most max strangers, with no grace;
// a request with the header "Admit: yes" admits its connection.
func server(t *testing.T, max int) *gate.Listener {
	return serverGrace(t, max, 0)
}

func serverGrace(t *testing.T, max int, grace time.Duration) *gate.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := gate.Listen(ln, max, grace)
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Protocols:   protocols,
		ConnContext: gate.ConnContext,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Admit") == "yes" {
				gate.Admit(r.Context())
			}
		}),
	}
	go srv.Serve(gl) // exits when the test's cleanup closes the server
	t.Cleanup(func() { srv.Close() })
	return gl
}

func waitStrangers(t *testing.T, gl *gate.Listener, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for gl.Strangers() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Strangers() = %d after 10s, want %d", gl.Strangers(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// closed reports whether the server closed c, waiting up to 10 s.
func closed(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return err == io.EOF || err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestOldestStrangerGoes(t *testing.T) {
	gl := server(t, 2)
	var conns []net.Conn
	for i := range 3 {
		c, err := net.Dial("tcp", gl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
		waitStrangers(t, gl, min(i+1, 2))
	}
	if !closed(t, conns[0]) {
		t.Errorf("the oldest of 3 silent connections is open, want it closed (bound 2)")
	}
	if got := gl.Evicted.Load(); got != 1 {
		t.Errorf("Evicted = %d, want 1", got)
	}
	conns[1].Close()
	waitStrangers(t, gl, 1)
}

// A stranger within its grace is not closed for a newer one: the newer
// waits (in the kernel's backlog) until a stranger leaves or is admitted.
// A burst of peers that all hold the secret so loses none of them.
func TestYoungStrangersWait(t *testing.T) {
	gl := serverGrace(t, 2, time.Hour)
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", gl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	waitStrangers(t, gl, 2)

	// An admitting request on a third connection, which the kernel
	// completes and Accept takes only once there is room.
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetHTTP1(true)
	defer tr.CloseIdleConnections()
	admitted := make(chan error, 1)
	go func() { // exits when the request ends
		req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+gl.Addr().String()+"/", nil)
		req.Header.Set("Admit", "yes")
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		admitted <- err
	}()
	conns[1].Close()
	if err := <-admitted; err != nil {
		t.Fatalf("a request with the secret, behind two young strangers, one of which left: %v", err)
	}
	if got := gl.Evicted.Load(); got != 0 {
		t.Errorf("Evicted = %d, want 0: no stranger was older than its grace", got)
	}
	if got := gl.Strangers(); got != 1 {
		t.Errorf("Strangers() = %d, want 1 (conns[0])", got)
	}
	conns[0].SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := conns[0].Read(make([]byte, 1)); !isTimeout(err) {
		t.Errorf("the oldest stranger, within its grace: read %v, want it still open", err)
	}
}

// A Close while Accept waits for room ends the wait.
func TestCloseEndsTheWait(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := gate.Listen(ln, 1, time.Hour)
	c, err := net.Dial("tcp", gl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := gl.Accept(); err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() { // exits when Accept returns
		_, err := gl.Accept()
		accepted <- err
	}()
	gl.Close()
	if err := <-accepted; err == nil {
		t.Errorf("Accept waiting for room on a closed listener: nil error, want one")
	}
}

func TestAdmittedConnectionsStay(t *testing.T) {
	for _, tc := range []struct {
		name string
		h2c  bool
	}{{"HTTP/1.1", false}, {"h2c", true}} {
		t.Run(tc.name, func(t *testing.T) {
			gl := server(t, 1)
			protocols := new(http.Protocols)
			if tc.h2c {
				protocols.SetUnencryptedHTTP2(true)
			} else {
				protocols.SetHTTP1(true)
			}
			tr := &http.Transport{Protocols: protocols}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+gl.Addr().String()+"/", nil)
			req.Header.Set("Admit", "yes")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.ProtoMajor != map[bool]int{false: 1, true: 2}[tc.h2c] {
				t.Fatalf("served over %s, want %s", resp.Proto, tc.name)
			}
			waitStrangers(t, gl, 0)

			// Strangers come and go; the admitted connection is kept
			// and serves the next request.
			for range 3 {
				c, err := net.Dial("tcp", gl.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
			}
			waitStrangers(t, gl, 1)
			trace := &connTrace{}
			req, _ = http.NewRequestWithContext(trace.context(), "GET", "http://"+gl.Addr().String()+"/", nil)
			resp, err = client.Do(req)
			if err != nil {
				t.Fatalf("second request on the admitted connection: %v", err)
			}
			resp.Body.Close()
			if !trace.reused {
				t.Errorf("the second request went over a new connection, want the admitted one")
			}
		})
	}
}

// connTrace records whether a request reused a connection.
type connTrace struct{ reused bool }

func (c *connTrace) context() context.Context {
	return httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { c.reused = info.Reused },
	})
}

// Under TLS (a *tls.Conn over the gate's Conn, as the manager serves it) a
// request still admits its connection, and strangers still go.
func TestAdmitUnderTLS(t *testing.T) {
	dir := t.TempDir()
	files, err := certs.Auto(dir, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, err := certs.Server(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := gate.Listen(ln, 1, 0)
	srv := &http.Server{
		TLSConfig:   serverTLS,
		ConnContext: gate.ConnContext,
		Handler:     http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { gate.Admit(r.Context()) }),
	}
	go srv.ServeTLS(gl, "", "") // exits when the test's cleanup closes the server
	t.Cleanup(func() { srv.Close() })

	clientTLS, err := certs.Client(gl.Addr().String(), files.CA, "")
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: clientTLS, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + gl.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("served over %s, want HTTP/2 by ALPN", resp.Proto)
	}
	waitStrangers(t, gl, 0)
	c, err := net.Dial("tcp", gl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitStrangers(t, gl, 1)
	c2, err := net.Dial("tcp", gl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if !closed(t, c) {
		t.Errorf("the older of 2 silent connections is open, want it closed (bound 1)")
	}
}
