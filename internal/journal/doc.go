// Package journal is the manager's durable log of opaque records: append,
// group commit, replay in order. The records live in append-only segment
// files in the state directory's journal/ directory (segment.go), the last
// snapshot in a file beside them, and journal.db holds the lock on the
// state directory and the format (legacy.go). The manager encodes its
// records (protobuf); the journal never looks inside them, as raft stores
// Entry.Data.
//
// Contract:
//   - One goroutine (the manager's loop) calls Append. Append never touches
//     the disk: it numbers the record (Seq 1, 2, …, gap-free) and queues it.
//   - Run is the committer: it takes everything queued, writes it in one
//     write at the end of the last segment and syncs it once (fdatasync:
//     group commit), then advances Durable and signals Synced. A record is
//     durable only once Durable() >= its Seq; nothing that depends on it
//     may be sent before (raft's Ready rule).
//   - A failed commit reports nothing durable. The batch stays queued and is
//     written again after a pause, at the same place: what a failed write
//     (or a write that landed although it reported an error) left is cut
//     off first, so no record is written twice. Err says why the journal
//     is behind until a commit succeeds again.
//   - Open refuses a journal written by a newer format (VersionError), and a
//     state directory another process holds (ErrLocked). It checks every
//     record's frame (length and CRC-32C over its Seq and data) and keeps
//     the intact prefix: from the first record that is torn, corrupt or
//     out of sequence on, records are cut off, and Recovered says how many
//     and why. A format 1 journal (one bbolt file) is converted once.
//   - Replay hands the records to the caller in order, before the first
//     Append.
//   - DiskBytes, Durable, Since, Snapshot, Err and CompactErr read atomics:
//     any goroutine (the manager's loop too) may call them without waiting
//     for a commit. DiskBytes is as of the last measure (at Open, by Run at
//     most once a second after a commit, after each Compact).
//
// Compaction (snapshot.go): Compact hands the last snapshot's records and
// the durable records after it to the caller's Fold, which returns fewer
// records that replay to the same state; they become the new snapshot
// (a file written to a temporary name, synced, renamed), and the segments
// it stands for wholly are then deleted. Replay gives the snapshot's
// records (Seq 0), then the records after it. Due says when to compact;
// Compact runs beside Append and Run.
package journal
