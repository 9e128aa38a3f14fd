package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"trellis"
	"trellis/internal/certs"
)

// serverTLS holds the manager's TLS flags.
type serverTLS struct{ cert, key, mode, dir string }

func (s *serverTLS) flags(f *pflag.FlagSet) {
	f.StringVar(&s.cert, "tls-cert", "", "serve TLS with this PEM certificate (and the chain after it); with --tls-key")
	f.StringVar(&s.key, "tls-key", "", "the PEM key of --tls-cert")
	f.StringVar(&s.mode, "tls", "", `"auto": make a cluster CA and a certificate in --tls-dir (kept and reused), and print what workers and clients need`)
	f.StringVar(&s.dir, "tls-dir", "", "where the cluster CA is kept, with --tls auto's certificate (default: STATE/tls with --state, else trellis-tls next to the secret file)")
}

// config is the manager's TLS configuration, nil for plain HTTP, and the
// cluster CA that signs workers' file servers' certificates (kept in the
// TLS directory, also with --tls-cert); with --tls auto it prints the CA
// file and its fingerprint to out.
func (s *serverTLS) config(out io.Writer, listen, secretFile, state string) (*tls.Config, *certs.Authority, error) {
	switch {
	case s.mode != "" && s.mode != "auto":
		return nil, nil, fmt.Errorf("--tls %q: the one mode is auto (or give --tls-cert and --tls-key)", s.mode)
	case s.mode == "auto" && (s.cert != "" || s.key != ""):
		return nil, nil, fmt.Errorf("--tls auto makes its own certificate: drop --tls-cert and --tls-key, or --tls auto")
	case (s.cert == "") != (s.key == ""):
		return nil, nil, fmt.Errorf("give --tls-cert and --tls-key together")
	case s.cert == "" && s.mode == "":
		return nil, nil, nil
	}
	dir := s.dir
	if dir == "" && state != "" {
		dir = filepath.Join(state, "tls")
	} else if dir == "" {
		dir = filepath.Join(filepath.Dir(secretFile), "trellis-tls")
	}
	if s.cert != "" {
		cfg, err := certs.Server(s.cert, s.key)
		if err != nil {
			return nil, nil, err
		}
		ca, err := certs.CA(dir)
		return cfg, ca, err
	}
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	if h, _, err := net.SplitHostPort(listen); err == nil && h != "" && !net.ParseIP(h).IsUnspecified() {
		hosts = append([]string{h}, hosts...)
	}
	if name, err := os.Hostname(); err == nil && name != "" {
		hosts = append(hosts, name)
	}
	f, err := certs.Auto(dir, dedupe(hosts))
	if err != nil {
		return nil, nil, err
	}
	fp, err := certs.Fingerprint(f.CA)
	if err != nil {
		return nil, nil, err
	}
	ca, err := certs.CA(dir)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(out, "trellis manager TLS: CA %s (give workers and clients --tls-ca %s, or --tls-fingerprint %s)\n", f.CA, f.CA, fp)
	cfg, err := certs.Server(f.Cert, f.Key)
	return cfg, ca, err
}

func dedupe(hosts []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, h := range hosts {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

// clientTLS holds the TLS flags of those who reach a manager.
type clientTLS struct{ ca, fingerprint string }

func (c *clientTLS) flags(f *pflag.FlagSet) {
	f.StringVar(&c.ca, "tls-ca", "", "reach the manager over TLS, trusting the CA in this PEM file (the manager prints it)")
	f.StringVar(&c.fingerprint, "tls-fingerprint", "", "reach the manager over TLS, trusting the CA of this SHA-256 fingerprint (the manager prints it)")
}

// config is the TLS configuration to reach the manager at addr, nil for
// plain.
func (c *clientTLS) config(addr string) (*tls.Config, error) {
	return certs.Client(addr, c.ca, c.fingerprint)
}

// dial connects a client to the manager at addr with secret, over TLS when
// the flags ask for it.
func (c *clientTLS) dial(ctx context.Context, addr, secret string, opts ...trellis.Option) (*trellis.Client, error) {
	cfg, err := c.config(addr)
	if err != nil {
		return nil, err
	}
	return trellis.Dial(ctx, addr, append([]trellis.Option{trellis.WithSecret(secret), trellis.WithTLS(cfg)}, opts...)...)
}

// args gives a worker started for this client (by the factory) the same
// trust in the manager.
func (c *clientTLS) args() []string {
	var out []string
	if c.ca != "" {
		if abs, err := filepath.Abs(c.ca); err == nil {
			out = append(out, "--tls-ca", abs)
		}
	}
	if c.fingerprint != "" {
		out = append(out, "--tls-fingerprint", c.fingerprint)
	}
	return out
}

// managerFlags are the flags of a command that talks to a running manager:
// its secret, and how to trust it over TLS.
type managerFlags struct {
	secretFile string
	tls        clientTLS
}

func (m *managerFlags) flags(f *pflag.FlagSet) {
	f.StringVar(&m.secretFile, "secret-file", "", "file holding the shared secret (required)")
	m.tls.flags(f)
}

// open connects a client to the manager at addr for a command that asks it
// one thing: the context bounds the whole command to 10 s; done releases
// both.
func (m *managerFlags) open(addr string) (context.Context, *trellis.Client, func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	c, err := m.dial(ctx, addr)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return ctx, c, func() { c.Close(); cancel() }, nil
}

// dial reads the secret and connects a client to the manager at addr.
func (m *managerFlags) dial(ctx context.Context, addr string) (*trellis.Client, error) {
	secret, err := readSecret(m.secretFile)
	if err != nil {
		return nil, err
	}
	return m.tls.dial(ctx, addr, secret)
}
