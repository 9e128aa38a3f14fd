package e2e

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// proxy is a TCP proxy to the manager that a test breaks as a network
// would: cut loses what the manager sends for a while (written, as far as
// the manager can tell, but never delivered), then closes the connections;
// shut closes them and refuses new ones until open.
type proxy struct {
	ln     net.Listener
	mu     sync.Mutex // guards conns, lossy, closed
	conns  []net.Conn
	lossy  bool // drop what the manager sends
	closed bool // refuse new connections
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); p.shut(); wg.Wait() })
	wg.Add(1)
	go func() { // exits when the listener closes at cleanup
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			if p.closed {
				p.mu.Unlock()
				in.Close()
				out.Close()
				continue
			}
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(out, in); out.Close() }()    // exits when either side closes
			go func() { defer wg.Done(); p.copyLossy(in, out); in.Close() }() // exits when either side closes
		}
	}()
	return p
}

// copyLossy copies from the manager to the client, dropping what comes
// while the proxy is lossy.
func (p *proxy) copyLossy(to io.Writer, from io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		p.mu.Lock()
		lossy := p.lossy
		p.mu.Unlock()
		if n > 0 && !lossy {
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cut drops what the manager sends for d, then closes every connection
// open through the proxy.
func (p *proxy) cut(d time.Duration) {
	p.mu.Lock()
	p.lossy = true
	p.mu.Unlock()
	time.Sleep(d) // the outage: the manager goes on sending into it
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeConns()
	p.lossy = false
}

// shut closes every connection, and refuses new ones until open.
func (p *proxy) shut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.closeConns()
}

// open lets connections through again.
func (p *proxy) open() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = false
}

func (p *proxy) closeConns() {
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
