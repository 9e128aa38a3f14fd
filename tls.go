package trellis

import (
	"crypto/tls"
	"errors"

	"trellis/internal/certs"
)

// ClusterTLS is a configuration for WithTLS to reach the manager at addr
// (host:port, as given to Dial) that trusts the CA in caFile
// (the ca.pem that `trellis manager --tls auto` prints), or, given
// fingerprint instead ("sha256:" and hex, as the manager prints it), the
// CA of that fingerprint among the certificates the manager sends. Either
// way the manager's certificate must name addr's host and be valid now.
// Give one of the two.
func ClusterTLS(addr, caFile, fingerprint string) (*tls.Config, error) {
	if caFile == "" && fingerprint == "" {
		return nil, errNoTrust
	}
	return certs.Client(addr, caFile, fingerprint)
}

var errNoTrust = errors.New("trellis: ClusterTLS needs a CA file or a fingerprint: give the ca.pem or the fingerprint the manager printed")
