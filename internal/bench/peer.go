package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"trellis/internal/certs"
	"trellis/internal/worker/cache"
	"trellis/internal/worker/transfer"
)

// peerName is the cache name of the file a peer benchmark moves.
const peerName = "big"

// peerSource is one worker's cache holding a file of a given size, served
// as a worker's file server serves it (see transfer.NewServer).
type peerSource struct {
	entry  cache.Entry
	srv    *http.Server
	ln     net.Listener
	scheme string
	secret string
	from   *cache.Cache
}

// newPeerSource makes a file of mib MiB in a cache under dir and a file
// server for it listening on listen. With caDir, it speaks TLS with a
// certificate for host that the cluster CA kept in caDir signs (made
// there if missing), as a worker's file server does under a manager with
// TLS. Serve starts it.
func newPeerSource(ctx context.Context, dir string, mib int, listen, host, caDir string) (*peerSource, error) {
	src := filepath.Join(dir, "src.bin")
	if err := exec.CommandContext(ctx, "sh", "-c", fmt.Sprintf("yes transfer | head -c %d > %s", mib<<20, src)).Run(); err != nil {
		return nil, err
	}
	from, err := cache.Open(filepath.Join(dir, "a"), 0)
	if err != nil {
		return nil, err
	}
	e, err := from.Adopt(peerName, cache.LevelWorker, src)
	if err != nil {
		return nil, err
	}
	p := &peerSource{entry: e, scheme: "http", secret: "bench", from: from}
	p.srv = &http.Server{Handler: transfer.NewServer(from, p.secret, slog.New(slog.DiscardHandler)), ErrorLog: log.New(io.Discard, "", 0)}
	if caDir != "" {
		ca, err := certs.CA(caDir)
		if err != nil {
			return nil, err
		}
		certPEM, keyPEM, err := ca.IssuePEM(host)
		if err != nil {
			return nil, err
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, err
		}
		p.srv.TLSConfig = certs.FileServer(func() *tls.Certificate { return &pair })
		p.scheme = "https"
	}
	if p.ln, err = net.Listen("tcp", listen); err != nil {
		return nil, err
	}
	if p.srv.TLSConfig != nil {
		p.ln = tls.NewListener(p.ln, p.srv.TLSConfig)
	}
	return p, nil
}

// url is where a fetcher gets the file, token included, valid for ttl.
func (p *peerSource) url(host string, ttl time.Duration) string {
	_, port, _ := net.SplitHostPort(p.ln.Addr().String())
	return fmt.Sprintf("%s://%s/cache/%s?token=%s", p.scheme, net.JoinHostPort(host, port), peerName,
		url.QueryEscape(transfer.Token(p.secret, peerName, time.Now().Add(ttl))))
}

// serve serves until close.
func (p *peerSource) serve() {
	go p.srv.Serve(p.ln) // exits when close closes the server
}

func (p *peerSource) close() { p.srv.Close() }

// peerRun is one timed peer transfer.
type peerRun struct {
	MBPerS float64 // bytes moved over wall-clock seconds
	// CPUPerGB is the CPU time (user and system) this process spent per GB
	// moved: the fetching worker's, and the serving one's too when this
	// process serves. Unlike MBPerS it hardly moves when other processes
	// load the machine.
	CPUPerGB float64
}

// fetchPeer gets rawURL into a new cache under dir as a worker's fetcher
// does, checking size and digest, and times it. caFile, when set, is the
// cluster CA that the serving worker's certificate must verify with.
func fetchPeer(ctx context.Context, dir, rawURL string, size int64, digest, caFile string) (peerRun, error) {
	to, err := cache.Open(filepath.Join(dir, "b"), 0)
	if err != nil {
		return peerRun{}, err
	}
	f := &transfer.Fetcher{}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return peerRun{}, err
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return peerRun{}, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
		f.HTTP = &http.Client{Transport: &http.Transport{DialTLSContext: certs.DialPeer(func() *x509.CertPool { return roots })}}
	}
	start, cpu := time.Now(), selfCPU()
	if _, err := f.Fetch(ctx, to, peerName, cache.LevelWorker, rawURL, size, digest, false); err != nil {
		return peerRun{}, err
	}
	gb := float64(size) / 1e9
	return peerRun{MBPerS: gb * 1e3 / time.Since(start).Seconds(), CPUPerGB: (selfCPU() - cpu).Seconds() / gb}, nil
}

// PeerServe is one half of `trellis bench peer`, for runs across hosts: it
// serves a file of mib MiB on listen (host is the address fetchers use;
// over TLS with the CA in caDir when caDir is set), writes one line "URL
// SIZE DIGEST" to out, and serves until ctx ends.
func PeerServe(ctx context.Context, listen string, mib int, caDir string, out io.Writer) error {
	if mib < 1 {
		return errors.New("bench peer serve: --mib must be positive")
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil || host == "" {
		return fmt.Errorf("bench peer serve: --listen %q: want HOST:PORT with the address fetchers reach", listen)
	}
	dir, err := os.MkdirTemp("", "trellis-bench-peer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := newPeerSource(ctx, dir, mib, listen, host, caDir)
	if err != nil {
		return fmt.Errorf("bench peer serve: %w", err)
	}
	p.serve()
	defer p.close()
	fmt.Fprintf(out, "%s %d %s\n", p.url(host, 24*time.Hour), p.entry.Size, p.entry.Digest)
	<-ctx.Done()
	return nil
}

// PeerResult is the output of `trellis bench peer fetch`.
type PeerResult struct {
	Bench  string  `json:"bench"`
	TLS    bool    `json:"tls"`
	Bytes  int64   `json:"bytes"`
	MBPerS float64 `json:"peer_mb_per_s"`
	// CPUPerGB is the fetching process's CPU seconds per GB moved.
	CPUPerGB float64 `json:"cpu_s_per_gb"`
	LinkRate string  `json:"link_rate,omitempty"`
}

// PeerFetch is the other half: it fetches what PeerServe printed into a
// new worker cache, as a worker does, and reports the rate.
func PeerFetch(ctx context.Context, rawURL string, size int64, digest, caFile, linkRate string) (*PeerResult, error) {
	dir, err := os.MkdirTemp("", "trellis-bench-peer-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	run, err := fetchPeer(ctx, dir, rawURL, size, digest, caFile)
	if err != nil {
		return nil, fmt.Errorf("bench peer fetch: %w", err)
	}
	return &PeerResult{Bench: "peer", TLS: caFile != "", Bytes: size, MBPerS: run.MBPerS, CPUPerGB: run.CPUPerGB, LinkRate: linkRate}, nil
}
