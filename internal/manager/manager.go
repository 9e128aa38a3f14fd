package manager

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"trellis/internal/certs"
	"trellis/internal/core"
	"trellis/internal/gate"
	"trellis/internal/journal"
	"trellis/internal/manager/clients"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/txnlog"
)

// DefaultHeartbeat is Config.Heartbeat's default: how often a worker with
// nothing else to say tells the manager it lives. A worker silent for three
// intervals is lost. A worker whose host, process or link dies is lost
// sooner, in about 55 s, by the connection's HTTP/2 pings (proto.PingIdle
// and proto.PingTimeout); the heartbeat catches a worker whose process
// answers pings but whose session has stopped. Each heartbeat costs the
// manager about 30 µs of CPU (docs/benchmarks.md, capacity): at 5 s that
// was 6 µs per worker per second, more than the rest of an idle worker.
const DefaultHeartbeat = 30 * time.Second

// Config configures a manager.
type Config struct {
	Listen    string        // host:port; port 0 picks a free one
	Secret    string        // shared secret that clients and workers must present
	StoreDir  string        // where files live; "" makes a temporary directory, removed on exit
	Heartbeat time.Duration // how often workers send heartbeats; 0 means DefaultHeartbeat
	Logger    *slog.Logger  // nil logs nothing
	Version   string

	// ClientGrace is how long a client session keeps its tasks once its
	// client is away (its last Watch stream closed without EndSession);
	// then they are cancelled and the session ends. 0 means 60s.
	ClientGrace time.Duration
	// UnplaceableTimeout fails a task that waits this long while no
	// connected worker could run it, unless the task sets its own; 0 waits
	// for ever.
	UnplaceableTimeout time.Duration
	// Placement is the core's placement policy: core.PlaceGraph (the
	// zero value) or core.PlaceFree, the policy before #11, to compare
	// the bytes both move on one cluster.
	Placement core.Placement
	// NoPrefetch turns off the core's prefetch of a consumer's inputs
	// while its last producers run (core.SetPrefetch), to compare.
	NoPrefetch bool
	// Ahead is how many tasks each worker may hold beyond its free
	// resources while no worker has room (core.SetAhead): they start there
	// as soon as a task ends, and the messages of many tasks travel
	// together. 0 holds none; trellis manager's --ahead gives 1 unless
	// told otherwise.
	Ahead int
	// StateDir, when set, holds the journal (and the store, unless
	// StoreDir says otherwise): a manager started again with the same
	// one recovers its clients' sessions, tasks and libraries.
	StateDir string
	// LeaseTTL is how long a direct-call lease lasts without a call ending
	// on it; 0 means DefaultLeaseTTL.
	LeaseTTL time.Duration

	// AdoptWindow, with StateDir, is how long a restarted manager waits
	// for a worker to come back with an attempt the journal says it was
	// sent before the task runs elsewhere; 0 means DefaultAdoptWindow.
	AdoptWindow time.Duration
	// SnapshotRecords, with StateDir, is how many records after the last
	// snapshot make the journal due for compaction (at least as many as
	// the snapshot holds); 0 means the journal's default (20,000).
	SnapshotRecords int
	// CommitInterval, with StateDir, is the least time between the starts
	// of two journal commits (journal.Options.CommitInterval): 0 means
	// journal.DefaultCommitInterval, a negative value none.
	CommitInterval time.Duration
	// JournalWrap, with StateDir, wraps the journal's store: tests inject
	// faults with it (journaltest.Faulty).
	JournalWrap func(journal.Store) journal.Store
	// IndexSize is how many of the newest tasks the dashboard's task index
	// keeps (Manager.Task); 0 means DefaultIndexSize.
	IndexSize int
	// TxnLog is a file to append a transaction log to (package txnlog);
	// "" keeps none.
	TxnLog string
	// TLS, when set, makes the port speak TLS only (HTTP/2 by ALPN, or
	// HTTP/1.1); nil serves plain HTTP/1.1 and h2c (docs/tls.md).
	TLS *tls.Config
	// PeerCA, with TLS, signs a certificate for each worker's file server,
	// handed over in its Welcome; peers then fetch over https, verifying
	// it. nil leaves peer transfers plain.
	PeerCA *certs.Authority
	// PeerCertLife is how long those certificates last; 0 means
	// certs.PeerLife. A worker gets a new one when half of it has passed.
	PeerCertLife time.Duration
	// CheckpointDir, when set, holds checkpointed outputs (Keep
	// checkpoint, and the copies the commit barrier makes), written by the
	// manager, synced, so that they survive the loss of every worker; a
	// directory on a shared file system survives the manager's machine too.
	// "" refuses Keep checkpoint and puts the barrier's copies in the store.
	CheckpointDir string
}

