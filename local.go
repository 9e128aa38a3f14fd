package trellis

import (
	"connectrpc.com/connect"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	goproto "google.golang.org/protobuf/proto"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"trellis/internal/manager"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/proto/trellisv1/trellisv1connect"
	"trellis/internal/worker"
	"trellis/internal/worker/resources"
)

// LocalConfig describes an embedded cluster: a manager and workers inside
// this process, on 127.0.0.1, with a fresh secret.
type LocalConfig struct {
	Workers  int     // default 1
	Cores    float64 // per worker; default: this machine's cores divided among the workers (at least 1)
	MemoryMB int64   // per worker; default: this machine's memory divided among the workers
	DiskMB   int64   // per worker; default: free disk divided among the workers
	GPUs     int     // per worker; default 0
	Workdir  string  // where workers keep caches and sandboxes; default: a temporary directory
	Listen   string  // manager address; default 127.0.0.1:0
	// Network makes the client and the workers talk to the manager over
	// HTTP/2 on Listen, as remote ones do. By default they join it in
	// process, without the network (files still move over HTTP): a
	// function call's round trip is then about half as long.
	Network bool
}

// StartLocal starts an embedded manager and cfg.Workers local workers and
// returns a client connected to them. Close stops them all.
func StartLocal(ctx context.Context, cfg LocalConfig, opts ...Option) (*Client, error) {
	probe := &Client{}
	for _, o := range opts {
		o(probe)
	}
	log := probe.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	var b [16]byte
	rand.Read(b[:])
	secret := hex.EncodeToString(b[:])

	m, err := manager.Listen(manager.Config{Listen: cfg.Listen, Secret: secret, Logger: log.With("part", "manager"), Version: Version})
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // exits when stop is called
		defer wg.Done()
		if err := m.Run(runCtx); err != nil {
			log.Error("embedded manager", "err", err)
		}
	}()
	root, ownRoot := cfg.Workdir, cfg.Workdir == ""
	if ownRoot {
		if root, err = os.MkdirTemp("", "trellis-local-"); err != nil {
			stop()
			wg.Wait()
			return nil, err
		}
	}
	shutdown := func() {
		stop()
		wg.Wait()
		if ownRoot {
			os.RemoveAll(root)
		}
	}
	res, err := localResources(ctx, root, cfg)
	if err != nil {
		shutdown()
		return nil, err
	}
	workers := make([]*worker.Worker, cfg.Workers)
	for i := range workers {
		w, err := worker.New(worker.Config{Manager: m.Addr(), Secret: secret, Name: fmt.Sprintf("local-%d", i+1),
			Resources: res, Workdir: filepath.Join(root, fmt.Sprintf("worker-%d", i+1)),
			Logger: log.With("part", "worker", "worker", i+1), Version: Version, Connect: connectWorker(m, cfg.Network)})
		if err != nil {
			shutdown()
			return nil, err
		}
		workers[i] = w
	}
	wctx, stopWorkers := context.WithCancel(context.Background())
	var wwg sync.WaitGroup
	for _, w := range workers {
		wwg.Add(1)
		go func() { // exits when stopWorkers is called
			defer wwg.Done()
			if err := w.Run(wctx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("embedded worker", "err", err)
			}
		}()
	}
	c, err := dialLocal(ctx, m, cfg.Network, append(opts, WithSecret(secret)))
	if err != nil {
		stopWorkers()
		wwg.Wait()
		shutdown()
		return nil, err
	}
	// Workers first, so that they hand back their tasks to a manager still there.
	c.shutdown = append(c.shutdown, shutdown, func() { stopWorkers(); wwg.Wait() })
	if err := c.waitWorkers(ctx, cfg.Workers); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// waitWorkers waits until n workers have joined.
