// Package transfer moves cache entries between machines: a Server serves a
// worker's cache to its peers, a Fetcher pulls a file or directory into a
// cache from the manager's store, a peer, or a URL's origin, and Unpack
// makes an entry by unpacking a cached archive.
//
// Every transfer is a pull. A peer's cache is reached with GET
// /cache/NAME?token=T, where T (see Token) is issued by the manager, grants
// one name and expires; the manager's store with the shared secret as a
// bearer token, sent to no other host. A file travels as its bytes with a
// Content-Length; a directory as the deterministic tar stream of package
// archive, marked by the header "X-Trellis-Dir: 1".
//
// Contract of Fetch and Unpack:
//   - They return when the entry is in the cache, checked (size, digest,
//     declared length) and read-only, or when nothing is left of the
//     attempt. Concurrent calls for one name fetch once (cache.Put's
//     single flight).
//   - A failure is classified: errors.Is(err, ErrSource) when the source is
//     at fault (unreachable, refused, 404 or 5xx, short, stalled for
//     StallTimeout, corrupt, an unsafe or malformed archive), so that the
//     manager may try another source; otherwise it is this worker's
//     (cache.ErrDiskFull, archive.ErrTooLarge, a local file system error)
//     or the caller's (a cancelled context).
//   - Error messages name the entry and the URL without its query, so that
//     tokens do not reach logs.
//
// Contract of Server: it pins an entry while serving it, so that it is not
// evicted mid-transfer; it refuses before looking the name up, so that a
// caller without a token learns nothing about what the cache holds. Its
// counters are updated atomically and may be read at any time. Each
// request is served on the net/http goroutine that received it; Server
// starts none of its own.
package transfer
