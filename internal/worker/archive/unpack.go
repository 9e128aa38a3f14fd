package archive

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"

	"trellis/internal/dirtar"
)

// ErrFormat is wrapped when an archive's format is unknown or unsupported.
var ErrFormat = errors.New("archive: unknown format")

// Formats Unpack accepts; "" asks it to tell by content.
const (
	FormatTar   = "tar"
	FormatTarGz = "tar.gz"
	FormatZip   = "zip"
)

// Unpack unpacks the tar, gzip'd tar or zip file archive into the directory
// dest, which must not exist yet (its parent must). format is FormatTar,
// FormatTarGz ("tgz" too), FormatZip, or "" to tell by the first bytes. The
// safety rules and limits are the package's (see doc.go); maxBytes <= 0
// means no limit on bytes.
func Unpack(ctx context.Context, archive, format, dest string, maxBytes int64) error {
	f, err := os.Open(archive)
	if err != nil {
		return fmt.Errorf("unpack %s: %w", archive, err)
	}
	defer f.Close()
	if format == "" {
		if format, err = Detect(f); err != nil {
			return fmt.Errorf("unpack %s: %w", archive, err)
		}
	}
	var fill func(x *dirtar.Extractor) error
	switch format {
	case FormatTar:
		fill = func(x *dirtar.Extractor) error { return x.Tar(f) }
	case FormatTarGz, "tgz":
		fill = func(x *dirtar.Extractor) error {
			zr, err := gzip.NewReader(bufio.NewReaderSize(f, bufSize))
			if err != nil {
				return err
			}
			return x.Tar(zr)
		}
	case FormatZip:
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("unpack %s: %w", archive, err)
		}
		fill = func(x *dirtar.Extractor) error { return unzip(x, f, fi.Size()) }
	default:
		return fmt.Errorf("unpack %s: format %q: %w", archive, format, ErrFormat)
	}
	if err := dirtar.Extract(ctx, dest, maxBytes, fill); err != nil {
		return fmt.Errorf("unpack %s: %w", archive, err)
	}
	return nil
}

// Detect tells an archive's format from its first bytes: gzip (taken to be
// a gzip'd tar), zip, or tar (the "ustar" magic, or a first header whose
// checksum holds, or the zero block of an empty tar).
func Detect(r io.ReaderAt) (string, error) {
	var head [512]byte
	n, err := r.ReadAt(head[:], 0)
	if err != nil && err != io.EOF {
		return "", err
	}
	b := head[:n]
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		return FormatTarGz, nil
	case bytes.HasPrefix(b, []byte("PK\x03\x04")), bytes.HasPrefix(b, []byte("PK\x05\x06")):
		return FormatZip, nil
	case n == 512 && (bytes.Equal(b[257:262], []byte("ustar")) || tarChecksumOK(b) || allZero(b)):
		return FormatTar, nil
	}
	return "", ErrFormat
}

// tarChecksumOK reports whether the 512-byte block b is a tar header whose
// checksum field matches its bytes (old V7 headers have no magic).
func tarChecksumOK(b []byte) bool {
	field := bytes.TrimRight(bytes.TrimLeft(b[148:156], " "), " \x00")
	want, err := strconv.ParseInt(string(field), 8, 64)
	if err != nil || len(field) == 0 {
		return false
	}
	var sum int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	return sum == want
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// maxLinkTarget bounds a symbolic link's target as stored in a zip file.
const maxLinkTarget = 4096

// unzip extracts a zip file of size bytes.
func unzip(x *dirtar.Extractor, r io.ReaderAt, size int64) error {
	zr, err := zip.NewReader(r, size)
	// With GODEBUG=zipinsecurepath=0 the reader flags names it dislikes;
	// the extractor applies its own, stricter, checks.
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return err
	}
	for _, zf := range zr.File {
		mode := zf.Mode()
		switch {
		case mode.IsDir():
			err = x.Dir(zf.Name)
		case mode&fs.ModeSymlink != 0:
			err = unzipSymlink(x, zf)
		case mode.IsRegular():
			err = unzipFile(x, zf)
		default:
			err = x.Skip(zf.Name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func unzipFile(x *dirtar.Extractor, zf *zip.File) error {
	rc, err := zf.Open()
	if err != nil {
		return fmt.Errorf("entry %q: %w", zf.Name, err)
	}
	defer rc.Close()
	// The declared size is only a hint: the extractor counts what it writes.
	size := int64(-1)
	if zf.UncompressedSize64 <= 1<<62 {
		size = int64(zf.UncompressedSize64)
	}
	return x.File(zf.Name, zf.Mode()&0o100 != 0, size, rc)
}

func unzipSymlink(x *dirtar.Extractor, zf *zip.File) error {
	rc, err := zf.Open()
	if err != nil {
		return fmt.Errorf("entry %q: %w", zf.Name, err)
	}
	defer rc.Close()
	target, err := io.ReadAll(io.LimitReader(rc, maxLinkTarget+1))
	if err != nil {
		return fmt.Errorf("entry %q: %w", zf.Name, err)
	}
	if len(target) > maxLinkTarget {
		return fmt.Errorf("entry %q: link target over %d bytes", zf.Name, maxLinkTarget)
	}
	return x.Symlink(zf.Name, string(target))
}
