//go:build !linux

package sandbox

import (
	"errors"
	"os"
)

// waitExited is unsupported here: Run then reaps the shell before it kills
// the group.
func waitExited(int) error {
	return errors.ErrUnsupported
}

// maxRSSBytes reports no peak: ru_maxrss units differ between systems.
func maxRSSBytes(*os.ProcessState) int64 {
	return 0
}

// exitWatch is Linux only.
type exitWatch struct{}

func watchExit(int) *exitWatch { return nil }
func (*exitWatch) wait() error { return errors.ErrUnsupported }
func (*exitWatch) close()      {}
