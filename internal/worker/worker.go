package worker

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/certs"
	"trellis/internal/gate"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/proto/trellisv1/trellisv1connect"
	"trellis/internal/worker/cache"
	"trellis/internal/worker/resources"
	"trellis/internal/worker/sandbox"
	"trellis/internal/worker/transfer"
)

// Config configures a worker.
type Config struct {
	Manager      string // host:port of the manager
	Secret       string
	Name         string              // shown in status; default: host name and pid
	Resources    resources.Resources // what to offer (already detected and capped)
	Workdir      string              // cache and sandboxes go here; "" makes a temporary directory
	FileServer   string              // where to serve the cache to peers, host:port; "" means any port on the address that reaches Manager
	StallTimeout time.Duration       // a transfer that receives nothing for this long fails; 0 means 30s
	DrainTimeout time.Duration       // how long Drain lets running attempts finish; 0 means 1 minute
	IdleTimeout  time.Duration       // give up after this long without a manager; 0 means 15 minutes
	// WelcomeTimeout is how long a hello waits for the manager's welcome
	// before the worker tries again; 0 means 30 s (the manager waits 10 s
	// for a hello and 10 s for its loop to take it, and answers either way).
	WelcomeTimeout time.Duration
	// IdleExit drains the worker once it has run nothing (no attempt, no
	// library instance) for this long, connected: a worker factory's
	// workers retire so. 0 never.
	IdleExit time.Duration
	Logger   *slog.Logger
	Version  string
	// Connect, when set, opens the stream to a manager in this process
	// (manager.ConnectWorker) instead of dialling Manager over HTTP/2.
	// Files still move over HTTP, to and from Manager.
	Connect func(context.Context) Stream
	// TLS, when set, reaches the manager over TLS with it (docs/tls.md):
	// a manager whose certificate does not verify refuses the worker.
	TLS *tls.Config
	// Transport is how the Work stream is held: TransportHTTP2 (or ""),
	// TransportFramed (on a connection of its own, package framed, an
	// HTTP/1.1 Upgrade: less CPU per message on both ends), or
	// TransportAuto (framed, and HTTP/2 from then on if the manager does
	// not serve it: an older version). Files, and the manager's other
	// calls, go over HTTP either way.
	Transport string
	// Simulate, when set, makes this a simulated worker that runs nothing
	// (a measuring tool; see Simulation).
	Simulate *Simulation
	// Guard is the command that runs the guard process, which kills what
	// the worker started when the worker dies (sandbox.ServeGuard); nil
	// runs none.
	Guard []string
	// aheadHold, when set, replaces the const aheadHold (tests).
	aheadHold time.Duration
}

// The transports of Config.Transport.
const (
	TransportHTTP2  = "http2"
	TransportFramed = "framed"
	TransportAuto   = "auto"
)

// ErrRefused is returned by Run when the manager refuses the worker for
// good (wrong secret, other protocol): retrying would not help.
var ErrRefused = errors.New("worker: refused by the manager")

// Worker is one worker process's state. Create it with New.
type Worker struct {
	cfg     Config
	log     *slog.Logger
	rpc     trellisv1connect.ManagerClient
	h2      *http.Client
	files   *http.Client
	base    string // http://manager
	cache   *cache.Cache
	fetcher *transfer.Fetcher
	peers   *transfer.Fetcher // from peers over TLS (peertls.go); nil: fetcher
	peerTLS                   // the file server's certificate and the cluster CA, from the manager
	server  *http.Server      // serves the cache to peers
	// stopping ends with the file server (cleanup): the framed Calls
	// streams it handed over end with it.
	stopping    context.Context
	stopServing context.CancelFunc
	ln          net.Listener
	boxes       boxes // the sandboxes of attempts
	warden      *sandbox.Warden
	libs        libraries
	leases      leaseTable // for direct calls (direct.go)
	drainc      chan struct{}
	once        sync.Once
	// incarnation names this worker process to managers, the same on
	// every connection; kept holds the attempts of broken connections.
	incarnation string
	kept        *kept
	runners     *runners // the goroutines of attempts (runners.go)
	// framedRefused: the manager answered that it has no framed
	// transport (TransportAuto then holds the stream over HTTP/2).
	framedRefused atomic.Bool
}

