package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"trellis/examples/ml/steps"
)

// The tasks and the library run this same binary with a hidden first
// argument, as `trellis bench calls` serves its library (internal/bench).
// Why not `go build` the programs of examples/ml/cmd at start: that costs
// seconds on a cold build cache and needs the Go toolchain and the source
// tree wherever the pipeline runs, while the binary already running holds
// the very same code (package steps, which those programs wrap). The
// embedded workers share this machine's file system, so the tasks name the
// binary by its absolute path; a remote cluster would need it shipped as an
// input file instead.
const (
	stepArg    = "__ml-step"    // then prep, train or pick, then the step's flags
	libraryArg = "__ml-library" // serve the digits library on stdin and stdout
)

var stepFuncs = map[string]func(args []string, stdout io.Writer) error{
	"prep":  steps.Prep,
	"train": steps.Train,
	"pick":  steps.Pick,
}

// serveHidden runs a step or the library if args ask for one, and returns
// the exit status and true; otherwise it returns false.
func serveHidden(args []string) (int, bool) {
	switch {
	case len(args) == 1 && args[0] == libraryArg:
		serveLibrary() // exits
		return 0, true
	case len(args) >= 2 && args[0] == stepArg:
		step := stepFuncs[args[1]]
		if step == nil {
			fmt.Fprintf(os.Stderr, "pipeline: no step %q\n", args[1])
			return 2, true
		}
		if err := step(args[2:], os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", args[1], err)
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// stepCommand is the shell command line that runs step with args through
// the binary at self.
func stepCommand(self, step string, args ...string) string {
	words := []string{shellQuote(self), stepArg, step}
	for _, a := range args {
		words = append(words, shellQuote(a))
	}
	return strings.Join(words, " ")
}

// shellQuote quotes s for /bin/sh, which runs task and library commands.
// Glob patterns are quoted too: the steps expand them themselves.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=+:,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
