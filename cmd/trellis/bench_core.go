package main

import (
	"github.com/spf13/cobra"

	"trellis/internal/core/corebench"
)

func benchCoreCmd() *cobra.Command {
	var workers, tasks int
	cmd := &cobra.Command{
		Use:   "core",
		Short: "Decisions per second and memory per queued task of the scheduler core alone",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			progressf("core: %d simulated workers, %d queued tasks (and a tenth of each, for scaling)", workers, tasks)
			return printJSON(cmd, corebench.BenchCore(workers, tasks))
		},
	}
	cmd.Flags().IntVar(&workers, "workers", 1000, "simulated workers")
	cmd.Flags().IntVar(&tasks, "tasks", 1_000_000, "queued tasks")
	return cmd
}