// DefaultClientGrace is how long a session outlives its client's absence
// unless Config.ClientGrace says otherwise.
const DefaultClientGrace = 60 * time.Second

// Manager serves clients and workers. Create it with Listen, then Run it.
type Manager struct {
	cfg      Config
	log      *slog.Logger
	ln       net.Listener
	srv      *http.Server
	store    *store
	ownStore bool
	events   chan any       // to loop
	stopping chan struct{}  // closed when Run's context ends
	state    *state         // owned by loop
	clients  *clients.Table // client sessions: events for Watch, task keys
	runID    string         // new at each start, or kept in StateDir: clients see a restart by it
	epoch    uint64         // starts with this StateDir (1 without one)
	journal  *journal.Journal
	refused  refusals  // strangers refused, for the log
	live     *liveness // every session, swept for silent workers
	mux      *http.ServeMux
	index    *taskIndex     // written by loop, read by anyone (index.go)
	txn      *txnlog.Writer // nil without Config.TxnLog; loop's
	factory  factories      // what factories report of themselves (factories.go)
	ckpt     *checkpointer  // pulls checkpoints (checkpoint.go)

	// The published snapshot (see snapshot.go): written by loop, read by
	// anyone without a lock.
	snap      atomic.Pointer[Snapshot]
	steps     atomic.Uint64                 // steps loop has taken
	published atomic.Pointer[chan struct{}] // closed when the next snapshot is published
	refresh   chan struct{}                 // a reader wants a fresh snapshot; one slot
}

