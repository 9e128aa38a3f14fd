package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
)

func cancelCmd() *cobra.Command {
	var mf managerFlags
	var session, workflow string
	cmd := &cobra.Command{
		Use:   "cancel HOST:PORT TASK... | --session SESSION | --workflow WORKFLOW",
		Short: "Cancel tasks by ID, or all unfinished tasks of a client session or of a workflow, whichever client submitted them",
		Long: `Cancel tasks by ID (as trellis status, trellis logs and the dashboard show
it), whichever client submitted them: a waiting task ends cancelled, a
running one is stopped. Their client sees them end as cancelled. Tasks
that already ended are left as they are.

With --session SESSION, every unfinished task of that client session is
cancelled (a task's page on the dashboard names its session; trellis run
prints its own when it submits to a --manager).

With --workflow WORKFLOW, every unfinished task labelled with that
workflow is cancelled, whichever client or session submitted it: trellis
run labels its tasks with the workflow's name (or its --workflow), Go
clients with Task.Workflow or trellis.WithWorkflow. A workflow the
manager knows no task of is an error that lists those it knows.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || len(args) == 1 && session == "" && workflow == "" {
				return fmt.Errorf("give the manager's HOST:PORT and task IDs, or --session SESSION, or --workflow WORKFLOW")
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
			// byLabel cancels the unfinished tasks of one session or
			// workflow; none is an error that says why.
			byLabel := func(what, label string, cancel func(context.Context, string) (int, error), none string) error {
				if label == "" {
					return nil
				}
				n, err := cancel(ctx, label)
				if err != nil {
					return err
				}
				if n == 0 {
					return errors.New(none)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "asked the manager to cancel %s of %s %s\n", count(n, "unfinished task", "unfinished tasks"), what, label)
				return nil
			}
			if err := byLabel("session", session, c.CancelSession, fmt.Sprintf("session %s has no unfinished task at the manager: it ended, never submitted, or is not that manager's (the dashboard's task pages name sessions)", session)); err != nil {
				return err
			}
			if err := byLabel("workflow", workflow, c.CancelWorkflow, fmt.Sprintf("workflow %q has no unfinished task at the manager: its tasks have all ended", workflow)); err != nil {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&session, "session", "", "cancel every unfinished task of this client session")
	cmd.Flags().StringVar(&workflow, "workflow", "", "cancel every unfinished task labelled with this workflow (trellis run labels its tasks with the workflow's name)")
	mf.flags(cmd.Flags())
	return cmd
}
