package dirtar

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// WriteTar writes the deterministic tar stream of the tree below dir to w
// (see doc.go for what the stream holds).
func WriteTar(dir string, w io.Writer) error {
	_, err := writeTar(dir, w)
	return err
}

// DirDigest returns the sum of the sizes of the regular files below dir
// and "sha256:HEX" of the tree's WriteTar stream.
func DirDigest(dir string) (size int64, digest string, err error) {
	h := sha256.New()
	size, err = writeTar(dir, h)
	if err != nil {
		return 0, "", err
	}
	return size, "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// ExtractTar extracts the tar stream r into the directory dest, which must
// not exist yet (its parent must), under the same rules and limits as
// Unpack.
func ExtractTar(ctx context.Context, r io.Reader, dest string, maxBytes int64) error {
	if err := Extract(ctx, dest, maxBytes, func(x *Extractor) error { return x.Tar(r) }); err != nil {
		return fmt.Errorf("extract tar into %s: %w", dest, err)
	}
	return nil
}

// epoch is the time of every entry WriteTar writes.
var epoch = time.Unix(0, 0)

// writeOnly and readOnly hide ReaderFrom and WriterTo, so that copies go
// through the package's large buffer.
type writeOnly struct{ io.Writer }
type readOnly struct{ io.Reader }

// writeTar writes the stream and returns the sum of the regular files'
// sizes.
func writeTar(dir string, w io.Writer) (int64, error) {
	tw := tar.NewWriter(w)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			if !d.IsDir() {
				return fmt.Errorf("%s: not a directory", dir)
			}
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		hdr := &tar.Header{Name: name, ModTime: epoch}
		switch t := d.Type(); {
		case t.IsDir():
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o755
			return tw.WriteHeader(hdr)
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if ok, why := linkTargetOK(name, target); !ok {
				return unsafeEntry(name, why)
			}
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, target, 0o777
			return tw.WriteHeader(hdr)
		case t.IsRegular():
			n, err := writeTarFile(tw, hdr, p, *bp)
			total += n
			return err
		}
		return nil // sockets, FIFOs, devices
	})
	if err != nil {
		return 0, fmt.Errorf("tar %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return 0, fmt.Errorf("tar %s: %w", dir, err)
	}
	return total, nil
}

func writeTarFile(tw *tar.Writer, hdr *tar.Header, p string, buf []byte) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s: changed while being read", hdr.Name)
	}
	hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, fi.Size(), 0o644
	if fi.Mode()&0o100 != 0 {
		hdr.Mode = 0o755
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return 0, err
	}
	n, err := io.CopyBuffer(writeOnly{tw}, readOnly{f}, buf)
	if err == nil && n != hdr.Size {
		err = fmt.Errorf("%s: changed while being read", hdr.Name)
	}
	return n, err
}
