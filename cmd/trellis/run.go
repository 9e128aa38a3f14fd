package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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
		noResume      bool
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
exits with status 130 or 143; a second one exits at once.
With --manager, a run that was killed (SIGKILL, a crash, a second SIGINT) is
resumed by the next run of the same file against the same manager: it takes
the killed run's session over, the tasks that finished are not run again, and
those that were running go on (see docs/recovery.md).`,
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
			var rf *runner.RunFile // with --manager: the run's state, for a run after a kill
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
				var begin runner.Start
				rf, begin, err = resumable(cmd.ErrOrStderr(), managerAddr, args[0], noResume)
				if err != nil {
					return err
				}
				defer rf.Release() // (after Finish, if the run ends: see below)
				dial := func(session string) (*trellis.Client, error) {
					return trellis.Dial(startCtx, managerAddr, append(slices.Clip(opts), trellis.WithSecret(secret), trellis.WithTLS(tlsConfig), trellis.WithSession(session))...)
				}
				c, err = dial(begin.Session)
				if errors.Is(err, trellis.ErrSessionEnded) && begin.Resume {
					fmt.Fprintf(cmd.ErrOrStderr(), "trellis: not resuming session %s of a run killed before: the manager ended it, and every task runs again in a new session (%v)\n", begin.Session, err)
					begin = runner.Start{Session: runner.NewSession()}
					if err = rf.Save(rf.State(begin.Session)); err == nil {
						c, err = dial(begin.Session)
					}
				}
				if sig := interrupted(); err != nil && sig != nil {
					return interruptedExit(sig, nil)
				}
				if err != nil {
					return err
				}
				if begin.EndOld != "" {
					if _, err := c.CancelSession(ctx, begin.EndOld); err != nil {
						fmt.Fprintf(cmd.ErrOrStderr(), "trellis: cancel the unfinished tasks of session %s: %v (the manager cancels them once their client has been away for its --client-grace)\n", begin.EndOld, err)
					}
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
			closed, closeErr := false, error(nil)
			closeClient := func() error {
				if !closed {
					closed, closeErr = true, c.Close()
				}
				return closeErr
			}
			defer func() {
				// A run that ends its session leaves nothing to resume; one
				// whose manager could not be told leaves its state, for the
				// next run to try.
				if err := closeClient(); rf != nil && err == nil {
					rf.Finish()
				}
			}()
			sum, err := runner.Run(ctx, c, wf, progress)
			if sig := interrupted(); err != nil && sig != nil {
				// Closing ends the session: the manager cancels what is left.
				return interruptedExit(sig, closeClient())
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
	f.BoolVar(&noResume, "no-resume", false, "with --manager: do not resume a run of this file that was killed; cancel its unfinished tasks and run every task again")
	f.StringVar(&workflowLabel, "workflow", "", "label the tasks with this workflow name, for trellis cancel --workflow (default: the workflow's name)")
	ctls.flags(f)
	return cmd
}

// resumable opens the state of runs of file against manager (failing if
// another run of it lives), decides whether this run takes over a killed
// run's session (runner.Decide), says so when it does not, and saves the
// session this run dials.
func resumable(w io.Writer, manager, file string, noResume bool) (*runner.RunFile, runner.Start, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, runner.Start{}, err
	}
	digest, err := runner.FileDigest(abs)
	if err != nil {
		return nil, runner.Start{}, err
	}
	dir, err := runner.StateDir()
	var rf *runner.RunFile
	var prev *runner.RunState
	if err == nil {
		rf, prev, err = runner.OpenRun(dir, manager, abs, digest)
	}
	if errors.Is(err, runner.ErrRunning) {
		return nil, runner.Start{}, err
	}
	if err == nil {
		begin := runner.Decide(prev, digest, runner.NewSession(), noResume)
		if err = rf.Save(rf.State(begin.Session)); err == nil {
			if begin.Note != "" {
				fmt.Fprintf(w, "trellis: %s\n", begin.Note)
			}
			return rf, begin, nil
		}
		rf.Release()
	}
	// Without a place for its state the run goes on, in a session of its own.
	fmt.Fprintf(w, "trellis: this run cannot be resumed if it is killed: %v\n", err)
	return nil, runner.Start{Session: runner.NewSession()}, nil
}
