package main

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"trellis"
)

func reconcileCmd() *cobra.Command {
	var mf managerFlags
	var done, failed, rerun bool
	cmd := &cobra.Command{
		Use:   "reconcile HOST:PORT TASK (--done | --failed | --rerun)",
		Short: "Settle an at-most-once task whose attempt was lost (state unknown)",
		Long: `An at-most-once task (effects: at-most-once) is never dispatched twice.
When its attempt is lost (its worker died, or the manager restarted and the
worker did not come back with it), nobody knows whether its effect took
place: the task waits in unknown, listed by trellis status, until you look
(at the service it calls, say) and tell the manager what happened:

  --done    it took effect: the task succeeds (a task with output files
            cannot: they are gone with the attempt)
  --failed  it did not, and must not: the task fails
  --rerun   it did not: run it again, once

The verdict is journaled (with --state) before it is applied.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[1], 10, 64)
			if err != nil {
				return fmt.Errorf("task %q: give a task ID, a number (trellis status lists the tasks in unknown)", args[1])
			}
			var v trellis.Verdict
			n := 0
			for _, f := range []struct {
				set bool
				v   trellis.Verdict
			}{{done, trellis.VerdictDone}, {failed, trellis.VerdictFailed}, {rerun, trellis.VerdictRerun}} {
				if f.set {
					v, n = f.v, n+1
				}
			}
			if n != 1 {
				return errors.New("say exactly one of --done, --failed and --rerun")
			}
			ctx, c, done, err := mf.open(args[0])
			if err != nil {
				return err
			}
			defer done()
			if err := c.Reconcile(ctx, id, v); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "task %d reconciled\n", id)
			return nil
		},
	}
	cmd.Flags().BoolVar(&done, "done", false, "its effect took place: the task succeeds")
	cmd.Flags().BoolVar(&failed, "failed", false, "its effect did not take place, and must not: the task fails")
	cmd.Flags().BoolVar(&rerun, "rerun", false, "its effect did not take place: run the task again, once")
	mf.flags(cmd.Flags())
	return cmd
}
