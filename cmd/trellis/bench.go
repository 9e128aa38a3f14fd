package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"trellis"
	"trellis/internal/bench"
)

func benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure trellis; each benchmark prints its figures as one JSON object on its last line",
	}
	var cpuProfile string
	stopProfile := func() {}
	cmd.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of this process to `FILE` (go tool pprof)")
	cmd.PersistentPreRunE = func(*cobra.Command, []string) error {
		if cpuProfile == "" {
			return nil
		}
		stop, err := startCPUProfile(cpuProfile)
		if err != nil {
			return err
		}
		stopProfile = stop
		return nil
	}
	cmd.PersistentPostRunE = func(*cobra.Command, []string) error {
		stopProfile()
		return nil
	}
	var tasks, workers int
	var tasksOn target
	tasksCmd := &cobra.Command{
		Use:   "tasks",
		Short: "Throughput of trivial command tasks through an embedded cluster (or a running one), against a plain spawn loop",
		Long: `Throughput of trivial command tasks, against the same processes spawned here
in a plain loop with the same parallelism (the cores of the workers).

By default it starts an embedded manager and --workers local workers. With
--manager HOST:PORT (and --secret-file) it runs on that running cluster
instead, with the workers connected to it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext()
			defer stop()
			tg, done, err := tasksOn.open(ctx, workers)
			if err != nil {
				return err
			}
			defer done()
			res, err := bench.Tasks(ctx, tasks, tg, progressf)
			if err != nil {
				return err
			}
			return printJSON(cmd, res)
		},
	}
	tasksCmd.Flags().IntVar(&tasks, "tasks", 2000, "tasks per run")
	tasksCmd.Flags().IntVar(&workers, "workers", 2, "local workers (without --manager)")
	tasksOn.flags(tasksCmd.Flags())
	var dagWorkers, maps, reduces, mapMiB, transferMiB int
	var mapSeconds float64
	var keepTemps bool
	var linkRate, checkpoint string
	var dagOn target
	dagCmd := &cobra.Command{
		Use:   "dag",
		Short: "The data workload: maps writing temp files, reduces reading them, bytes moved by route",
		Long: `The data workload: maps writing temp files, reduces each reading some of
them, and one task gathering the reduces' outputs. It reports seconds and
the bytes moved worker to worker (bytes_peer) and through the manager
(bytes_via_manager).

By default it starts an embedded manager and --workers local workers, and
then times one peer transfer against cp. With --manager HOST:PORT (and
--secret-file) it runs on that running cluster instead (bytes are the
differences of its counters across the run); --link-rate is reported as
given, to say what the hosts' links were. docs/benchmarks.md says how to
run it across hosts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext()
			defer stop()
			tg, done, err := dagOn.open(ctx, dagWorkers)
			if err != nil {
				return err
			}
			defer done()
			if checkpoint != "none" && tg.Client == nil {
				dir, err := os.MkdirTemp("", "trellis-bench-checkpoints-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				tg.CheckpointDir = dir
			}
			res, err := bench.Dag(ctx, tg, maps, reduces, mapMiB, transferMiB, mapSeconds, keepTemps, checkpoint, linkRate, progressf)
			if err != nil {
				return err
			}
			return printJSON(cmd, res)
		},
	}
	dagCmd.Flags().IntVar(&dagWorkers, "workers", 2, "local workers (without --manager)")
	dagCmd.Flags().StringVar(&linkRate, "link-rate", "", "the rate of each host's link, as `RATE` (e.g. 200mbit), reported in the result")
	dagOn.flags(dagCmd.Flags())
	dagCmd.Flags().IntVar(&maps, "maps", 32, "map tasks")
	dagCmd.Flags().IntVar(&reduces, "reduces", 8, "reduce tasks (each reads maps/reduces map outputs)")
	dagCmd.Flags().IntVar(&mapMiB, "map-mib", 16, "size of each map output, MiB")
	dagCmd.Flags().Float64Var(&mapSeconds, "map-seconds", 0, "each map also sleeps this long after writing its output (a map that takes time, for transfers to overlap)")
	dagCmd.Flags().IntVar(&transferMiB, "transfer-mib", 256, "size of the single peer transfer timed against cp, MiB")
	dagCmd.Flags().StringVar(&checkpoint, "checkpoint", "none", "how the temp files are kept: none (lineage), sync or async checkpoints (an embedded manager gets a temporary --checkpoint-dir; with --manager, it must have one), to measure what checkpoints cost")
	dagCmd.Flags().BoolVar(&keepTemps, "keep", false, "keep the temp files instead of pruning them (as before #18), to compare peak_cache_bytes")
	var callWorkers, calls, slots int
	var networkOnly bool
	var callsOn target
	callsCmd := &cobra.Command{
		Use:   "calls",
		Short: "Function calls (Go and Python libraries): async rate, blocking latency, and command tasks for comparison",
		Long: `Function calls (Go and Python libraries): async rate, blocking latency, and command tasks for comparison.

By default it starts embedded clusters of --workers local workers, in process
and over the network on 127.0.0.1. With --manager HOST:PORT (and
--secret-file) it measures the network figures (manager_*, network_*,
direct_*) on that running cluster instead, without their CPU: its workers run
the benchmark's library, ` + bench.CallsLibrary + `, from this trellis binary's
path, which must be there on each worker's host (it is removed after each
route).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext()
			defer stop()
			tg, err := callsOn.calls()
			if err != nil {
				return err
			}
			res, err := bench.Calls(ctx, calls, callWorkers, slots, networkOnly, tg, progressf)
			if err != nil {
				return err
			}
			return printJSON(cmd, res)
		},
	}
	callsCmd.Flags().IntVar(&callWorkers, "workers", 2, "local workers (without --manager)")
	callsOn.flags(callsCmd.Flags())
	callsCmd.Flags().IntVar(&calls, "calls", 20000, "async calls")
	callsCmd.Flags().IntVar(&slots, "slots", 8, "call slots per library instance")
	callsCmd.Flags().BoolVar(&networkOnly, "network-only", false, "measure only the figures with client and workers on HTTP/2 (network_*, manager_*, direct_*), for quick A/B rounds")
	var recTasks, recCalls, recWorkers, recRounds, recRestart, recCrash int
	recoveryCmd := &cobra.Command{
		Use:   "recovery",
		Short: "What the journal (--state) costs tasks and calls, its bytes per task, and a restart's time with many tasks journaled",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext()
			defer stop()
			res, err := bench.Recovery(ctx, recTasks, recCalls, recWorkers, recRounds, recRestart, recCrash, progressf)
			if err != nil {
				return err
			}
			return printJSON(cmd, res)
		},
	}
	recoveryCmd.Flags().IntVar(&recTasks, "tasks", 2000, "command tasks per run")
	recoveryCmd.Flags().IntVar(&recCalls, "calls", 10000, "async calls per run")
	recoveryCmd.Flags().IntVar(&recWorkers, "workers", 2, "local workers")
	recoveryCmd.Flags().IntVar(&recRounds, "rounds", 3, "rounds, each with and without the journal (alternating which goes first)")
	recoveryCmd.Flags().IntVar(&recRestart, "restart-tasks", 100000, "queued tasks journaled before the timed restart")
	recoveryCmd.Flags().IntVar(&recCrash, "crash-maps", 48, "map tasks of the workflow whose manager process is killed (rerun_after_crash); 0 skips it")
	cmd.AddCommand(tasksCmd, benchCoreCmd(), dagCmd, callsCmd, benchScaleCmd(), benchTLSCmd(), benchPeerCmd(), recoveryCmd, benchCapacityCmd())
	return cmd
}

func progressf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func printJSON(cmd *cobra.Command, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), string(b))
	return nil
}

// target is where a benchmark runs: an embedded cluster, or with --manager
// a running one.
type target struct {
	manager string
	managerFlags
}

func (t *target) flags(f *pflag.FlagSet) {
	f.StringVar(&t.manager, "manager", "", "run on the running cluster of the manager at `HOST:PORT` (with --secret-file) instead of an embedded one")
	t.managerFlags.flags(f)
}

// calls is the target of bench calls: embedded clusters, or clients of the
// running cluster --manager names, dialled as each route needs them.
func (t *target) calls() (bench.CallsTarget, error) {
	if t.manager == "" {
		if t.secretFile != "" {
			return bench.CallsTarget{}, fmt.Errorf("--secret-file is for a running cluster: give --manager HOST:PORT too")
		}
		return bench.CallsTarget{}, nil
	}
	secret, err := readSecret(t.secretFile)
	if err != nil {
		return bench.CallsTarget{}, err
	}
	return bench.CallsTarget{Manager: t.manager, Dial: func(ctx context.Context, opts ...trellis.Option) (*trellis.Client, error) {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, err := t.tls.dial(dctx, t.manager, secret, opts...)
		if err != nil {
			return nil, fmt.Errorf("connect to --manager %s: %w", t.manager, err)
		}
		return c, nil
	}}, nil
}

// open connects to the running manager if --manager names one.
func (t *target) open(ctx context.Context, workers int) (bench.Target, func(), error) {
	if t.manager == "" {
		if t.secretFile != "" {
			return bench.Target{}, nil, fmt.Errorf("--secret-file is for a running cluster: give --manager HOST:PORT too")
		}
		return bench.Target{Workers: workers}, func() {}, nil
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := t.dial(dctx, t.manager)
	if err != nil {
		return bench.Target{}, nil, fmt.Errorf("connect to --manager %s: %w", t.manager, err)
	}
	return bench.Target{Client: c, Manager: t.manager}, func() { c.Close() }, nil
}
