// Package archive unpacks archives (tar, gzip'd tar, zip) on a worker.
//
// Unpack follows the extraction contract of package dirtar, which does the
// writing: it writes only under dest, atomically; refuses unsafe entries
// with an error wrapping ErrUnsafe; writes regular files 0755 or 0644 and
// directories 0755; and stops at maxBytes or MaxEntries with ErrTooLarge.
// WriteTar, DirDigest and ExtractTar are dirtar's deterministic directory
// stream, under the names the worker has always called them by.
//
// Nothing in the package keeps state between calls; calls may run
// concurrently on distinct destinations.
package archive
