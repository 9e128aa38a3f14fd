// Command trellis is the one trellis binary: manager, worker, workflow
// runner, status and benchmarks. Subcommands parse flags and wire packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"trellis"
	"trellis/internal/bench"
	"trellis/internal/sysmon"
	"trellis/internal/worker/sandbox"
)

// longRunning names the subcommands that run managers, workers or many
// tasks: they run with the runtime's monitor kept out of its deep sleep
// (package sysmon; TRELLIS_SYSMON=off keeps Go's default).
var longRunning = map[string]bool{"manager": true, "worker": true, "run": true, "bench": true}

// exitError carries an exit status without another message.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	if len(os.Args) == 2 && os.Args[1] == bench.BenchLibraryArg {
		bench.ServeBenchLibrary() // the trellis binary as the benchmark's library
		return
	}
	if len(os.Args) == 2 && os.Args[1] == guardArg {
		os.Exit(sandbox.ServeGuard()) // the trellis binary as a worker's guard
	}
	if len(os.Args) > 1 && longRunning[os.Args[1]] {
		sysmon.Reexec()
	}
	root := &cobra.Command{
		Use:           "trellis",
		Short:         "Run standalone programs, task graphs and function calls on one pool of workers",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       trellis.Version,
	}
	root.PersistentFlags().String("log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(managerCmd(), workerCmd(), factoryCmd(), runCmd(), statusCmd(), callCmd(), benchCmd(), logsCmd(), libraryCmd(), cancelCmd(), reconcileCmd(), plotCmd())
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintf(os.Stderr, "trellis: %v\n", err)
		os.Exit(1)
	}
}

func logger(cmd *cobra.Command) *slog.Logger {
	lvl, _ := cmd.Flags().GetString("log-level")
	var l slog.Level
	if err := l.UnmarshalText([]byte(lvl)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// readSecret reads a secret file: its content without surrounding space.
func readSecret(path string) (string, error) {
	if path == "" {
		return "", errors.New("--secret-file is required: the manager, its workers and clients share a secret")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	// The secret travels in an HTTP header: one line of printable bytes.
	what := ""
	if n := strings.Count(s, "\n") + 1; n > 1 {
		what = fmt.Sprintf("%d lines", n)
	} else if i := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
		what = fmt.Sprintf("a control character (%q) at byte %d", s[i], i)
	}
	if what != "" {
		return "", fmt.Errorf("secret file %s holds %s, but a secret must be one line of printable characters (it travels in an HTTP header)", path, what)
	}
	return s, nil
}

// signalContext ends on the first SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
