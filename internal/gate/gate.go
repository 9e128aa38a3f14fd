// Package gate bounds the connections of peers that have not yet shown
// that they may talk to a server.
//
// A server wraps its listener with Listen and passes ConnContext to its
// http.Server; its handler calls Admit once a request on a connection
// carried the secret (or a valid token). Until then the connection is a
// stranger's. When more than max strangers' connections are open, the
// oldest is closed: a flood of strangers, or connections that never finish
// a request, cannot hold the server's memory or goroutines, and a peer that
// has just connected still gets its turn to authenticate. An admitted
// connection is no longer counted; it lives until it closes.
//
// Ownership: Listener.mu guards the line of strangers' connections; it is
// never held across I/O (a connection is closed after it is released).
package gate

import (
	"container/list"
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Listener is a net.Listener that closes the oldest strangers' connections
// beyond its bound. Create it with Listen.
type Listener struct {
	net.Listener
	max   int
	grace time.Duration

	room      chan struct{} // a token when a stranger left the line; Accept waits on it
	done      chan struct{} // closed by Close
	closeOnce sync.Once

	mu        sync.Mutex // guards strangers and every Conn.elem
	strangers list.List  // *Conn not admitted and not closed, oldest first

	// Evicted counts connections closed to make room for newer ones.
	Evicted atomic.Int64
}

// Listen wraps ln so that at most max connections that no request admitted
// are open at once, each given grace to present its secret before a newer
// one may take its place.
func Listen(ln net.Listener, max int, grace time.Duration) *Listener {
	if max < 1 {
		max = 1
	}
	return &Listener{Listener: ln, max: max, grace: grace, room: make(chan struct{}, 1), done: make(chan struct{})}
}

// Accept accepts a connection as a stranger's. While max strangers are
// open it first waits for room: until one leaves the line or the oldest
// has been open for grace; that one is closed when the new connection
// arrives.
func (l *Listener) Accept() (net.Conn, error) {
	l.waitRoom()
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	conn := &Conn{Conn: c, l: l, since: time.Now()}
	var evict *Conn
	l.mu.Lock()
	conn.elem = l.strangers.PushBack(conn)
	if l.strangers.Len() > l.max {
		evict = l.strangers.Front().Value.(*Conn)
		l.removeLocked(evict)
	}
	l.mu.Unlock()
	if evict != nil {
		l.Evicted.Add(1)
		evict.Conn.Close()
	}
	return conn, nil
}

// waitRoom returns when fewer than max strangers are open, when the oldest
// has had its grace, or when the listener is closed (Accept then fails).
func (l *Listener) waitRoom() {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		l.mu.Lock()
		wait := time.Duration(0)
		if l.strangers.Len() >= l.max {
			wait = l.grace - time.Since(l.strangers.Front().Value.(*Conn).since)
		}
		l.mu.Unlock()
		if wait <= 0 {
			return
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-l.room:
		case <-timer.C:
		case <-l.done:
			return
		}
	}
}

// Close closes the listener; an Accept waiting for room returns its error.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Strangers is the number of open connections not admitted.
func (l *Listener) Strangers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.strangers.Len()
}

func (l *Listener) removeLocked(c *Conn) {
	if c.elem != nil {
		l.strangers.Remove(c.elem)
		c.elem = nil
		select {
		case l.room <- struct{}{}:
		default:
		}
	}
}

func (l *Listener) remove(c *Conn) {
	l.mu.Lock()
	l.removeLocked(c)
	l.mu.Unlock()
}

// Conn is a connection accepted by a Listener.
type Conn struct {
	net.Conn
	l        *Listener
	since    time.Time     // accepted at
	admitted atomic.Bool   // spares later requests the lock
	elem     *list.Element // in l.strangers; nil once admitted or closed
}

// Underlying returns the connection it wraps: the TCP connection, for
// those that set its options. (Not NetConn, which ConnContext follows
// through TLS to find this Conn.)
func (c *Conn) Underlying() net.Conn { return c.Conn }

// Close closes the connection and stops counting it.
func (c *Conn) Close() error {
	c.l.remove(c)
	return c.Conn.Close()
}

// ReadFrom lets an http.Server send a file with sendfile, as it does on a
// bare TCP connection.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(c.Conn, r)
}

// CloseWrite lets an http.Server that closes a connection after a response
// shut its sending side first, so that the peer reads the response
// before the connection resets.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

type connKey struct{}

// ConnContext is an http.Server's ConnContext: it lets Admit find the
// connection of a request, also under TLS (a *tls.Conn over a *Conn).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn()
	}
	if conn, ok := c.(*Conn); ok {
		return context.WithValue(ctx, connKey{}, conn)
	}
	return ctx
}

// Admit stops counting the connection of the request whose context is ctx
// as a stranger's. It does nothing for a connection no Listener accepted.
func Admit(ctx context.Context) {
	if conn, ok := ctx.Value(connKey{}).(*Conn); ok && !conn.admitted.Load() {
		conn.admitted.Store(true)
		conn.l.remove(conn)
	}
}
