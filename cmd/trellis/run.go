package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"trellis"
	"trellis/internal/runner"
	"trellis/local"
)

func runCmd() *cobra.Command {
	var (
		workers       int
		managerAddr   string
		secretFile    string
		workerCores   float64
		workerMemory  int64
		quiet         bool
		check         bool
		txnLog        string
		logsDir       string
		workflowLabel string
		ctls          clientTLS
	)
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Run a workflow file or a Makeflow file (see docs/workflow.md, docs/makeflow.md)",
		Long: `Run a declarative YAML workflow, or a Makeflow file (FILE.mf, FILE.makeflow).
With --check, only read and validate the file and say what it would run. By default it starts an embedded manager with
--local-workers local workers; with --manager and --secret-file it uses a running
cluster. It shows progress, prints a summary, and exits with status 1 if any task
did not succeed. SIGINT or SIGTERM cancels the tasks that have not finished and
exits with status 130 or 143; a second one exits at once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			wf, err := loadWorkflow(args[0])
			if err != nil {
				return err // names file, line and column
			}
			if check {
				writeCheck(cmd.OutOrStdout(), args[0], wf)
				return nil
			}
			interactive := !quiet && term.IsTerminal(int(os.Stderr.Fd()))
			progress := runner.NewProgress(os.Stderr, interactive)
			log := logger(cmd)
			if !cmd.Flags().Changed("log-level") {
				// Progress is the user's view; the embedded cluster speaks up only for problems.
				log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			}
			label := cmp.Or(workflowLabel, wf.Name)
			opts := []trellis.Option{trellis.WithEvents(progress.Event), trellis.WithLogger(log), trellis.WithWorkflow(label)}
			ctx, interrupted, stop := interrupts(managerAddr != "")
			defer stop()
			startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			var c *trellis.Client
			if managerAddr != "" && txnLog != "" {
				return fmt.Errorf("--txn-log %s: the manager at %s writes its own: give --txn-log to trellis manager there", txnLog, managerAddr)
			}
			if managerAddr != "" {
				secret, err := readSecret(secretFile)
				if err != nil {
					return err
				}
				tlsConfig, err := ctls.config(managerAddr)
				if err != nil {
					return err
				}
				c, err = trellis.Dial(startCtx, managerAddr, append(opts, trellis.WithSecret(secret), trellis.WithTLS(tlsConfig))...)
				if sig := interrupted(); err != nil && sig != nil {
					return interruptedExit(sig, nil)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "trellis: session %s at %s (trellis cancel %s --session %s cancels its unfinished tasks; --workflow %s cancels those of every run labelled %[5]s)\n",
					c.Session(), managerAddr, managerAddr, c.Session(), label)
			} else {
				c, err = local.Start(startCtx, local.Config{Workers: workers, Cores: workerCores, MemoryMB: workerMemory, Guard: guardCommand(), TxnLog: txnLog}, opts...)
				if sig := interrupted(); err != nil && sig != nil {
					return interruptedExit(sig, nil)
				}
				if err != nil {
					return fmt.Errorf("start local cluster: %w", err)
				}
			}
			defer c.Close()
			sum, err := runner.Run(ctx, c, wf, progress)
			if sig := interrupted(); err != nil && sig != nil {
				// Closing ends the session: the manager cancels what is left.
				return interruptedExit(sig, c.Close())
			}
			if err != nil {
				return err
			}
			runner.WriteSummary(cmd.OutOrStdout(), wf, sum)
			if logsDir != "" {
				if err := runner.WriteLogs(logsDir, wf, sum); err != nil {
					return err
				}
			}
			if !sum.OK() {
				return exitError{1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&workers, "local-workers", 2, "local workers of the embedded cluster")
	f.Float64Var(&workerCores, "local-cores", 0, "cores of each local worker (default: the machine's cores divided among them)")
	f.Int64Var(&workerMemory, "local-memory", 0, "memory of each local worker in MB (default: the machine's memory divided among them)")
	f.StringVar(&managerAddr, "manager", "", "use the manager at HOST:PORT instead of an embedded cluster")
	f.StringVar(&secretFile, "secret-file", "", "secret of that manager")
	f.BoolVar(&quiet, "quiet", false, "no redrawn progress line, even on a terminal")
	f.BoolVar(&check, "check", false, "validate the file and exit, without running anything")
	f.StringVar(&logsDir, "logs", "", "write each task's and call's stdout and stderr tails to DIR/NAME.stdout and DIR/NAME.stderr")
	f.StringVar(&txnLog, "txn-log", "", "the embedded cluster appends one JSON line per state change to FILE (docs/dashboard.md)")
	f.StringVar(&workflowLabel, "workflow", "", "label the tasks with this workflow name, for trellis cancel --workflow (default: the workflow's name)")
	ctls.flags(f)
	return cmd
}
