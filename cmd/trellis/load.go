package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"trellis/internal/makeflow"
	"trellis/internal/workflow"
)

// loadWorkflow reads a workflow file: a Makeflow file when its name ends
// in .mf or .makeflow (or is Makeflow), else a YAML workflow file.
func loadWorkflow(path string) (*workflow.Workflow, error) {
	if isMakeflow(path) {
		return makeflow.Load(path)
	}
	return workflow.Load(path)
}

func isMakeflow(path string) bool {
	base := filepath.Base(path)
	switch strings.ToLower(filepath.Ext(base)) {
	case ".mf", ".makeflow":
		return true
	}
	return base == "Makeflow"
}

// writeCheck tells what a valid file would run, for run --check.
func writeCheck(w io.Writer, path string, wf *workflow.Workflow) {
	what := count(len(wf.Tasks), "task", "tasks")
	if n := len(wf.Libraries); n > 0 {
		what += ", " + count(n, "library", "libraries")
	}
	if n := len(wf.Calls); n > 0 {
		what += ", " + count(n, "call", "calls")
	}
	fmt.Fprintf(w, "%s: ok: %s\n", path, what)
}

func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
