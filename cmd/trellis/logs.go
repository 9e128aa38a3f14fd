package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
)

func logsCmd() *cobra.Command {
	var mf managerFlags
	cmd := &cobra.Command{
		Use:   "logs HOST:PORT TASK",
		Short: "Print the stdout and stderr tails the manager keeps of a task",
		Long: `Print the stdout and stderr tails the manager keeps of a task, by its ID
(as trellis status and the dashboard show it): stdout on stdout, stderr on
stderr, then a line on stderr saying how it ended. The manager keeps the
newest 100,000 tasks, 2 KiB of each stream.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[1], 10, 64)
			if err != nil {
				return fmt.Errorf("task %q: give a task ID, a number", args[1])
			}
			ctx, c, done, err := mf.open(args[0])
			if err != nil {
				return err
			}
			defer done()
			l, err := c.Logs(ctx, id)
			if err != nil {
				return err
			}
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			out.Write(l.Stdout)
			errOut.Write(l.Stderr)
			how := l.State
			if l.Result != "" {
				how = fmt.Sprintf("%s, exit code %d", l.Result, l.ExitCode)
				if l.Message != "" {
					how += ": " + l.Message
				}
			}
			for _, s := range []struct {
				name string
				cut  bool
			}{{"stdout", l.StdoutTruncated}, {"stderr", l.StderrTruncated}} {
				if s.cut {
					how += "; " + s.name + " is its tail"
				}
			}
			fmt.Fprintf(errOut, "trellis: task %d (%s) on %s: %s\n", l.Task, l.Name, l.Worker, how)
			return nil
		},
	}
	mf.flags(cmd.Flags())
	return cmd
}
