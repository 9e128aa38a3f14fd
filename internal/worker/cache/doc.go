// Package cache keeps a worker's files and directories by cache name, so
// that each piece of data is brought to a worker once however many tasks
// read it, and stays there as a replica others can pull.
//
// Layout: DIR/files/NAME holds the entries, DIR/tmp/ what is being filled,
// DIR/index.json the forever-level entries. Nothing else under DIR is
// touched.
//
// Contract:
//   - An entry becomes visible (Get, Entries, Path, Link, Pin) only once it
//     is complete: Put, PutReader and Adopt fill a temporary path, check its
//     size and digest, make it read-only (files 0444, or 0555 when the owner
//     could execute it; directories stay 0755 so that they can be removed)
//     and rename it into place. A failed fill or check leaves nothing
//     behind and holds no space.
//   - One fill per name at a time: a Put of a name being filled waits for
//     that fill and returns its entry (checked against its own wanted size
//     and digest); if that fill failed, the waiter fills in turn. Put never
//     calls fill for a name already present. Put takes no context: a waiter
//     waits as long as the fill it waits for, which the filler's own
//     context bounds.
//   - Space: with a capacity, a fill reserves its expected size before it
//     starts (or as bytes arrive when the size is unknown). Reserving evicts
//     entries, least recently used first, that are Droppable, not pinned
//     and not held (Hold: the manager keeps a name, present or to come,
//     until Release or Remove), and fails with ErrDiskFull when that cannot make room;
//     nothing is evicted then. Entries from Put and PutReader start
//     droppable; entries from Adopt (a task's output, perhaps the last
//     replica of a temp file) do not, until SetDroppable says so. Evicted
//     names are reported once by Evicted.
//   - Remove and eviction unlink an entry from the cache directory only:
//     sandboxes that Link placed it into keep their own hard links.
//   - What Link hard-links, a command can still change (root ignores the
//     read-only modes; the worker's user may change them), so Link returns
//     a Stamp of each file's size, modification time and mode, and Check,
//     once the command has ended, removes an entry whose files no longer
//     match and has Evicted report it, like an eviction: no later Link
//     hands out changed bytes. Copy gives a command a private, writable
//     copy instead (a reflink where the file system has them), for a file
//     it changes in place.
//   - Forever-level entries survive Open of the same directory when they
//     still have their recorded size; everything else a previous run left
//     is removed. The index is written (atomically, best effort) whenever
//     a forever entry comes, goes or changes.
//
// A Cache is safe for concurrent use. Its one mutex guards the entry
// table; no file content is read or written while it is held (renames into
// place and out to the trash are, and Check's Lstat of the entry it drops). indexMu, which serialises index writes,
// is taken before the mutex, never after.
package cache
