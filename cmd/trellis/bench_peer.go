package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"trellis/internal/bench"
)

// benchPeerCmd is the peer transfer of `bench dag` and `bench tls` split
// into two processes, so that it can run between two hosts (see
// scripts/netns-bench peer): one serves a file as a worker's file server
// does, the other fetches it as a worker does.
func benchPeerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "peer",
		Short: "One peer transfer between two processes, for runs across hosts: serve, then fetch",
		Long: `"trellis bench peer serve" makes a file in a worker cache and serves it as
a worker's file server does (over TLS with --tls-dir, whose cluster CA signs
its certificate, made there if missing); it prints one line "URL SIZE DIGEST"
and serves until stopped. "trellis bench peer fetch URL SIZE DIGEST" fetches
it into a new worker cache as a worker does (verifying the server with
--tls-ca), checks size and digest, and prints the rate as JSON.
scripts/netns-bench peer runs both across namespace hosts with a link rate.`,
	}
	var listen, tlsDir string
	var mib int
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Serve one file as a worker's file server does; print URL SIZE DIGEST",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext()
			defer stop()
			return bench.PeerServe(ctx, listen, mib, tlsDir, cmd.OutOrStdout())
		},
	}
	serve.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "`HOST:PORT` to serve on; HOST is also the address in the URL")
	serve.Flags().IntVar(&mib, "mib", 256, "size of the file, MiB")
	serve.Flags().StringVar(&tlsDir, "tls-dir", "", "serve TLS with a certificate from the cluster CA in this directory (made if missing)")
	var caFile, linkRate string
	fetch := &cobra.Command{
		Use:   "fetch URL SIZE DIGEST",
		Short: "Fetch what `bench peer serve` printed, as a worker does; print the rate",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			size, err := strconv.ParseInt(args[1], 10, 64)
			if err != nil || size < 0 {
				return fmt.Errorf("SIZE %q: want the byte count that `bench peer serve` printed", args[1])
			}
			ctx, stop := signalContext()
			defer stop()
			res, err := bench.PeerFetch(ctx, args[0], size, args[2], caFile, linkRate)
			if err != nil {
				return err
			}
			return printJSON(cmd, res)
		},
	}
	fetch.Flags().StringVar(&caFile, "tls-ca", "", "the cluster CA (PEM) the server's certificate must verify with")
	fetch.Flags().StringVar(&linkRate, "link-rate", "", "the link rate, copied into the JSON")
	cmd.AddCommand(serve, fetch)
	return cmd
}
