//go:build !linux

package sandbox

import "errors"

// openOutputFile opens a file with no name in dir for a command's output:
// one created and unlinked at once.
func openOutputFile(dir string) (int, error) { return createUnlinked(dir) }

// punchHole is Linux only: the output files grow until their run ends.
func punchHole(int, int64) error { return errors.ErrUnsupported }
