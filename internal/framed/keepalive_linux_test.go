package framed

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type tlsLike struct{ net.Conn }

func (w tlsLike) NetConn() net.Conn { return w.Conn }

type gateLike struct{ net.Conn }

func (w gateLike) Underlying() net.Conn { return w.Conn }

// keepAlive finds the TCP connection under a TLS connection (NetConn) and
// the manager's gate (Underlying) and sets its keepalives.
func TestKeepAliveThroughWrappers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	keepAlive(tlsLike{gateLike{c}}, 40*time.Second)
	raw, _ := c.(*net.TCPConn).SyscallConn()
	var on, idle, intvl, count int
	raw.Control(func(fd uintptr) {
		on, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		idle, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		intvl, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		count, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
	})
	if on == 0 || idle != 40 || intvl != 4 || count != 2 {
		t.Errorf("keepalive %d, idle %d s, interval %d s, count %d; want on, 40, 4, 2", on, idle, intvl, count)
	}
}
