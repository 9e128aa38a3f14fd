package proto

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Peer tokens let a worker fetch one file from another worker's cache for
// a while: the manager issues them, the serving worker checks them with the
// shared secret, without asking the manager.

// Errors of CheckPeerToken.
var (
	// ErrBadToken is wrapped when a token is missing, malformed, or not
	// made with the secret for the name.
	ErrBadToken = errors.New("proto: bad peer token")
	// ErrExpiredToken is wrapped when a token was good until a time that
	// has passed.
	ErrExpiredToken = errors.New("proto: peer token expired")
)

// maxTokenBytes bounds a token: 20 digits, a dot and 64 hex digits, with
// room to spare.
const maxTokenBytes = 128

// PeerToken grants GET access to the cache entry name until expiry. It reads
// "EXPIRYUNIX.HEX", HEX being the hex HMAC-SHA256 under secret of
// name+"|"+EXPIRYUNIX.
func PeerToken(secret, name string, expiry time.Time) string {
	exp := strconv.FormatInt(expiry.Unix(), 10)
	return exp + "." + hex.EncodeToString(tokenMAC(secret, name, exp))
}

func tokenMAC(secret, name, exp string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(name + "|" + exp))
	return m.Sum(nil)
}

// CheckPeerToken checks that token grants access to name at now. It refuses
// every token when secret is empty. The signature is compared in constant
// time, and before the expiry, so a forged token is always ErrBadToken.
func CheckPeerToken(secret, name, token string, now time.Time) error {
	bad := func(why string) error { return fmt.Errorf("token for %s: %s: %w", name, why, ErrBadToken) }
	switch {
	case secret == "":
		return bad("no secret to check it with")
	case token == "":
		return bad("missing")
	case len(token) > maxTokenBytes:
		return bad("too long")
	}
	exp, sig, ok := strings.Cut(token, ".")
	if !ok {
		return bad("malformed")
	}
	expiry, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || strconv.FormatInt(expiry, 10) != exp {
		return bad("malformed expiry")
	}
	if _, err := hex.DecodeString(sig); err != nil || len(sig) != 2*sha256.Size {
		return bad("malformed signature")
	}
	// Compared as text, so that only Token's spelling (lower-case hex) is
	// accepted.
	if !hmac.Equal([]byte(sig), []byte(hex.EncodeToString(tokenMAC(secret, name, exp)))) {
		return bad("wrong signature")
	}
	if !now.Before(time.Unix(expiry, 0)) {
		return fmt.Errorf("token for %s: expired at %s: %w", name, time.Unix(expiry, 0).UTC().Format(time.RFC3339), ErrExpiredToken)
	}
	return nil
}

// Lease tokens let a client send calls straight to a worker on a lease
// (docs/direct-calls.md): the manager issues them with the key it gave the
// worker in its Welcome, and the worker checks them with that key.

// LeaseToken is the token of lease on worker: the hex HMAC-SHA256 under
// key of "lease|LEASE|WORKER".
func LeaseToken(key []byte, lease, worker uint64) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "lease|%d|%d", lease, worker)
	return hex.EncodeToString(m.Sum(nil))
}

// CheckLeaseToken reports whether token is that of lease on worker under
// key, compared in constant time. It refuses every token with an empty key.
func CheckLeaseToken(key []byte, lease, worker uint64, token string) bool {
	return len(key) > 0 && len(token) <= maxTokenBytes && hmac.Equal([]byte(token), []byte(LeaseToken(key, lease, worker)))
}
