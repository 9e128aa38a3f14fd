//go:build !linux

package sandbox

import (
	"errors"
	"syscall"
)

// waitExited is unsupported here: Run then reaps the shell before it kills
// the group.
func waitExited(int) error {
	return errors.ErrUnsupported
}

// maxRSSBytes reports no peak: ru_maxrss units differ between systems.
func maxRSSBytes(*syscall.Rusage) int64 {
	return 0
}

// clonePidfd and clonedExitWatch are Linux only: there is no pidfd; and
// the file table is never shared at a fork (unshareRefused).
func clonePidfd(*syscall.SysProcAttr) *int     { return nil }
func clonedExitWatch(*int) *exitWatch          { return nil }
func unshareRefused(*syscall.SysProcAttr) bool { return false }
func unsharingRetried(bool)                    {}

// exitWatch is Linux only.
type exitWatch struct{}

func watchExit(int) *exitWatch { return nil }
func (*exitWatch) wait() error { return errors.ErrUnsupported }
func (*exitWatch) close()      {}
