package sysmon

import (
	"os"
	"syscall"
)

// Reexec runs the process again, with the same arguments, with Setting in
// GODEBUG (plan), unless it has been already or the environment says not
// to; in the process run again, it puts GODEBUG back as it was and
// returns. It returns at once as well where the re-exec fails (the
// process goes on with the runtime's default monitor). Call it first in
// main, before anything that starts a process or a goroutine that must
// survive.
func Reexec() {
	env := plan(os.Environ())
	if env == nil {
		active = Restore()
		return
	}
	// The binary's own path, so that the process keeps its name (ps, top
	// and pkill read it from the path run); /proc/self/exe, the running
	// binary even where it was moved or replaced since, where there is
	// none.
	if self, err := os.Executable(); err == nil {
		syscall.Exec(self, os.Args, env)
	}
	syscall.Exec("/proc/self/exe", os.Args, env)
}
