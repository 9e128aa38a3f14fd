// Package wire is the byte-level codec of the trellis library protocol
// (docs/library-protocol.md), shared by the Go SDK (sdk/go/library) and the
// worker's host (internal/worker/libhost). It does no I/O of its own beyond
// the reader or writer it is given, starts no goroutines and holds no state.
//
// Contract:
//   - A frame is two big-endian uint32 lengths, a JSON object header and a
//     raw body. ReadFrame refuses a header over MaxHeader bytes, a body over
//     MaxBody bytes, a header that is not a JSON object and a stream that ends
//     inside a frame, with an error matching ErrMalformed. A stream that ends
//     exactly between frames gives io.EOF. Any other error is the reader's.
//   - ReadFrame never allocates more than it has read plus a bounded step, so
//     a forged body length cannot make it allocate 64 MiB for a short stream.
//   - Unknown header fields are ignored; WriteFrame writes only the fields the
//     protocol defines, omitting empty optional ones.
//   - The handshake line is TRELLIS-LIBRARY|1|NAME|FUNCTIONS. ParseHandshake
//     is strict: a line it accepts is exactly what FormatHandshake writes for
//     the parsed value. Errors match ErrHandshake.
//
// Neither reading nor writing is safe for concurrent use on one stream; the
// callers serialize (the SDK with a mutex, the host with one writer goroutine).
package wire
