package main

import (
	"os"

	"github.com/spf13/cobra"

	"trellis/internal/bench"
)

func benchTLSCmd() *cobra.Command {
	cfg := bench.TLSConfig{}
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "What TLS costs: tasks through manager and worker processes, and a peer transfer, plain and over TLS",
		Long: `Run --tasks trivial tasks through a manager process and --workers worker
processes over TCP on 127.0.0.1, once plain and once with --tls auto (workers
and client trusting the cluster CA), and time one --transfer-mib peer
transfer between worker caches, plain and over TLS with a certificate the
cluster CA signed. The modes alternate for --rounds rounds; the JSON gives
every round and the ratios of the medians (TLS / plain).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			cfg.Self = self
			ctx, stop := signalContext()
			defer stop()
			res, err := bench.TLS(ctx, cfg, progressf)
			if err != nil {
				return err
			}
			return printJSON(cmd, res)
		},
	}
	cmd.Flags().IntVar(&cfg.Tasks, "tasks", 2000, "trivial tasks per round")
	cmd.Flags().IntVar(&cfg.Workers, "workers", 2, "worker processes, 1 core each")
	cmd.Flags().IntVar(&cfg.Rounds, "rounds", 3, "rounds of each mode")
	cmd.Flags().IntVar(&cfg.TransferMiB, "transfer-mib", 256, "size of the peer transfer timed in each round, MiB")
	return cmd
}
