package archive

import (
	"context"
	"io"

	"trellis/internal/dirtar"
)

// The directory stream and the extraction rules are package dirtar's,
// shared with the client; these names keep the worker's callers as they
// were.

// ErrUnsafe is wrapped by the refusal of an entry that could write, or
// point, outside the destination.
var ErrUnsafe = dirtar.ErrUnsafe

// ErrTooLarge is wrapped when an archive unpacks to more bytes, or more
// entries, than allowed.
var ErrTooLarge = dirtar.ErrTooLarge

// MaxEntries bounds the entries one archive may unpack to.
const MaxEntries = dirtar.MaxEntries

// bufSize is the read buffer of a compressed archive.
const bufSize = 1 << 20

// WriteTar writes the deterministic tar stream of the tree below dir to w
// (see dirtar.WriteTar).
func WriteTar(dir string, w io.Writer) error { return dirtar.WriteTar(dir, w) }

// DirDigest returns the sum of the sizes of the regular files below dir
// and "sha256:HEX" of the tree's WriteTar stream (see dirtar.DirDigest).
func DirDigest(dir string) (size int64, digest string, err error) { return dirtar.DirDigest(dir) }

// ExtractTar extracts the tar stream r into the directory dest, which must
// not exist yet (its parent must), under the same rules and limits as
// Unpack (see dirtar.ExtractTar).
func ExtractTar(ctx context.Context, r io.Reader, dest string, maxBytes int64) error {
	return dirtar.ExtractTar(ctx, r, dest, maxBytes)
}
