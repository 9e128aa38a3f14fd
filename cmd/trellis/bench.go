package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

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
	tasksCmd := &cobra.Command{
		Use:   "tasks",
		Short: "Throughput of trivial command tasks through an embedded cluster, against a plain spawn loop",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext()
			defer stop()
			res, err := bench.Tasks(ctx, tasks, workers, progressf)
			if err != nil {
				return err
			}
			return printJSON(cmd, res)
		},
	}
	tasksCmd.Flags().IntVar(&tasks, "tasks", 2000, "tasks per run")
	tasksCmd.Flags().IntVar(&workers, "workers", 2, "local workers")
	var dagWorkers, maps, reduces, mapMiB, transferMiB int
	var keepTemps bool
	dagCmd := &cobra.Command{
		Use:   "dag",
		Short: "The data workload: maps writing temp files, reduces reading them, bytes moved by route",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext()
			defer stop()
			res, err := bench.Dag(ctx, dagWorkers, maps, reduces, mapMiB, transferMiB, keepTemps, progressf)
			if err != nil {
				return err
			}
			return printJSON(cmd, res)
		},
	}
	dagCmd.Flags().IntVar(&dagWorkers, "workers", 2, "local workers")
	dagCmd.Flags().IntVar(&maps, "maps", 32, "map tasks")
	dagCmd.Flags().IntVar(&reduces, "reduces", 8, "reduce tasks (each reads maps/reduces map outputs)")
	dagCmd.Flags().IntVar(&mapMiB, "map-mib", 16, "size of each map output, MiB")
	dagCmd.Flags().IntVar(&transferMiB, "transfer-mib", 256, "size of the single peer transfer timed against cp, MiB")
	dagCmd.Flags().BoolVar(&keepTemps, "keep", false, "keep the temp files instead of pruning them (as before #18), to compare peak_cache_bytes")
	var callWorkers, calls, slots int
	callsCmd := &cobra.Command{
		Use:   "calls",
		Short: "Function calls (Go and Python libraries): async rate, blocking latency, and command tasks for comparison",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext()
			defer stop()
			res, err := bench.Calls(ctx, calls, callWorkers, slots, progressf)
			if err != nil {
				return err
			}
			return printJSON(cmd, res)
		},
	}
	callsCmd.Flags().IntVar(&callWorkers, "workers", 2, "local workers")
	callsCmd.Flags().IntVar(&calls, "calls", 20000, "async calls")
	callsCmd.Flags().IntVar(&slots, "slots", 8, "call slots per library instance")
	cmd.AddCommand(tasksCmd, benchCoreCmd(), dagCmd, callsCmd, benchScaleCmd(), benchCapacityCmd())
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
