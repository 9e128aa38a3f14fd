package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
)

func cancelCmd() *cobra.Command {
	var mf managerFlags
	var session string
	cmd := &cobra.Command{
		Use:   "cancel HOST:PORT TASK... | --session SESSION",
		Short: "Cancel tasks by ID, or all unfinished tasks of a client session, whichever client submitted them",
		Long: `Cancel tasks by ID (as trellis status, trellis logs and the dashboard show
it), whichever client submitted them: a waiting task ends cancelled, a
running one is stopped. Their client sees them end as cancelled. Tasks
that already ended are left as they are.

With --session SESSION, every unfinished task of that client session is
cancelled (a task's page on the dashboard names its session; trellis run
prints its own when it submits to a --manager).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || len(args) == 1 && session == "" {
				return fmt.Errorf("give the manager's HOST:PORT and task IDs, or --session SESSION")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ids := make([]uint64, 0, len(args)-1)
			for _, a := range args[1:] {
				id, err := strconv.ParseUint(a, 10, 64)
				if err != nil {
					return fmt.Errorf("task %q: give a task ID, a number", a)
				}
				ids = append(ids, id)
			}
			ctx, c, done, err := mf.open(args[0])
			if err != nil {
				return err
			}
			defer done()
			if len(ids) > 0 {
				if err := c.Cancel(ctx, ids...); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "asked the manager to cancel %s\n", count(len(ids), "task", "tasks"))
			}
			if session != "" {
				n, err := c.CancelSession(ctx, session)
				if err != nil {
					return err
				}
				if n == 0 {
					return fmt.Errorf("session %s has no unfinished task at the manager: it ended, never submitted, or is not that manager's (the dashboard's task pages name sessions)", session)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "asked the manager to cancel %s of session %s\n", count(n, "unfinished task", "unfinished tasks"), session)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&session, "session", "", "cancel every unfinished task of this client session")
	mf.flags(cmd.Flags())
	return cmd
}