// New prepares a worker; Run connects it.
func New(cfg Config) (*Worker, error) {
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = time.Minute
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 15 * time.Minute
	}
	if cfg.WelcomeTimeout <= 0 {
		cfg.WelcomeTimeout = 30 * time.Second
	}
	if cfg.Name == "" {
		host, _ := os.Hostname()
		cfg.Name = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Workdir == "" {
		dir, err := os.MkdirTemp("", "trellis-worker-")
		if err != nil {
			return nil, fmt.Errorf("worker: create workdir: %w", err)
		}
		cfg.Workdir = dir
	}
	var inc [12]byte
	crand.Read(inc[:])
	w := &Worker{cfg: cfg, log: log, base: "http://" + cfg.Manager, drainc: make(chan struct{}),
		incarnation: hex.EncodeToString(inc[:]), kept: newKept(), runners: newRunners(),
		boxes: boxes{dir: filepath.Join(cfg.Workdir, "sandboxes")}, libs: libraries{byID: make(map[uint64]*libInstance)}}
	w.stopping, w.stopServing = context.WithCancel(context.Background())
	var err error
	if w.cache, err = cache.Open(cacheDir(cfg.Workdir), cfg.Resources.DiskMB<<20); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(w.boxes.dir, 0o755); err != nil {
		return nil, fmt.Errorf("worker: create sandboxes dir: %w", err)
	}
	protocols := new(http.Protocols)
	if cfg.TLS != nil {
		w.base = "https://" + cfg.Manager
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	h2 := &http.Client{Transport: proto.WholeEnvelopes(&http.Transport{ // a report in one DATA frame, not two
		Protocols:       protocols,
		TLSClientConfig: cfg.TLS.Clone(), // its own: HTTP/2 adds "h2" to NextProtos
		DialContext:     (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		HTTP2:           &http.HTTP2Config{SendPingTimeout: proto.PingIdle, PingTimeout: proto.PingTimeout},
	})}
	w.h2 = h2
	w.rpc = trellisv1connect.NewManagerClient(h2, w.base,
		connect.WithReadMaxBytes(proto.MaxMessageBytes), connect.WithSendMaxBytes(proto.MaxMessageBytes), connect.WithCompressMinBytes(proto.CompressMinBytes))
	w.files = &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 16,
		TLSClientConfig:     &tls.Config{},
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
	}}
	if cfg.TLS != nil {
		w.files.Transport.(*http.Transport).DialTLSContext = w.dialFilesTLS
	}
	w.fetcher = &transfer.Fetcher{HTTP: w.files, Manager: w.base, ManagerSecret: cfg.Secret, StallTimeout: cfg.StallTimeout, MaxBytes: cfg.Resources.DiskMB << 20}
	if cfg.Simulate != nil {
		return w, nil // no file server: it holds nothing to serve
	}
	addr := cfg.FileServer
	if addr == "" {
		addr = towardManager(cfg.Manager)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("worker: serve the cache on %s: %w", addr, err)
	}
	// Peers without a valid token cost headers, never bodies: at most 256
	// such connections, the oldest closed first once it had 2 s to show one.
	w.ln = gate.Listen(ln, 256, 2*time.Second)
	// HTTP/1.1 for peers' fetches; HTTP/2 (h2c without TLS) for direct calls.
	serve := new(http.Protocols)
	serve.SetHTTP1(true)
	serve.SetHTTP2(true)
	serve.SetUnencryptedHTTP2(true)
	w.server = &http.Server{Handler: w.withDirect(transfer.NewServer(w.cache, cfg.Secret, log)), ConnContext: gate.ConnContext, Protocols: serve,
		ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10, IdleTimeout: 2 * time.Minute}
	if cfg.TLS != nil {
		w.usePeerTLS()
	}
	return w, nil
}

// towardManager is any port on the address this machine reaches manager
// from: peers reach the cache on the network the manager is on, and no
// other. Every address when no route is found.
func towardManager(manager string) string {
	c, err := net.Dial("udp", manager) // sends nothing: finds the route
	if err != nil {
		return ":0"
	}
	defer c.Close()
	host, _, _ := net.SplitHostPort(c.LocalAddr().String())
	return net.JoinHostPort(host, "0")
}

// Drain asks the worker to stop taking work and finish what it runs; Run
// returns when that is done. Calling it again does nothing.
func (w *Worker) Drain() { w.once.Do(func() { close(w.drainc) }) }

