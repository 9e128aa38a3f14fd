//go:build !linux

package sandbox

import "os"

// outputPipe makes a pipe for one output stream of a command.
func outputPipe() (r, w *os.File, err error) { return os.Pipe() }
