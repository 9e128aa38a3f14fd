// Package library is the Go SDK for writing trellis libraries: long-running
// processes that a worker starts once and then sends many function calls (see
// docs/library-protocol.md). A library is a main package that registers its
// functions and hands over to Main:
//
//	func main() {
//		l := library.New("math")
//		l.Setup(loadModel) // optional, runs once before the handshake
//		l.Register("add", library.JSON(func(ctx context.Context, a [2]int) (int, error) {
//			return a[0] + a[1], nil
//		}))
//		library.Main(l)
//	}
//
// Contract:
//   - Register and Setup are called before Serve, from one goroutine. Register
//     panics on a name outside [A-Za-z0-9_.-]+ or one registered twice.
//   - Serve runs the set-up function once, then writes the handshake, then
//     serves calls until its input ends. A set-up error is reported on stderr
//     and returned, and no handshake is written.
//   - Each call runs in a goroutine of its own; at most TRELLIS_LIBRARY_SLOTS
//     (default 1) run at once, and the others wait for a slot. The call's
//     context is cancelled when the worker cancels the call, when its time
//     limit passes, or when the input ends. A call the worker cancelled is
//     answered with cancelled: true whatever the function returns.
//   - A function that panics is answered with an error "panic: VALUE" and the
//     goroutine's stack as the traceback; the library keeps serving.
//   - Results are written by whichever call goroutine finishes, under a
//     mutex, into a buffered writer that is flushed when no other result is
//     waiting for the mutex, so a burst of results shares system calls.
//   - ServeIO returns only after every call goroutine it started has
//     returned: when the input ends it cancels the calls still running
//     (they are answered with cancelled: true) and waits for them. A function that ignores its context therefore delays
//     the exit; the worker kills a library that does not exit in time.
//   - Serve, on Linux, keeps the protocol on private copies of descriptors 0
//     and 1, points descriptor 1 (os.Stdout, fmt.Println) at stderr and
//     descriptor 0 at /dev/null: stray prints, and child processes that read
//     their stdin, cannot corrupt the protocol streams.
//   - Serve (ServeIO) first puts GODEBUG back as the library was given it
//     where the worker added the runtime monitor's setting to it
//     (TRELLIS_SYSMON_GODEBUG; docs/library-protocol.md): what the library
//     starts sees its own GODEBUG.
//   - The Go SDK runs every call in the library process: the "fork" mode of
//     TRELLIS_LIBRARY_MODE is accepted and treated as "direct".
package library
