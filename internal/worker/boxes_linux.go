package worker

import "golang.org/x/sys/unix"

// openParent opens the sandboxes' directory for openat (O_PATH), and says
// whether its file system fills directory reads (fillsReads).
func openParent(dir string) (fd int, fills bool, err error) {
	fd, err = unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, false, err
	}
	var st unix.Statfs_t
	return fd, unix.Fstatfs(fd, &st) == nil && fillsReads(int64(st.Type)), nil
}

// fillsReads reports whether the file system of type fsType (statfs's
// f_type) is one whose directory reads (getdents) stop only at the end of
// the directory or where the next entry would not fit the buffer: ext2/3/4,
// XFS, Btrfs and tmpfs, whose readdir emits entries until the kernel's
// buffer refuses one. Then a read that leaves room for the longest entry
// has reached the end, and an empty sandbox costs one read, not two (the
// second, which returns nothing, cost some 4 µs of an ext4 directory's
// hash-tree walk in the worker's profile). FUSE, for one, may return one
// chunk a read, and network file systems are left out too.
func fillsReads(fsType int64) bool {
	switch fsType {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC, unix.TMPFS_MAGIC:
		return true
	}
	return false
}
