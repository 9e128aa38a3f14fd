package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"trellis"
	"trellis/internal/worker"
	"trellis/internal/worker/resources"
)

func workerCmd() *cobra.Command {
	var (
		secretFile, workdir, name string
		cores                     float64
		memory, disk              int64
		gpus                      int
		drain, idle, stall, exit  time.Duration
		fileServer                string
		ctls                      clientTLS
		simulate, simOutput       int
		simDelay                  time.Duration
		cpuProfile                string
		gcHeadroom                int64
		transport                 string
	)
	cmd := &cobra.Command{
		Use:   "worker HOST:PORT",
		Short: "Run a worker that connects to the manager at HOST:PORT and runs what it is given",
		Long: `Run a worker. It detects its cores, memory, disk (of --workdir) and NVIDIA GPUs
(with nvidia-smi) and offers them to the manager; the flags cap what it offers.

SIGTERM or SIGINT drains it: it takes no new work, lets running tasks finish
(up to --drain-timeout) and hands the rest back. A second signal hands back
everything at once.

--simulate N is a measuring tool, not a worker: it opens N worker sessions
to the manager from this one process, with the real worker session code, but
runs nothing. Each command task succeeds at once (after --simulate-delay,
with --simulate-output bytes of standard output). Each simulated worker
offers --cores (default 1), --memory and --disk (default 4096 MB each), no
GPUs, serves no files and runs no library; trellis status marks them
simulated. Use it to measure what one manager can carry (trellis bench
capacity --simulate, docs/benchmarks.md).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			secret, err := readSecret(secretFile)
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
			if gcHeadroom < 0 || gcHeadroom > math.MaxInt64>>20 {
				return fmt.Errorf("--gc-headroom %d: give megabytes, 0 or more (0: Go's own default)", gcHeadroom)
			}
			worker.TuneGC(gcHeadroom << 20)
			if transport != worker.TransportHTTP2 && transport != worker.TransportFramed && transport != worker.TransportAuto {
				return fmt.Errorf("--transport %q: give auto, framed or http2", transport)
			}
			if simulate < 0 {
				return fmt.Errorf("--simulate %d: give a number of simulated workers, 1 or more (0: a real worker)", simulate)
			}
			if workdir == "" {
				if workdir, err = os.MkdirTemp("", "trellis-worker-"); err != nil {
					return err
				}
				defer os.RemoveAll(workdir)
			} else if err := os.MkdirAll(workdir, 0o755); err != nil {
				return err
			}
			if simulate > 0 {
				return runSimulated(cmd, args[0], secret, name, workdir, simulate, worker.Simulation{Delay: simDelay, OutputBytes: simOutput},
					resources.Resources{MilliCores: int64(max(cores, 1) * 1000), MemoryMB: cmp.Or(memory, 4096), DiskMB: cmp.Or(disk, 4096)}, transport)
			}
			res, err := resources.Detect(context.Background(), workdir)
			if err != nil {
				if res.MilliCores == 0 {
					return err
				}
				log.Warn("resource detection", "err", err) // GPUs unknown; the rest was read
			}
			if gpus == 0 {
				res.GPUs = nil // --gpus 0: offer none
			}
			if res, err = resources.Cap(res, cores, memory, disk, gpus); err != nil {
				return err
			}
			procs := worker.TuneProcs(res.MilliCores)
			tlsConfig, err := ctls.config(args[0])
			if err != nil {
				return err
			}
			w, err := worker.New(worker.Config{TLS: tlsConfig, Manager: args[0], Secret: secret, Name: name, Resources: res,
				Workdir: workdir, DrainTimeout: drain, IdleTimeout: idle, IdleExit: exit, StallTimeout: stall, FileServer: fileServer, Logger: log, Version: trellis.Version,
				Guard: guardCommand(), Transport: transport})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "trellis worker: %g cores, %d MB memory, %d MB disk, %d gpus; manager %s\n",
				float64(res.MilliCores)/1000, res.MemoryMB, res.DiskMB, len(res.GPUs), args[0])
			log.Info("go runtime", "gomaxprocs", procs, "why", "the cores offered, rounded up (GOMAXPROCS in the environment overrides it)")
			ctx, stop := drainOnSignals(log, "signal: draining; send another to hand back all work now", w.Drain)
			defer stop()
			return w.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&secretFile, "secret-file", "", "file holding the shared secret (required)")
	f.Float64Var(&cores, "cores", 0, "cores to offer (default: all detected)")
	f.Int64Var(&memory, "memory", 0, "memory to offer in MB (default: all detected)")
	f.Int64Var(&disk, "disk", 0, "disk to offer in MB (default: free space of --workdir)")
	f.IntVar(&gpus, "gpus", -1, "GPUs to offer (default: all detected)")
	f.StringVar(&workdir, "workdir", "", "directory for the cache and sandboxes (default: a temporary directory)")
	f.StringVar(&name, "name", "", "name shown in status (default: host:pid)")
	f.DurationVar(&drain, "drain-timeout", time.Minute, "on SIGTERM, how long running tasks may finish before they are handed back")
	f.DurationVar(&idle, "idle-timeout", 15*time.Minute, "exit after this long without reaching a manager")
	f.DurationVar(&exit, "idle-exit", 0, "drain and exit after running nothing for this long (a factory's workers retire so); 0 never")
	f.DurationVar(&stall, "stall-timeout", 30*time.Second, "fail a transfer that receives nothing for this long")
	f.StringVar(&fileServer, "file-server", "", "where to serve the cache to peer workers, HOST:PORT (the manager tells peers this worker's address); default: any port on the address that reaches the manager, :0 for every address")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the worker process to FILE until it stops (go tool pprof FILE); for measuring")
	f.Int64Var(&gcHeadroom, "gc-headroom", worker.DefaultGCHeadroom>>20, "MB of allocation between the worker's garbage collections at least (fewer collections, at most this much more memory); 0: Go's default; GOGC in the environment overrides it")
	f.StringVar(&transport, "transport", worker.TransportAuto, "how the worker holds its stream to the manager: framed (a connection of its own, upgraded from HTTP/1.1: less CPU per message), http2, or auto (framed, or http2 with a manager that does not serve framed)")
	f.IntVar(&simulate, "simulate", 0, "measuring tool: open this many simulated workers that run nothing (see above)")
	f.DurationVar(&simDelay, "simulate-delay", 0, "with --simulate: how long each task takes")
	f.IntVar(&simOutput, "simulate-output", 0, "with --simulate: bytes of standard output each task writes")
	ctls.flags(f)
	return cmd
}

// runSimulated runs n simulated workers until a signal: the first drains
// them, a second ends them at once.
func runSimulated(cmd *cobra.Command, manager, secret, name, workdir string, n int, sim worker.Simulation, res resources.Resources, transport string) error {
	log := logger(cmd)
	if name == "" {
		host, _ := os.Hostname()
		name = fmt.Sprintf("sim-%s:%d", host, os.Getpid())
	}
	fmt.Fprintf(cmd.OutOrStdout(), "trellis worker: %d simulated workers (a measuring tool: they run nothing) of %g cores, %d MB memory, %d MB disk; manager %s\n",
		n, float64(res.MilliCores)/1000, res.MemoryMB, res.DiskMB, manager)
	drain := make(chan struct{})
	ctx, stop := drainOnSignals(log, "signal: draining the simulated workers; send another to stop them now", func() { close(drain) })
	defer stop()
	return worker.RunSimulated(ctx, worker.Config{Manager: manager, Secret: secret, Name: name, Resources: res, Workdir: workdir,
		Logger: log, Version: trellis.Version, Simulate: &sim, Transport: transport}, n, drain)
}

// guardArg is the argument with which the trellis binary runs as a worker's
// guard process (sandbox.ServeGuard).
const guardArg = "__guard"

// guardCommand runs this binary as the guard; nil (no guard) when the
// binary cannot be found.
func guardCommand() []string {
	self, err := os.Executable()
	if err != nil {
		return nil
	}
	return []string{self, guardArg}
}

// drainOnSignals calls drain (after logging msg) at the first SIGINT or
// SIGTERM, and cancels the returned context at the second. Call stop when
// done.
func drainOnSignals(log *slog.Logger, msg string, drain func()) (ctx context.Context, stop func()) {
	ctx, kill := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() { // exits after the second signal, or with the process
		<-sigs
		log.Info(msg)
		drain()
		<-sigs
		kill()
	}()
	return ctx, func() {
		signal.Stop(sigs)
		kill()
	}
}
