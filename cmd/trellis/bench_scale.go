package main

import (
	"os"
	"time"

	"github.com/spf13/cobra"

	"trellis/internal/bench"
)

func benchScaleCmd() *cobra.Command {
	var cfg bench.ScaleConfig
	cmd := &cobra.Command{
		Use:   "scale",
		Short: "The manager's ceiling: a manager process, fake workers that run nothing, many trivial tasks",
		Long: `Start a manager process and connect --fake-workers workers to it over the
real protocol (hello, welcome, heartbeats, Run answered by Done), from this
process. The fake workers run nothing: each task succeeds the moment it
arrives, so the figures are the manager's alone, not the cost of starting
processes. A measuring tool only (docs/benchmarks.md).

It measures the idle manager for --idle with every worker connected, then
runs --tasks tasks, and fails unless each ran exactly once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			return printJSON(cmd, res)
		},
	}
	cmd.Flags().IntVar(&cfg.Workers, "fake-workers", 1000, "fake workers to connect")
	cmd.Flags().Float64Var(&cfg.Cores, "cores", 1, "cores each fake worker offers (one-core tasks it runs at once)")
	cmd.Flags().IntVar(&cfg.Tasks, "tasks", 100000, "one-core tasks to run")
	cmd.Flags().DurationVar(&cfg.Idle, "idle", 10*time.Second, "how long to measure the idle manager with every worker connected (two heartbeats at least)")
	return cmd
}