// Listen binds the manager's port and prepares its store.
func Listen(cfg Config) (*Manager, error) {
	if cfg.Secret == "" {
		return nil, errors.New("manager: a secret is required")
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.ClientGrace <= 0 {
		cfg.ClientGrace = DefaultClientGrace
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.AdoptWindow <= 0 {
		cfg.AdoptWindow = DefaultAdoptWindow
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.StateDir != "" && cfg.StoreDir == "" {
		cfg.StoreDir = filepath.Join(cfg.StateDir, "store")
	}
	own := cfg.StoreDir == ""
	if own {
		dir, err := os.MkdirTemp("", "trellis-manager-")
		if err != nil {
			return nil, fmt.Errorf("manager: create store: %w", err)
		}
		cfg.StoreDir = dir
	}
	st, err := openStore(filepath.Clean(cfg.StoreDir))
	if err != nil {
		return nil, err
	}
	if cfg.CheckpointDir != "" {
		if err := checkCheckpointDir(cfg.CheckpointDir); err != nil {
			return nil, err
		}
		st.ckpt = cfg.CheckpointDir
	}
	var txn *txnlog.Writer
	if cfg.TxnLog != "" {
		if txn, err = txnlog.Create(cfg.TxnLog); err != nil {
			return nil, fmt.Errorf("manager: transaction log: %w", err)
		}
	}
	m := &Manager{cfg: cfg, log: log, store: st, ownStore: own, events: make(chan any, 1024), stopping: make(chan struct{}), epoch: 1}
	var peerCA []byte
	if cfg.PeerCA != nil {
		peerCA = cfg.PeerCA.PEM()
	}
	m.ckpt = newCheckpointer(m.checkpointDir(), peerCA)
	m.clients = clients.NewTable()
	m.live = newLiveness()
	m.index = newTaskIndex(cfg.IndexSize)
	m.txn = txn
	var run [8]byte
	rand.Read(run[:])
	m.runID = hex.EncodeToString(run[:])
	m.state = newState(m)
	if cfg.StateDir != "" {
		if m.journal, m.runID, err = openState(cfg.StateDir, journal.Options{SnapshotRecords: cfg.SnapshotRecords, CommitInterval: cfg.CommitInterval, Wrap: cfg.JournalWrap}); err != nil {
			return nil, err
		}
		base, err := nextLife(cfg.StateDir)
		if err != nil {
			m.journal.Close()
			return nil, err
		}
		m.state.core.SetInstanceBase(base)
		if err := m.state.replay(m.journal); err != nil {
			m.journal.Close()
			return nil, err
		}
		m.state.record(&pb.JournalRecord{Rec: &pb.JournalRecord_Started{Started: m.epoch}})
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		if m.journal != nil {
			m.journal.Close()
		}
		return nil, fmt.Errorf("manager: listen on %s: %w", cfg.Listen, err)
	}
	m.ln = gate.Listen(ln, maxStrangers, strangerGrace)
	m.refresh = make(chan struct{}, 1)
	first := make(chan struct{})
	m.published.Store(&first)

	mux := http.NewServeMux()
	m.mux = mux
	m.handleRPCs(mux)
	mux.Handle("/files/", m.requireSecret(http.HandlerFunc(m.serveFiles)))
	mux.Handle("GET /logs/{id}", m.requireSecret(http.HandlerFunc(m.serveLogs)))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	if cfg.TLS != nil {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	m.srv = &http.Server{
		TLSConfig:         cfg.TLS,
		Handler:           mux,
		Protocols:         protocols,
		ConnContext:       gate.ConnContext,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		IdleTimeout:       2 * time.Minute, // a connection without requests goes
		HTTP2:             &http.HTTP2Config{SendPingTimeout: proto.PingIdle, PingTimeout: proto.PingTimeout},
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return m, nil
}

// Handle serves h at pattern on the manager's port, behind the secret
// like every route; call it before Run. Read-only views such as /metrics
// use it, reading Snapshot.
func (m *Manager) Handle(pattern string, h http.Handler) {
	m.mux.Handle(pattern, m.requireSecret(h))
}

// Addr is the address the manager listens on.
func (m *Manager) Addr() string { return m.ln.Addr().String() }

// Run serves until ctx ends, then closes every session and returns.
func (m *Manager) Run(ctx context.Context) error {
	defer func() {
		if m.txn != nil {
			m.txn.Close() // after loop, which flushed it
		}
		if m.ownStore {
			os.RemoveAll(m.cfg.StoreDir)
		}
	}()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return m.loop(ctx) }) // exits when ctx ends
	g.Go(func() error {                       // exits when ctx ends
		m.live.run(ctx, 3*m.cfg.Heartbeat)
		return nil
	})
	g.Go(func() error { // exits when ctx ends
		m.ckpt.run(ctx, m.send)
		return nil
	})
	if m.journal != nil {
		defer m.journal.Close()
		g.Go(func() error { return m.journal.Run(ctx) }) // exits when ctx ends
		g.Go(func() error {                              // exits when ctx ends
			m.compactor(ctx)
			return nil
		})
	}
	g.Go(func() error { // exits when the listener closes
		serve := m.srv.Serve
		if m.srv.TLSConfig != nil {
			serve = func(ln net.Listener) error { return m.srv.ServeTLS(ln, "", "") }
		}
		if err := serve(m.ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("manager: serve: %w", err)
		}
		return nil
	})
	g.Go(func() error { // closes the server when ctx ends
		<-ctx.Done()
		close(m.stopping)
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := m.srv.Shutdown(sctx); err != nil {
			m.srv.Close()
		}
		return nil
	})
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// send hands an event to the loop, or gives up when ctx ends.
func (m *Manager) send(ctx context.Context, ev any) error {
	select {
	case m.events <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// call sends an event carrying a reply channel and waits for the reply.
func call[T any](ctx context.Context, m *Manager, newEvent func(chan T) any) (T, error) {
	reply := make(chan T, 1)
	var zero T
	if err := m.send(ctx, newEvent(reply)); err != nil {
		return zero, err
	}
	select {
	case v := <-reply:
		return v, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}
