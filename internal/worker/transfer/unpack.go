package transfer

import (
	"context"
	"fmt"

	"trellis/internal/worker/archive"
	"trellis/internal/worker/cache"
)

// Unpack makes the directory entry name in c by unpacking the cached
// archive from (format as archive.Unpack takes it; "" tells by content).
// from is pinned meanwhile. The unpacked bytes are bounded by the cache's
// capacity. A missing, malformed or unsafe archive is the source's fault
// (ErrSource): the manager may fetch it again or give up.
func Unpack(ctx context.Context, c *cache.Cache, name string, level cache.Level, from, format string) (cache.Entry, error) {
	if !c.Pin(from) {
		return cache.Entry{}, fmt.Errorf("unpack %s from %s: %w", name, from, &sourceError{cache.ErrNotFound})
	}
	defer c.Unpin(from)
	e, err := c.Put(name, level, true, -1, "", func(tmp string) error {
		return archive.Unpack(ctx, c.Path(from), format, tmp, c.Capacity())
	})
	if err != nil {
		return cache.Entry{}, fmt.Errorf("unpack %s from %s: %w", name, from, classify(ctx, err))
	}
	return e, nil
}
