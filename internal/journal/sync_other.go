//go:build !linux

package journal

import "os"

// fdatasync makes f's data durable (an fsync where fdatasync is missing).
func fdatasync(f *os.File) error { return f.Sync() }