func (c *Client) waitWorkers(ctx context.Context, n int) error {
	for {
		s, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if len(s.Workers) >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func localResources(ctx context.Context, dir string, cfg LocalConfig) (resources.Resources, error) {
	r, err := resources.Detect(ctx, dir)
	if err != nil {
		return r, err
	}
	n := int64(cfg.Workers)
	cores := cfg.Cores
	if cores <= 0 {
		cores = max(1, float64(runtime.NumCPU()/cfg.Workers))
	}
	mem, disk := cfg.MemoryMB, cfg.DiskMB
	if mem <= 0 {
		mem = r.MemoryMB / n
	}
	if disk <= 0 {
		disk = r.DiskMB / n
	}
	var gpus []resources.GPU // local workers would share devices: offer them only when asked
	if cfg.GPUs > 0 {
		gpus = r.GPUs
	}
	return resources.Cap(resources.Resources{MilliCores: int64(cores * 1000), MemoryMB: mem, DiskMB: disk, GPUs: gpus},
		cores, mem, disk, cfg.GPUs)
}

// connectWorker says how an embedded worker reaches the manager: in
// process, unless the network is asked for.
func connectWorker(m *manager.Manager, network bool) func(context.Context) worker.Stream {
	if network {
		return nil
	}
	return func(ctx context.Context) worker.Stream { return m.ConnectWorker(ctx) }
}

// dialLocal connects a client to the embedded manager m: in process, unless
// the network is asked for.
func dialLocal(ctx context.Context, m *manager.Manager, network bool, opts []Option) (*Client, error) {
	if network {
		return Dial(ctx, m.Addr(), opts...)
	}
	c := newClient(m.Addr(), opts)
	c.rpc = localRPC{m.Handler()}
	c.watchRPC = func(ctx context.Context, req *pb.WatchRequest) (eventStream, error) {
		return watchLocal(ctx, m, req), nil
	}
	if err := c.begin(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// localRPC calls the manager's service in process. Requests whose parts the
// manager keeps are copied, as decoding them would; the others pass as they
// are.
type localRPC struct {
	trellisv1connect.ManagerHandler
}

func (l localRPC) Submit(ctx context.Context, req *connect.Request[pb.SubmitRequest]) (*connect.Response[pb.SubmitResponse], error) {
	return l.ManagerHandler.Submit(ctx, connect.NewRequest(goproto.Clone(req.Msg).(*pb.SubmitRequest)))
}

func (l localRPC) InstallLibrary(ctx context.Context, req *connect.Request[pb.InstallLibraryRequest]) (*connect.Response[pb.InstallLibraryResponse], error) {
	return l.ManagerHandler.InstallLibrary(ctx, connect.NewRequest(goproto.Clone(req.Msg).(*pb.InstallLibraryRequest)))
}

// localEvents is a session's event stream from a manager in process.
type localEvents struct {
	ch     chan *pb.TaskEvents
	done   chan struct{} // closed when the manager stopped sending; err is set
	err    error
	cur    *pb.TaskEvents
	cancel context.CancelFunc
}

func watchLocal(ctx context.Context, m *manager.Manager, req *pb.WatchRequest) *localEvents {
	ctx, cancel := context.WithCancel(ctx)
	e := &localEvents{ch: make(chan *pb.TaskEvents, 64), done: make(chan struct{}), cancel: cancel}
	go func() { // exits when ctx ends (Close) or the manager stops
		defer close(e.done)
		e.err = m.WatchEvents(ctx, req, func(ev *pb.TaskEvents) error {
			select {
			case e.ch <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if e.err == nil {
			e.err = errors.New("the manager stopped")
		}
	}()
	return e
}

func (e *localEvents) Receive() bool {
	select {
	case e.cur = <-e.ch:
		return true
	case <-e.done:
		select { // what was sent before the end is still due
		case e.cur = <-e.ch:
			return true
		default:
			return false
		}
	}
}

func (e *localEvents) Msg() *pb.TaskEvents { return e.cur }

func (e *localEvents) Err() error {
	select {
	case <-e.done:
		return e.err
	default:
		return nil
	}
}

func (e *localEvents) Close() error {
	e.cancel()
	<-e.done
	return nil
}
