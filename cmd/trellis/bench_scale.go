package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"trellis/internal/bench"
	"trellis/internal/worker"
)

func benchScaleCmd() *cobra.Command {
	var cfg bench.ScaleConfig
	var wcfg bench.WorkersConfig
	cmd := &cobra.Command{
		Use:   "scale",
		Short: "The manager's ceiling: a manager process, fake workers that run nothing, many trivial tasks",
		Long: `Start a manager process and connect --fake-workers workers to it over the
real protocol (hello, welcome, heartbeats, Run answered by Done), from this
process. The fake workers run nothing: each task succeeds the moment it
arrives, so the figures are the manager's alone, not the cost of starting
processes. A measuring tool only (docs/benchmarks.md); trellis bench capacity
measures the same with worker processes.

It measures the idle manager for --idle with every worker connected, then
runs --tasks tasks, and fails unless each ran exactly once.

With --workers N instead, the workers are real worker processes of 1 core
(and --memory MB) that a factory (--batch local) starts, the tasks run
'true', and a first run with --baseline-workers gives the growth of the
manager's memory and CPU per task (rss_growth, cpu_growth).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("workers") {
				return runScale(cmd, cfg)
			}
			if cmd.Flags().Changed("fake-workers") {
				return fmt.Errorf("give --workers (real worker processes) or --fake-workers, not both")
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			wcfg.Self, wcfg.Tasks, wcfg.Idle = self, cfg.Tasks, cfg.Idle
			if !cmd.Flags().Changed("tasks") {
				wcfg.Tasks = 20000 // real tasks: the figure, not the fake workers' hundred thousand
			}
			res, err := bench.ScaleWorkers(ctx, wcfg, progressf)
			if err != nil {
				return err
			}
			return printJSON(cmd, res)
		},
	}
	cmd.Flags().IntVar(&cfg.Workers, "fake-workers", 1000, "fake workers to connect")
	cmd.Flags().Float64Var(&cfg.Cores, "cores", 1, "cores each fake worker offers (one-core tasks it runs at once)")
	cmd.Flags().IntVar(&cfg.Tasks, "tasks", 100000, "one-core tasks to run (with --workers: 20000 by default)")
	cmd.Flags().IntVar(&wcfg.Workers, "workers", 0, "real worker processes (1 core each), started by a factory with --batch local, instead of fake workers")
	cmd.Flags().IntVar(&wcfg.Baseline, "baseline-workers", 50, "with --workers: worker processes of a first run, to measure growth against (0: none)")
	cmd.Flags().IntVar(&wcfg.MemoryMB, "memory", 100, "with --workers: memory of each worker, MB")
	cmd.Flags().DurationVar(&cfg.Idle, "idle", 10*time.Second, "how long to measure the idle manager with every worker connected (the manager's heartbeat is 30 s: give 60s to count two heartbeats of each worker)")
	return cmd
}

func benchCapacityCmd() *cobra.Command {
	var cfg bench.ScaleConfig
	var transport string
	cmd := &cobra.Command{
		Use:   "capacity",
		Short: "What one manager carries: a manager process, worker processes (or simulated workers), many trivial tasks",
		Long: `Start a manager process and --workers worker processes of --cores cores
each (the trellis binary's worker subcommand), then run --tasks one-core
tasks ('true') through them from one Go client.

With --simulate, the workers are one 'trellis worker --simulate N' process:
the real worker session code, over the real protocol, one connection each,
but running nothing, so that the manager can be measured at 10,000 workers
on one machine. A measuring tool only (docs/benchmarks.md).

It measures how long the workers take to connect, the idle manager for
--idle with every worker connected, then the tasks; it fails unless each
task succeeded and the workers ran as many attempts as there were tasks.
The last line is one JSON object: workers, tasks, connect_s, tasks_per_s,
manager_cpu_ms_per_1k_tasks, manager_rss_mb (peak), manager_bytes_per_queued_task
(RSS over idle once all were submitted, divided by the tasks queued then),
idle_cpu_us_per_worker_s, and more.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			cfg.Worker = []string{self, "worker", "--transport", transport}
			return runScale(cmd, cfg)
		},
	}
	cmd.Flags().StringVar(&transport, "transport", worker.TransportAuto, "how the workers hold their streams (trellis worker --transport): auto, framed or http2")
	cmd.Flags().IntVar(&cfg.Workers, "workers", 50, "workers to connect")
	cmd.Flags().BoolVar(&cfg.Simulate, "simulate", false, "simulated workers (one process, trellis worker --simulate) instead of one worker process each")
	cmd.Flags().Float64Var(&cfg.Cores, "cores", 1, "cores each worker offers (one-core tasks it runs at once)")
	cmd.Flags().IntVar(&cfg.Tasks, "tasks", 10000, "one-core tasks to run")
	cmd.Flags().DurationVar(&cfg.Idle, "idle", time.Minute, "how long to measure the idle manager with every worker connected (two heartbeats at least: the manager's heartbeat is 30 s, or --heartbeat)")
	cmd.Flags().StringVar(&cfg.ManagerCPUProfile, "manager-cpuprofile", "", "write the manager's CPU profile to FILE (trellis manager --cpuprofile)")
	cmd.Flags().StringVar(&cfg.ManagerMemProfile, "manager-memprofile", "", "with --queue-first: write the manager's heap profile to FILE once every task is queued (trellis manager --memprofile)")
	cmd.Flags().DurationVar(&cfg.Heartbeat, "heartbeat", 0, "the manager's heartbeat interval (trellis manager --heartbeat; 0: its default)")
	cmd.Flags().Var(optionalInt{&cfg.Ahead}, "ahead", "tasks each worker may hold beyond its free resources (trellis manager --ahead; default: the manager's)")
	cmd.Flags().StringVar(&cfg.WorkerCPUProfile, "worker-cpuprofile", "", "write the first worker process's CPU profile to FILE (trellis worker --cpuprofile)")
	cmd.Flags().StringVar(&cfg.Command, "command", "true", "each task's command, such as 'sleep 1'")
	cmd.Flags().BoolVar(&cfg.QueueFirst, "queue-first", false, "submit every task before the workers start, to measure the manager with them all queued (manager_queued_rss_mb, manager_bytes_per_queued_task); the idle manager is then not measured")
	cmd.Flags().BoolVar(&cfg.PlainLoop, "plain-loop", false, "with worker processes: then run the tasks' command as many times, as many at once as the workers' cores, in a plain Go loop in this process, and report its CPU (plain_loop_cpu_percent: the floor for worker_cpu_percent)")
	cmd.Flags().Int64Var(&cfg.TaskMemoryMB, "task-memory", 0, "each task's memory limit in MB (0: none); a limit makes the worker sample the task's memory")
	return cmd
}

// runScale runs bench.Scale against this binary's manager subcommand.
func runScale(cmd *cobra.Command, cfg bench.ScaleConfig) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cfg.Manager = []string{self, "manager"}
	ctx, stop := signalContext()
	defer stop()
	res, err := bench.Scale(ctx, cfg, progressf)
	if err != nil {
		return err
	}
	if len(cfg.Worker) > 0 {
		res.Bench = "capacity"
	}
	return printJSON(cmd, res)
}

// optionalInt is an int flag that stays nil unless given.
type optionalInt struct{ p **int }

func (o optionalInt) String() string {
	if o.p == nil || *o.p == nil {
		return ""
	}
	return strconv.Itoa(**o.p)
}

func (o optionalInt) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return err
	}
	*o.p = &n
	return nil
}

func (optionalInt) Type() string { return "int" }