// Run connects to the manager and serves until the worker is drained, ctx
// ends, the manager refuses it, or no manager is reachable for IdleTimeout.
// It removes the worker's cache and sandboxes before returning.
func (w *Worker) Run(ctx context.Context) error {
	defer w.runners.close() // last: every attempt has ended
	if w.cfg.Simulate != nil {
		defer w.cleanup()
		return w.connect(ctx)
	}
	warden, err := sandbox.NewWarden(sandbox.WardenConfig{Guard: w.cfg.Guard, Logger: w.log, Dir: w.boxes.dir})
	if err != nil {
		w.ln.Close()
		return fmt.Errorf("worker: %w", err)
	}
	w.warden = warden
	w.boxes.reuse = warden.Contained()
	cpu, procs := warden.Enforcement()
	w.log.Info("enforcement", "cpu", cpu, "memory", warden.MemoryEnforcement(), "processes", procs)
	served := make(chan struct{})
	go func() { // exits when cleanup closes the server
		defer close(served)
		if w.peers != nil { // usePeerTLS
			w.server.ServeTLS(w.ln, "", "")
		} else {
			w.server.Serve(w.ln)
		}
	}()
	defer func() {
		w.kept.stop() // attempts kept for a manager that did not come back
		w.libs.stop() // library instances, kept or not
		w.cleanup()
		<-served
	}()
	return w.connect(ctx)
}

// connect holds sessions with the manager, one after the other, until the
// worker is drained, ctx ends, the manager refuses it, or no manager is
// reachable for IdleTimeout.
func (w *Worker) connect(ctx context.Context) error {
	backoff := 200 * time.Millisecond
	lastContact := time.Now()
	for {
		connected, err := w.session(ctx)
		if connected {
			lastContact = time.Now()
			backoff = 200 * time.Millisecond
		}
		switch {
		case err == nil:
			return nil // drained
		case errors.Is(err, ErrRefused):
			return err
		case errors.Is(certs.Explain(err, w.cfg.Manager), certs.ErrUntrusted):
			return fmt.Errorf("%w: %w", ErrRefused, certs.Explain(err, w.cfg.Manager))
		case ctx.Err() != nil:
			return nil
		}
		if time.Since(lastContact) > w.cfg.IdleTimeout {
			return fmt.Errorf("worker: no manager at %s for %s: %w", w.cfg.Manager, w.cfg.IdleTimeout, err)
		}
		wait := jitter(backoff)
		w.log.Warn("manager connection", "manager", w.cfg.Manager, "err", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		case <-w.drainc:
			return nil
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// jitter spreads a backoff over [d/2, 3d/2), so that workers that lost
// the manager together do not all come back in the same instant.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d)
}

func (w *Worker) cleanup() {
	if w.server != nil {
		w.server.Close()
	}
	w.stopServing()
	w.files.CloseIdleConnections()
	if w.peers != nil {
		w.peers.HTTP.CloseIdleConnections()
	}
	w.h2.CloseIdleConnections()
	if w.warden != nil {
		if err := w.warden.Close(); err != nil {
			w.log.Warn("cleanup", "err", err)
		}
	}
	w.boxes.close()
	os.RemoveAll(w.boxes.dir)
	w.cache.RemoveBelow(cache.LevelForever) // forever-level files outlive the worker
}

func (w *Worker) authorize(h http.Header) { h.Set("Authorization", "Bearer "+w.cfg.Secret) }

func (w *Worker) hello() *pb.Hello {
	r := w.cfg.Resources
	h := &pb.Hello{Protocol: proto.Protocol, Name: w.cfg.Name, Version: w.cfg.Version, HoldsAhead: true,
		Resources: &pb.Resources{Cores: float64(r.MilliCores) / 1000, MemoryMb: r.MemoryMB, DiskMb: r.DiskMB, Gpus: int64(len(r.GPUs))}}
	for _, g := range r.GPUs {
		h.Gpus = append(h.Gpus, int32(g.Index))
	}
	if w.cfg.Simulate != nil {
		h.Simulated = true
		return h // no file server
	}
	_, port, _ := net.SplitHostPort(w.ln.Addr().String())
	h.FileServer = ":" + port
	if host, _, err := net.SplitHostPort(w.cfg.FileServer); err == nil && host != "" && host != "0.0.0.0" && host != "::" {
		h.FileServer = net.JoinHostPort(host, port)
	}
	h.Cache = w.cachedFiles()
	h.Incarnation = w.incarnation
	h.RunId, h.Running = w.kept.list()
	if run, insts := w.libs.list(); len(insts) > 0 && (h.RunId == "" || h.RunId == run) {
		h.RunId, h.Instances = run, insts
	}
	return h
}
