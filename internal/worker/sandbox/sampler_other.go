//go:build !linux

package sandbox

import "time"

// oomEvents exists on Linux only (cgroup v1 out-of-memory eventfds).
type oomEvents struct{}

func newOOMEvents() *oomEvents                   { return nil }
func (e *oomEvents) add(int) bool                { return false }
func (e *oomEvents) del(int)                     {}
func (e *oomEvents) poke()                       {}
func (e *oomEvents) wait(time.Time, []int) []int { return nil }
