package web

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Wrong secrets are limited per client address: after maxFailures in a
// window of failureWindow, that address is refused (429) for lockout,
// whatever it sends, so that the secret cannot be guessed at the speed of
// the network. Each address's record ends with its window; at most
// maxLimited addresses are remembered (past it, the oldest is forgotten).
const (
	maxFailures   = 5
	failureWindow = time.Minute
	lockout       = time.Minute
	maxLimited    = 4096
)

// limiter counts wrong secrets by client address.
type limiter struct {
	mu    sync.Mutex           // guards addrs
	addrs map[string]*failures // client host -> its failures
}

type failures struct {
	since   time.Time // the window's start
	n       int       // wrong secrets in it
	blocked time.Time // refused until then
}

func newLimiter() *limiter { return &limiter{addrs: make(map[string]*failures)} }

// clientHost is the host part of r's remote address.
func clientHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// wait says how long host must wait before its secret is checked again;
// 0 when it need not.
func (l *limiter) wait(host string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.addrs[host]
	if f == nil || !now.Before(f.blocked) {
		return 0
	}
	return f.blocked.Sub(now)
}

// failed counts a wrong secret from host.
func (l *limiter) failed(host string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.addrs[host]
	if f == nil || now.Sub(f.since) > failureWindow && !now.Before(f.blocked) {
		if f == nil && len(l.addrs) >= maxLimited {
			l.forgetOldestLocked()
		}
		f = &failures{since: now}
		l.addrs[host] = f
	}
	f.n++
	if f.n >= maxFailures {
		f.blocked = now.Add(lockout)
		f.since, f.n = f.blocked, 0 // a new window once the lockout ends
	}
}

// forgetOldestLocked drops the address whose window started first.
func (l *limiter) forgetOldestLocked() {
	var oldest string
	for host, f := range l.addrs {
		if oldest == "" || f.since.Before(l.addrs[oldest].since) {
			oldest = host
		}
	}
	delete(l.addrs, oldest)
}
