// Package steps holds the three steps of the ML example as functions that
// take a command line and write one line of JSON: Prep, Train and Pick. The
// programs in examples/ml/cmd are thin wrappers around them, and the
// pipeline (examples/ml/pipeline) runs them by re-executing its own binary,
// so the same code runs whichever way a step is started.
//
// Each step reads and writes files by relative path, expands glob patterns
// itself (a command task may run without a shell), and returns errors
// instead of exiting.
package steps
