package sandbox

import (
	"io/fs"
	"path/filepath"
)

// dirSize returns the summed sizes of the regular files under dir. Symbolic
// links are not followed, and entries that vanish or cannot be read during
// the walk are skipped.
func dirSize(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			total += info.Size()
		}
		return nil
	})
	return total
}
