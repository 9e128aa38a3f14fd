package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cookieName is the session cookie's name.
const cookieName = "trellis_session"

const (
	sessionLifetime = 12 * time.Hour
	maxSessions     = 1024 // past it the oldest session ends
)

// sessions are the signed-in browsers, by token.
type sessions struct {
	mu      sync.Mutex           // guards expires
	expires map[string]time.Time // token -> end
}

// start makes a new session and returns its token.
func (s *sessions) start(now time.Time) string {
	var b [32]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.expires) >= maxSessions {
		var oldest string
		for t, end := range s.expires {
			if oldest == "" || end.Before(s.expires[oldest]) {
				oldest = t
			}
		}
		delete(s.expires, oldest)
	}
	s.expires[token] = now.Add(sessionLifetime)
	return token
}

// valid reports whether token is a live session.
func (s *sessions) valid(token string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	end, ok := s.expires[token]
	if ok && now.After(end) {
		delete(s.expires, token)
		return false
	}
	return ok
}

func (s *sessions) end(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.expires, token)
}

func sameSecret(given, secret string) bool {
	return subtle.ConstantTimeCompare([]byte(given), []byte(secret)) == 1
}

// signedIn reports whether r carries a live session cookie or the secret.
// A wrong secret counts against r's address (limiter).
func (s *Server) signedIn(r *http.Request) bool {
	if token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		if sameSecret(token, s.secret) {
			return true
		}
		s.limit.failed(clientHost(r), s.now())
		return false
	}
	c, err := r.Cookie(cookieName)
	return err == nil && s.sessions.valid(c.Value, s.now())
}

// tooMany answers 429 when r's address sent too many wrong secrets, and
// reports whether it did.
func (s *Server) tooMany(w http.ResponseWriter, r *http.Request) bool {
	wait := s.limit.wait(clientHost(r), s.now())
	if wait == 0 {
		return false
	}
	secs := int((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	msg := fmt.Sprintf("Too many wrong secrets from %s: try again in %d s.", clientHost(r), secs)
	if r.URL.Path == "/login" {
		s.render(w, http.StatusTooManyRequests, "login", loginPage{Error: msg})
	} else {
		http.Error(w, msg, http.StatusTooManyRequests)
	}
	return true
}

// requireSignIn sends a browser without a session to the sign-in page,
// and answers anything else 401.
func (s *Server) requireSignIn(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); bearer && s.tooMany(w, r) {
			return
		}
		if s.signedIn(r) {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html") {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		http.Error(w, "sign in first: open /login with the manager's secret, or send it as Authorization: Bearer", http.StatusUnauthorized)
	})
}

// login shows the sign-in form (GET) or exchanges the secret for a
// session cookie (POST).
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.render(w, http.StatusOK, "login", loginPage{})
		return
	}
	if s.tooMany(w, r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if !sameSecret(r.PostFormValue("secret"), s.secret) {
		s.limit.failed(clientHost(r), s.now())
		s.render(w, http.StatusUnauthorized, "login", loginPage{Error: "Wrong secret: give the one in the manager's --secret-file."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.sessions.start(s.now()), Path: "/",
		MaxAge: int(sessionLifetime / time.Second), HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// logout ends the session (POST only: SameSite keeps other sites out).
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "sign out with POST", http.StatusMethodNotAllowed)
		return
	}
	if c, err := r.Cookie(cookieName); err == nil {
		s.sessions.end(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

type loginPage struct{ Error string }
