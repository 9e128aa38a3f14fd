package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"trellis/internal/runner"
	"trellis/internal/workflow"
)

// libraryCmd groups the operator's commands on a cluster's libraries.
func libraryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "library",
		Short: "Install, list and remove a cluster's libraries",
	}
	cmd.AddCommand(libraryInstallCmd(), libraryListCmd(), libraryRemoveCmd())
	return cmd
}

func libraryInstallCmd() *cobra.Command {
	var mf managerFlags
	cmd := &cobra.Command{
		Use:   "install HOST:PORT FILE",
		Short: "Install (or replace) the libraries that a library file lists",
		Long: `Install (or replace) the libraries that a library file lists. The file is
YAML in the workflow file's syntax with a "libraries" list (and, if its
libraries read declared files, a "files" list); it needs no tasks.
docs/cli.md has an example.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			wf, err := workflow.LoadLibraries(args[1])
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := mf.dial(ctx, args[0])
			if err != nil {
				return err
			}
			defer c.Close()
			failed, err := runner.InstallLibraries(ctx, c, wf)
			if err != nil {
				return err
			}
			for _, l := range wf.Libraries {
				if err := failed[l.Name]; err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "trellis: library %s (%s:%d) not installed: %v\n", l.Name, args[1], l.Line, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "installed library %s\n", l.Name)
			}
			if len(failed) > 0 {
				return exitError{1}
			}
			return nil
		},
	}
	mf.flags(cmd.Flags())
	return cmd
}

func libraryListCmd() *cobra.Command {
	var mf managerFlags
	cmd := &cobra.Command{
		Use:   "list HOST:PORT",
		Short: "List the installed libraries, their calls and instances",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, c, done, err := mf.open(args[0])
			if err != nil {
				return err
			}
			defer done()
			s, err := c.Status(ctx)
			if err != nil {
				return err
			}
			if len(s.Libraries) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no libraries installed")
				return nil
			}
			printLibraries(cmd.OutOrStdout(), s.Libraries)
			return nil
		},
	}
	mf.flags(cmd.Flags())
	return cmd
}

func libraryRemoveCmd() *cobra.Command {
	var mf managerFlags
	cmd := &cobra.Command{
		Use:   "remove HOST:PORT NAME...",
		Short: "Remove libraries: stop their instances and fail their calls",
		Long: `Remove installed libraries by name. Their instances are stopped; their
calls, waiting or running, fail saying the library was removed, and so do
calls submitted later, until it is installed again.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, c, done, err := mf.open(args[0])
			if err != nil {
				return err
			}
			defer done()
			for _, name := range args[1:] {
				if err := c.RemoveLibrary(ctx, name); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed library %s\n", name)
			}
			return nil
		},
	}
	mf.flags(cmd.Flags())
	return cmd
}
