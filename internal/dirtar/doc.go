// Package dirtar turns a directory tree into a deterministic tar stream,
// names the tree by that stream's digest, and extracts tar streams (and,
// through Extractor, the entries of other archives) safely. The client
// and the worker both use it: a directory travels over HTTP as its stream
// and is cached under "dir-" and the hex SHA-256 of the stream, so
// clients in other languages must produce the same bytes;
// docs/directory-digest.md specifies them.
//
// Contract of WriteTar and DirDigest:
//   - The stream lists the tree below dir, depth first, each directory's
//     entries in byte order of their names and a directory before its
//     contents, with names relative to dir ("a/", "a/b"). Directories have
//     mode 0755, regular files 0755 or 0644 (the owner execute bit decides),
//     symbolic links mode 0777 and their target; times are the Unix epoch,
//     owners 0 and unnamed. Sockets, FIFOs and devices are left out. So the
//     same tree always gives the same bytes, whatever its times, owners or
//     write bits, and ExtractTar of that stream rebuilds a tree that gives
//     the same bytes again.
//   - A symbolic link whose target would escape dir under the rule below is
//     refused with an error wrapping ErrUnsafe.
//
// Contract of Extract (and so ExtractTar):
//   - They write only under dest, which must not exist yet. Everything is
//     written into a temporary sibling of dest that is renamed to dest at the
//     end, so a failure (an unsafe entry, a limit, a corrupt archive, a
//     cancelled context) leaves nothing behind.
//   - An entry is refused, with an error that wraps ErrUnsafe and names the
//     entry, when its name is absolute, has a ".." element or a NUL byte, or
//     when its path passes through a symbolic link (entries never write
//     through links, so a link cannot redirect a later entry). A symbolic
//     link is accepted only when its target is relative and stays inside
//     dest: after "." elements are dropped, ".." may appear only as leading
//     elements, no more of them than the link's directory is deep. Every link
//     resolves inside dest under this rule, whatever order entries come in
//     and whatever other links exist. A hard link may only name a regular
//     file written earlier by the same archive. Device, FIFO and other
//     special entries are skipped.
//   - Regular files are written 0755 when the archive gives the owner the
//     execute bit, 0644 otherwise (both under the umask); directories 0755.
//     Setuid, setgid, sticky bits, owners and times are not kept.
//   - Bytes written to regular files are counted; over maxBytes (when it is
//     positive) the call fails with an error wrapping ErrTooLarge. So do more
//     than MaxEntries entries. Both guard against archive bombs.
//   - A later entry of the same name replaces an earlier one, except that a
//     directory is never replaced by something else.
//
// Nothing in the package keeps state between calls; calls may run
// concurrently on distinct destinations.
package dirtar
