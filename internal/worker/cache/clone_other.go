//go:build !linux

package cache

import (
	"errors"
	"os"
)

// clone is not supported here: the caller copies the bytes.
func clone(dst, src *os.File) error { return errors.ErrUnsupported }
