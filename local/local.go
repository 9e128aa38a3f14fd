// Package local runs a trellis cluster inside the calling process: a
// manager and local workers on 127.0.0.1 with a fresh secret, and a
// trellis.Client connected to them. Closing the client stops the cluster:
// the workers first, so that they hand their tasks back to a manager still
// there, then the manager.
//
//	c, err := local.Start(ctx, local.Config{Workers: 2})
//	defer c.Close()
//
// It is the only package of the public API that links the manager and the
// worker; package trellis is a client alone.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"trellis"
	"trellis/internal/clientconn"
	"trellis/internal/manager"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/worker"
	"trellis/internal/worker/resources"
)

// Config describes an embedded cluster.
type Config struct {
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
	// Guard is the command that runs a worker's guard process, which
	// kills what the worker started if this process dies (see
	// internal/worker.Config.Guard); the trellis binary passes itself.
	// Without it, task processes still get a parent-death signal and,
	// where cgroups are writable, a cgroup; a child that starts its own
	// session without a cgroup may then outlive a killed process.
	Guard []string
	// TxnLog, when set, is the file the manager appends its transaction
	// log to (manager.Config.TxnLog).
	TxnLog string
	// StateDir, when set, is the manager's --state directory: its journal
	// (manager.Config.StateDir).
	StateDir string
	// CheckpointDir, when set, is the manager's --checkpoint-dir
	// (manager.Config.CheckpointDir).
	CheckpointDir string
	// LeaseTTL is how long a direct-call lease lasts without a call
	// ending on it (manager.Config.LeaseTTL); 0: 10 s.
	LeaseTTL time.Duration
}

// Start starts an embedded manager and cfg.Workers local workers and
// returns a client connected to them, made with opts (trellis.WithLogger
// also sets where the manager and workers log). Close stops them all.
func Start(ctx context.Context, cfg Config, opts ...trellis.Option) (*trellis.Client, error) {
	probe := new(trellis.Client) // only to read the logger opts set
	for _, o := range opts {
		o(probe)
	}
	log := probe.Logger()
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

	m, err := manager.Listen(manager.Config{Listen: cfg.Listen, Secret: secret, Logger: log.With("part", "manager"), Version: trellis.Version, TxnLog: cfg.TxnLog, StateDir: cfg.StateDir,
		CheckpointDir: cfg.CheckpointDir, LeaseTTL: cfg.LeaseTTL})
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
	stopManager := func() {
		stop()
		wg.Wait()
		if ownRoot {
			os.RemoveAll(root)
		}
	}
	res, err := localResources(ctx, root, cfg)
	if err != nil {
		stopManager()
		return nil, err
	}
	workers := make([]*worker.Worker, cfg.Workers)
	for i := range workers {
		w, err := worker.New(worker.Config{Manager: m.Addr(), Secret: secret, Name: fmt.Sprintf("local-%d", i+1),
			Resources: res, Workdir: filepath.Join(root, fmt.Sprintf("worker-%d", i+1)),
			Logger: log.With("part", "worker", "worker", i+1), Version: trellis.Version, Connect: connectWorker(m, cfg.Network),
			Guard: cfg.Guard})
		if err != nil {
			stopManager()
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
	// Workers first, so that they hand back their tasks to a manager still there.
	stopAll := func() {
		stopWorkers()
		wwg.Wait()
		stopManager()
	}
	t := clientconn.Transport{Stop: stopAll}
	if !cfg.Network {
		t.RPC = localRPC{m.Handler()}
		t.Watch = func(ctx context.Context, req *pb.WatchRequest) (clientconn.Events, error) {
			events, err := watchLocal(ctx, m, req)
			if err != nil {
				return nil, err
			}
			return events, nil
		}
	}
	c, err := trellis.Dial(ctx, m.Addr(), append(opts, trellis.WithSecret(secret), trellis.WithTransport(t))...)
	if err != nil {
		stopAll()
		return nil, err
	}
	if err := waitWorkers(ctx, c, cfg.Workers); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// waitWorkers waits until n workers have joined.
func waitWorkers(ctx context.Context, c *trellis.Client, n int) error {
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

func localResources(ctx context.Context, dir string, cfg Config) (resources.Resources, error) {
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
