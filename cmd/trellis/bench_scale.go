package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"trellis/internal/bench"
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
processes. A measuring tool only (docs/benchmarks.md).

It measures the idle manager for --idle with every worker connected, then
runs --tasks tasks, and fails unless each ran exactly once.

With --workers N instead, the workers are real worker processes of 1 core
(and --memory MB) that a factory (--batch local) starts, the tasks run
'true', and a first run with --baseline-workers gives the growth of the
manager's memory and CPU per task (rss_growth, cpu_growth).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			cfg.Manager = []string{self, "manager"}
			ctx, stop := signalContext()
			defer stop()
			if cmd.Flags().Changed("workers") {
				if cmd.Flags().Changed("fake-workers") {
					return fmt.Errorf("give --workers (real worker processes) or --fake-workers, not both")
				}
				wcfg.Self, wcfg.Tasks, wcfg.Idle = self, cfg.Tasks, cfg.Idle
				if !cmd.Flags().Changed("tasks") {
					wcfg.Tasks = 20000 // real tasks: the figure, not the fake workers' hundred thousand
				}
				res, err := bench.ScaleWorkers(ctx, wcfg, progressf)
				if err != nil {
					return err
				}
				return printJSON(cmd, res)
			}
			res, err := bench.Scale(ctx, cfg, progressf)
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
	cmd.Flags().DurationVar(&cfg.Idle, "idle", 10*time.Second, "how long to measure the idle manager with every worker connected (two heartbeats at least)")
	return cmd
}
