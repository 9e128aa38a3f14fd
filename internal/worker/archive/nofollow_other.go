//go:build !unix

package archive

// noFollow is not available here; the extractor checks with Lstat first.
const noFollow = 0
