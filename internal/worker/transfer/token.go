package transfer

import (
	"time"

	"trellis/internal/proto"
)

// The token format belongs to the protocol (the manager issues tokens,
// workers check them); these names keep the package's own vocabulary.

// Errors of CheckToken.
var (
	ErrBadToken     = proto.ErrBadToken
	ErrExpiredToken = proto.ErrExpiredToken
)

// Token grants GET access to the cache entry name until expiry.
func Token(secret, name string, expiry time.Time) string {
	return proto.PeerToken(secret, name, expiry)
}

// CheckToken checks that token grants access to name at now.
func CheckToken(secret, name, token string, now time.Time) error {
	return proto.CheckPeerToken(secret, name, token, now)
}
