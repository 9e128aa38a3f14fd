package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// After five wrong secrets in a minute an address is refused for a
// minute, the right secret too, by form or bearer; another address is
// not; after the minute the right secret opens again.
func TestSignInRateLimit(t *testing.T) {
	s := New(&fake{}, "s3cret")
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	post := func(addr, secret string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"secret": {secret}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w
	}
	bearer := func(addr, secret string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/tasks", nil)
		r.Header.Set("Authorization", "Bearer "+secret)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w
	}
	const a, b = "10.0.0.1:5000", "10.0.0.2:5000"
	for i := 1; i <= 4; i++ {
		if w := post(a, "wrong"); w.Code != http.StatusUnauthorized {
			t.Fatalf("wrong secret %d: HTTP %d, want 401", i, w.Code)
		}
	}
	if w := bearer(a, "wrong"); w.Code != http.StatusUnauthorized { // the fifth, by bearer
		t.Fatalf("wrong bearer secret: HTTP %d, want 401", w.Code)
	}
	now = now.Add(10 * time.Second)
	for _, w := range []*httptest.ResponseRecorder{post(a, "s3cret"), bearer(a, "s3cret")} {
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "50" ||
			!strings.Contains(w.Body.String(), "Too many wrong secrets from 10.0.0.1: try again in 50 s.") {
			t.Errorf("the right secret while refused: HTTP %d, Retry-After %q, body %q; want 429, 50 and the reason",
				w.Code, w.Header().Get("Retry-After"), w.Body.String())
		}
	}
	if w := post(b, "s3cret"); w.Code != http.StatusSeeOther {
		t.Errorf("another address, right secret: HTTP %d, want 303", w.Code)
	}
	now = now.Add(50 * time.Second)
	if w := post(a, "s3cret"); w.Code != http.StatusSeeOther {
		t.Errorf("after the lockout, right secret: HTTP %d, want 303", w.Code)
	}
	// Wrong secrets spread wider than the window never lock out.
	for i := 0; i < 10; i++ {
		now = now.Add(61 * time.Second)
		if w := post(b, "wrong"); w.Code != http.StatusUnauthorized {
			t.Fatalf("a wrong secret a minute apart (%d): HTTP %d, want 401", i, w.Code)
		}
	}
}

// The limiter remembers at most maxLimited addresses.
func TestLimiterBounded(t *testing.T) {
	l := newLimiter()
	now := time.Unix(0, 0)
	for i := 0; i < maxLimited+10; i++ {
		l.failed(string(rune(i+1)), now.Add(time.Duration(i)))
	}
	if len(l.addrs) != maxLimited {
		t.Errorf("limiter holds %d addresses, want %d", len(l.addrs), maxLimited)
	}
	if l.addrs[string(rune(1))] != nil {
		t.Errorf("limiter kept the oldest address")
	}
}
