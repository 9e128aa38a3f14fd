//go:build !unix

package dirtar

// noFollow is not available here; the extractor checks with Lstat first.
const noFollow = 0
