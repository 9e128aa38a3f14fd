// Package libhost runs one library process for the worker and sends it
// function calls, speaking the library protocol (docs/library-protocol.md)
// through the codec in sdk/go/library/wire.
//
// Contract:
//   - Start runs Spec.Command with /bin/sh -c in Spec.Dir, in a process group
//     of its own started by Spec.Warden as sandbox.Run starts a task (its
//     cgroup, CPU quota of Spec.Cores, parent-death signal and guard), with
//     the sandbox's base environment (sandbox.Environ), Spec.Env,
//     GOMAXPROCS of Spec.Cores rounded up (unless Spec.Env sets it; none
//     where no CPU quota is enforced: Spec.CPUQuota) and the
//     TRELLIS_LIBRARY_* variables, and returns once the library has
//     written its handshake line. A library that exits, writes
//     a bad line, or stays silent past StartTimeout fails to start: Start
//     kills its group, waits for everything it started, and returns an
//     *ExitError of Kind ErrStartFailed with the exit status and stderr tail.
//   - Call sends a call and waits for its result. At most Spec.Slots calls
//     are in the library at once; further calls wait in line for a slot
//     (first come, first served), bounded by their context and time limit.
//     A freed slot passes to the next waiting call without waking its
//     caller. A call abandoned because of its time limit or its context is
//     sent a cancel and keeps its slot until the library answers; if no
//     answer comes within CancelGrace the host kills the library
//     (ErrUnresponsive). Restarting is the caller's job: a Host never
//     restarts its process.
//   - The library dies for good when it exits, is killed for its memory
//     (ErrResourceExceeded), writes a malformed frame or a result for an
//     unknown call (ErrProtocol), leaves a cancelled call running
//     (ErrUnresponsive), or is stopped (ErrStopped). Then every call in
//     flight, and every later call, fails with the same *ExitError, Done is
//     closed and Err says why (nil after Stop).
//   - When the process exits the host kills the rest of its group, and its
//     cgroup, before it reaps it, so background children do not outlive it
//     and the group id is never reused under the host's kill.
//   - Stop closes stdin, waits up to its grace, kills the group, and returns
//     when every goroutine of the host has exited. It is idempotent.
//
// Goroutines: a Host owns four, started by Start and counted in one
// WaitGroup: waitLoop (waits for the exit, then settles every call; the last
// to finish, it closes Done), readLoop (reads stdout until it ends),
// writeLoop (writes queued frames, batched and flushed when the queue is
// empty; exits on Stop, a write error or Done) and superviseLoop (memory
// samples, cancel deadlines; exits when the process has exited). They all
// exit on their own once the process is gone, whether or not Stop is called;
// Stop and a failing Start wait for them.
//
// Locking: Host.mu guards the call table, the frame queue and the life-cycle
// fields; it is never held across I/O or a blocking channel operation,
// except that the group (and its cgroup: sandbox.Child.Kill) is signalled
// under it so that a reaped group id cannot be signalled. The stderr tail has its own mutex, never taken under
// Host.mu.
package libhost
