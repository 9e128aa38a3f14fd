package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"trellis"
)

func callCmd() *cobra.Command {
	var mf managerFlags
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "call HOST:PORT LIBRARY FUNCTION ARGS-JSON",
		Short: "Call a function of a library installed on a cluster and print its result",
		Args:  cobra.ExactArgs(4),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !json.Valid([]byte(args[3])) {
				return fmt.Errorf("arguments %q are not valid JSON", args[3])
			}
			ctx, stop := signalContext()
			defer stop()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			c, err := mf.dial(ctx, args[0])
			if timedOut(ctx, err, timeout) {
				return fmt.Errorf("connect to the manager at %s: no answer within --timeout %s", args[0], timeout)
			}
			if err != nil {
				return err
			}
			defer c.Close()
			out, err := c.Call(ctx, args[1], args[2], []byte(args[3]))
			if timedOut(ctx, err, timeout) {
				return fmt.Errorf("call %s.%s: no result within --timeout %s; the call was cancelled", args[1], args[2], timeout)
			}
			var ce *trellis.CallError
			if errors.As(err, &ce) && ce.Result.Traceback != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), ce.Result.Traceback)
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(out))
			return nil
		},
	}
	mf.flags(cmd.Flags())
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: wait)")
	return cmd
}

// timedOut reports whether err came from the end of a --timeout that was
// given: ctx, which carries it, has passed its deadline. (An RPC's error
// does not always wrap the context's.)
func timedOut(ctx context.Context, err error, timeout time.Duration) bool {
	return timeout > 0 && err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded)
}
