package archive

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ent is one entry of a test archive.
type ent struct {
	name   string
	kind   byte // tar type flag: tar.TypeReg, TypeDir, TypeSymlink, TypeLink, TypeFifo, TypeChar
	mode   int64
	body   string // file content
	target string // link target
}

func file(name, body string) ent { return ent{name: name, kind: tar.TypeReg, mode: 0o644, body: body} }
func dir(name string) ent        { return ent{name: name, kind: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) ent {
	return ent{name: name, kind: tar.TypeSymlink, mode: 0o777, target: target}
}
func hardlink(name, target string) ent { return ent{name: name, kind: tar.TypeLink, target: target} }

// makeTar returns a tar stream of ents.
func makeTar(t testing.TB, ents []ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		hdr := &tar.Header{Name: e.name, Typeflag: e.kind, Mode: e.mode, Linkname: e.target, ModTime: time.Unix(1e9, 0), Format: tar.FormatPAX}
		if e.kind == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header %q: %v", e.name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatalf("tar body %q: %v", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// makeZip returns a zip file of ents (hard links and special files are not
// representable and are skipped).
func makeZip(t testing.TB, ents []ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range ents {
		hdr := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		content := e.body
		switch e.kind {
		case tar.TypeDir:
			hdr.SetMode(fs.ModeDir | 0o755)
			if len(e.name) == 0 || e.name[len(e.name)-1] != '/' {
				hdr.Name += "/"
			}
		case tar.TypeSymlink:
			hdr.SetMode(fs.ModeSymlink | 0o777)
			content = e.target
		case tar.TypeReg:
			hdr.SetMode(fs.FileMode(e.mode))
		default:
			continue
		}
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			t.Fatalf("zip header %q: %v", e.name, err)
		}
		if _, err := w.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// archiveOf builds ents in format.
func archiveOf(t testing.TB, format string, ents []ent) []byte {
	t.Helper()
	switch format {
	case FormatTar:
		return makeTar(t, ents)
	case FormatTarGz:
		return gzipBytes(t, makeTar(t, ents))
	case FormatZip:
		return makeZip(t, ents)
	}
	t.Fatalf("unknown format %q", format)
	return nil
}

// writeFile writes b to a new file in dir and returns its path.
func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// listTree describes the tree below root, one line per entry: "dir",
// "file MODE CONTENT" or "link TARGET".
func listTree(t testing.TB, root string) map[string]string {
	t.Helper()
	got := make(map[string]string)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			got[rel] = fmt.Sprintf("dir %o", fi.Mode().Perm())
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			got[rel] = "link " + target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			got[rel] = fmt.Sprintf("file %o %s", fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), b)
		default:
			got[rel] = "special " + fi.Mode().String()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return got
}

// names lists the names directly in dir.
func names(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}
