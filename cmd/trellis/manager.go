package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"trellis"
	"trellis/internal/core"
	"trellis/internal/journal"
	"trellis/internal/manager"
	"trellis/internal/metrics"
	"trellis/internal/web"
)

func managerCmd() *cobra.Command {
	var listen, secretFile, store, state, dashboard, txnLog, cpuProfile, memProfile, checkpointDir string
	var grace time.Duration
	var unplaceable, adopt, heartbeat time.Duration
	var placement string
	var prefetch bool
	var ahead int
	var snapshotRecords int
	var commitInterval time.Duration
	var stls serverTLS
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run a manager: the queue, scheduler and file store that workers and clients connect to",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			secret, err := readSecret(secretFile)
			if err != nil {
				return err
			}
			if grace <= 0 {
				return fmt.Errorf("--client-grace %s: give a positive duration, such as 60s: how long a client may be away before its tasks are cancelled", grace)
			}
			policies := map[string]core.Placement{"graph": core.PlaceGraph, "free": core.PlaceFree}
			policy, ok := policies[placement]
			if !ok {
				return fmt.Errorf("--placement %q: give graph (the default) or free (the policy before graph-aware placement, to compare)", placement)
			}
			if heartbeat < 100*time.Millisecond {
				return fmt.Errorf("--heartbeat %s: give a duration of 100ms or more, such as 5s: how often each worker says it lives (a silent worker is lost after three)", heartbeat)
			}
			if adopt <= 0 {
				return fmt.Errorf("--adopt-window %s: give a positive duration, such as 30s: how long a restarted manager waits for a worker to come back with a task it ran", adopt)
			}
			if heartbeat <= 0 {
				return fmt.Errorf("--heartbeat %s: give a positive duration, such as 5s: how often workers say they live (a worker silent for 3 of them is lost)", heartbeat)
			}
			if snapshotRecords < 0 {
				return fmt.Errorf("--snapshot-records %d: give a positive number of records, such as 20000, or 0 for that default: how many new records make the journal due for a snapshot", snapshotRecords)
			}
			if commitInterval < 0 {
				return fmt.Errorf("--journal-commit-interval %s: give 0 (commit as soon as records are queued) or a positive duration, such as 1ms: the least time between two journal commits", commitInterval)
			}
			if commitInterval == 0 {
				commitInterval = -1 // none
			}
			if ahead < 0 {
				return fmt.Errorf("--ahead %d: give 0 (a worker gets only what its free resources hold) or a positive number of tasks, such as 2: how many more a busy worker may hold, to start as soon as one ends", ahead)
			}
			if unplaceable < 0 {
				return fmt.Errorf("--unplaceable-timeout %s: give 0 (wait for ever) or a positive duration, such as 10m: how long a task may wait while no connected worker could run it", unplaceable)
			}
			tlsConfig, peerCA, err := stls.config(cmd.OutOrStdout(), listen, secretFile, state)
			if err != nil {
				return err
			}
			log := logger(cmd)
			if cpuProfile != "" {
				stopProfile, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stopProfile()
			}
			if memProfile != "" {
				defer heapProfileOnSignal(memProfile, log)()
			}
			m, err := manager.Listen(manager.Config{TLS: tlsConfig, PeerCA: peerCA, Listen: listen, Secret: secret, StoreDir: store, StateDir: state, CheckpointDir: checkpointDir, Logger: log, Version: trellis.Version, ClientGrace: grace,
				UnplaceableTimeout: unplaceable, TxnLog: txnLog, Placement: policy, NoPrefetch: !prefetch, Ahead: ahead, AdoptWindow: adopt, Heartbeat: heartbeat,
				SnapshotRecords: snapshotRecords, CommitInterval: commitInterval})
			if err != nil {
				return err
			}
			m.Handle("/metrics", metrics.Handler(m))
			fmt.Fprintf(cmd.OutOrStdout(), "trellis manager listening on %s\n", m.Addr())
			ctx, stop := signalContext()
			defer stop()
			if dashboard == "" {
				return m.Run(ctx)
			}
			ln, err := net.Listen("tcp", dashboard)
			if err != nil {
				return fmt.Errorf("--dashboard %s: %w: give a free HOST:PORT (port 0 picks one)", dashboard, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "trellis dashboard on http://%s\n", ln.Addr())
			g, ctx := errgroup.WithContext(ctx)
			g.Go(func() error { return m.Run(ctx) })                      // exits when ctx ends
			g.Go(func() error { return web.New(m, secret).Run(ctx, ln) }) // exits when ctx ends
			return g.Wait()
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:9123", "address to listen on, HOST:PORT (port 0 picks one)")
	cmd.Flags().StringVar(&secretFile, "secret-file", "", "file holding the shared secret (required)")
	cmd.Flags().StringVar(&state, "state", "", "directory for the journal (and the store, unless --store): a manager started again with it recovers its sessions, tasks and libraries (docs/recovery.md)")
	cmd.Flags().StringVar(&dashboard, "dashboard", "", "serve the web dashboard on HOST:PORT (port 0 picks one), behind the secret; default: none")
	cmd.Flags().StringVar(&checkpointDir, "checkpoint-dir", "", "directory (local or on a shared file system) for checkpointed task outputs, which survive the loss of every worker; without it, tasks may not ask for checkpoints and nondeterministic outputs are kept by lineage (docs/recovery.md)")
	cmd.Flags().StringVar(&txnLog, "txn-log", "", "append one JSON line per task and worker state change to FILE (docs/dashboard.md); default: none")
	cmd.Flags().StringVar(&store, "store", "", "directory for files (default: a temporary directory, removed on exit)")
	cmd.Flags().DurationVar(&grace, "client-grace", manager.DefaultClientGrace, "how long a client's tasks go on once its event stream has closed without it ending its session; then they are cancelled")
	cmd.Flags().IntVar(&ahead, "ahead", 3, "tasks each worker may hold beyond its free resources while no worker has room, started there as soon as a task ends (0: none)")
	cmd.Flags().BoolVar(&prefetch, "prefetch", true, "with --placement graph, fetch a waiting task's finished inputs to the worker it is bound to while its last producers run (--prefetch=false: not, to compare)")
	cmd.Flags().StringVar(&placement, "placement", "graph", "placement policy: graph (co-assign the producers of one consumer, place consumers where their inputs are) or free (by bytes present, else free cores: the policy before, to compare)")
	cmd.Flags().DurationVar(&unplaceable, "unplaceable-timeout", 0, "fail a task that waits this long while no connected worker could run it (it asks for more than any has); a task or workflow may set its own; 0 waits for ever")
	cmd.Flags().DurationVar(&adopt, "adopt-window", manager.DefaultAdoptWindow, "with --state: how long a restarted manager waits for a worker to come back with a task it was running (adopted, not run again) before the task runs elsewhere")
	cmd.Flags().DurationVar(&heartbeat, "heartbeat", manager.DefaultHeartbeat, "how often a worker with nothing else to say sends a heartbeat; a worker silent for three of them is lost and its tasks run elsewhere (each heartbeat costs the manager CPU: see docs/benchmarks.md, capacity)")
	cmd.Flags().IntVar(&snapshotRecords, "snapshot-records", 0, "with --state: compact the journal into a snapshot once this many records (or a quarter of the last snapshot's, if more) came after the last one; 0 means 20,000 (docs/recovery.md)")
	cmd.Flags().DurationVar(&commitInterval, "journal-commit-interval", journal.DefaultCommitInterval, "with --state: the least time between the starts of two journal commits; records queued meanwhile share one fdatasync (less CPU per record under load, up to this much more wait for a client's answer); while records keep arriving, after a group of n the next waits n times this, at most 4 times; 0 commits as soon as records are queued (docs/recovery.md)")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the manager to FILE until it stops (go tool pprof FILE); for measuring")
	cmd.Flags().StringVar(&memProfile, "memprofile", "", "write a heap profile of the manager to FILE (go tool pprof FILE) each time it gets the signal SIGUSR1 (kill -USR1 PID), after a garbage collection; for measuring")
	stls.flags(cmd.Flags())
	return cmd
}

// startCPUProfile profiles this process into file until the returned
// function is called.
func startCPUProfile(file string) (stop func(), err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile %s: %w", file, err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// heapProfileOnSignal writes a heap profile of this process to file each
// time it gets SIGUSR1, after a garbage collection, until the returned
// function is called. The profile is written beside file and renamed, so
// that a reader that waits for file never sees half of one.
func heapProfileOnSignal(file string, log *slog.Logger) (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() { // exits when stop is called
		defer close(exited)
		for {
			select {
			case <-sig:
				if err := writeHeapProfile(file); err != nil {
					log.Error("--memprofile: the heap profile was not written", "file", file, "err", err)
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
		<-exited
	}
}

func writeHeapProfile(file string) error {
	runtime.GC()
	tmp := file + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}
