package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

func cancelCmd() *cobra.Command {
	var secretFile string
	var ctls clientTLS
	cmd := &cobra.Command{
		Use:   "cancel HOST:PORT TASK...",
		Short: "Cancel tasks by ID, whichever client submitted them",
		Long: `Cancel tasks by ID (as trellis status, trellis logs and the dashboard show
it), whichever client submitted them: a waiting task ends cancelled, a
running one is stopped. Their client sees them end as cancelled. Tasks
that already ended are left as they are.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids := make([]uint64, 0, len(args)-1)
			for _, a := range args[1:] {
				id, err := strconv.ParseUint(a, 10, 64)
				if err != nil {
					return fmt.Errorf("task %q: give a task ID, a number", a)
				}
				ids = append(ids, id)
			}
			secret, err := readSecret(secretFile)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := ctls.dial(ctx, args[0], secret)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.Cancel(ctx, ids...); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "asked the manager to cancel %s\n", count(len(ids), "task", "tasks"))
			return nil
		},
	}
	cmd.Flags().StringVar(&secretFile, "secret-file", "", "file holding the shared secret (required)")
	ctls.flags(cmd.Flags())
	return cmd
}
