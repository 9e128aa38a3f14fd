package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

func cancelCmd() *cobra.Command {
	var mf managerFlags
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
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := mf.dial(ctx, args[0])
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
	mf.flags(cmd.Flags())
	return cmd
}
