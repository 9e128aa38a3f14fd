package proto

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Peer tokens let a worker fetch one file from another worker's cache for
// a while: the manager issues them, the serving worker checks them with the
// shared secret, without asking the manager.

// Token errors.
var (
	ErrBadToken     = errors.New("proto: bad peer token")
	ErrExpiredToken = errors.New("proto: expired peer token")
)

// PeerToken grants GET access to the cache name until expiry:
// "EXPIRYUNIX.HEX", HEX = HMAC-SHA256(secret, name+"|"+EXPIRYUNIX).
func PeerToken(secret, name string, expiry time.Time) string {
	exp := strconv.FormatInt(expiry.Unix(), 10)
	return exp + "." + tokenMAC(secret, name, exp)
}

// CheckPeerToken checks a token for name at time now.
func CheckPeerToken(secret, name, token string, now time.Time) error {
	exp, mac, ok := strings.Cut(token, ".")
	if !ok {
		return ErrBadToken
	}
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return ErrBadToken
	}
	if !hmac.Equal([]byte(mac), []byte(tokenMAC(secret, name, exp))) {
		return ErrBadToken
	}
	if now.Unix() > unix {
		return ErrExpiredToken
	}
	return nil
}

func tokenMAC(secret, name, exp string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(name + "|" + exp))
	return hex.EncodeToString(m.Sum(nil))
}
