package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var formats = []string{FormatTar, FormatTarGz, FormatZip}

func TestUnpackRoundTrip(t *testing.T) {
	ents := []ent{
		dir("./"),
		dir("d/"),
		file("d/a.txt", "alpha"),
		{name: "d/run.sh", kind: tar.TypeReg, mode: 0o4755, body: "#!/bin/sh\n"},
		file("implied/parent/f", "deep"),
		dir("empty/"),
		symlink("d/link", "a.txt"),
		symlink("up", "d/../d/a.txt"[5:]), // "d/a.txt"
		symlink("implied/parent/back", "../../d"),
		symlink("self", "."),
	}
	want := map[string]string{
		"d":                   "dir 755",
		"d/a.txt":             "file 644 alpha",
		"d/run.sh":            "file 755 #!/bin/sh\n",
		"implied":             "dir 755",
		"implied/parent":      "dir 755",
		"implied/parent/f":    "file 644 deep",
		"implied/parent/back": "link ../../d",
		"empty":               "dir 755",
		"d/link":              "link a.txt",
		"up":                  "link d/a.txt",
		"self":                "link .",
	}
	for _, format := range formats {
		for _, detect := range []bool{false, true} {
			name := format
			if detect {
				name += "/detected"
			}
			t.Run(name, func(t *testing.T) {
				tmp := t.TempDir()
				ar := writeFile(t, tmp, "ar", archiveOf(t, format, ents))
				dest := filepath.Join(tmp, "out")
				f := format
				if detect {
					f = ""
				}
				if err := Unpack(context.Background(), ar, f, dest, 0); err != nil {
					t.Fatalf("Unpack(%s) = %v; want nil", format, err)
				}
				if diff := cmp.Diff(want, listTree(t, dest)); diff != "" {
					t.Errorf("unpacked tree mismatch (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff([]string{"ar", "out"}, names(t, tmp)); diff != "" {
					t.Errorf("files beside dest mismatch (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestUnpackTarHardLink(t *testing.T) {
	tmp := t.TempDir()
	ar := writeFile(t, tmp, "ar", makeTar(t, []ent{file("a", "x"), hardlink("b", "a"), hardlink("./c", "./a")}))
	dest := filepath.Join(tmp, "out")
	if err := Unpack(context.Background(), ar, FormatTar, dest, 0); err != nil {
		t.Fatalf("Unpack = %v; want nil", err)
	}
	want := map[string]string{"a": "file 644 x", "b": "file 644 x", "c": "file 644 x"}
	if diff := cmp.Diff(want, listTree(t, dest)); diff != "" {
		t.Errorf("tree mismatch (-want +got):\n%s", diff)
	}
}

func TestUnpackSkipsSpecialFiles(t *testing.T) {
	tmp := t.TempDir()
	ar := writeFile(t, tmp, "ar", makeTar(t, []ent{
		{name: "fifo", kind: tar.TypeFifo, mode: 0o644},
		{name: "null", kind: tar.TypeChar, mode: 0o666},
		{name: "disk", kind: tar.TypeBlock, mode: 0o666},
		file("f", "kept"),
	}))
	dest := filepath.Join(tmp, "out")
	if err := Unpack(context.Background(), ar, FormatTar, dest, 0); err != nil {
		t.Fatalf("Unpack = %v; want nil", err)
	}
	if diff := cmp.Diff(map[string]string{"f": "file 644 kept"}, listTree(t, dest)); diff != "" {
		t.Errorf("tree mismatch (-want +got):\n%s", diff)
	}
}

func TestUnpackUnsafe(t *testing.T) {
	tests := []struct {
		name    string
		ents    []ent
		bad     string // the entry the error must name
		tarOnly bool   // hard links exist only in tar
		zipOnly bool   // tar cannot carry a NUL in a name
	}{
		{name: "absolute file", ents: []ent{file("/etc/evil", "x")}, bad: "/etc/evil"},
		{name: "parent file", ents: []ent{file("../evil", "x")}, bad: "../evil"},
		{name: "climbing file", ents: []ent{file("a/../../evil", "x")}, bad: "a/../../evil"},
		{name: "parent inside", ents: []ent{file("a/../b", "x")}, bad: "a/../b"},
		{name: "absolute dir", ents: []ent{dir("/tmp/evil/")}, bad: "/tmp/evil/"},
		{name: "parent dir", ents: []ent{dir("../evil/")}, bad: "../evil/"},
		{name: "nul in name", ents: []ent{file("a\x00b", "x")}, bad: "a\x00b", zipOnly: true},
		{name: "symlink absolute target", ents: []ent{symlink("l", "/etc/passwd")}, bad: "l"},
		{name: "symlink escaping", ents: []ent{symlink("l", "../x")}, bad: "l"},
		{name: "symlink escaping deep", ents: []ent{symlink("a/b/l", "../../../x")}, bad: "a/b/l"},
		{name: "symlink dotdot after name", ents: []ent{symlink("s", "."), symlink("l", "s/../x")}, bad: "l"},
		{name: "symlink with parent name", ents: []ent{symlink("../l", "x")}, bad: "../l"},
		{name: "write through symlink", ents: []ent{dir("sub/"), symlink("l", "sub"), file("l/f", "x")}, bad: "l/f"},
		{name: "dir through symlink", ents: []ent{symlink("l", "."), dir("l/d/")}, bad: "l/d/"},
		{name: "symlink through symlink", ents: []ent{symlink("l", "."), symlink("l/m", "x")}, bad: "l/m"},
		{name: "hard link escaping", ents: []ent{hardlink("h", "../../etc/passwd")}, bad: "h", tarOnly: true},
		{name: "hard link absolute", ents: []ent{hardlink("h", "/etc/passwd")}, bad: "h", tarOnly: true},
		{name: "hard link to later", ents: []ent{hardlink("h", "f"), file("f", "x")}, bad: "h", tarOnly: true},
		{name: "hard link to symlink", ents: []ent{symlink("s", "."), hardlink("h", "s")}, bad: "h", tarOnly: true},
		{name: "file named root", ents: []ent{file(".", "x")}, bad: "."},
		{name: "symlink named root", ents: []ent{symlink("./.", "x")}, bad: "./."},
	}
	for _, format := range formats {
		for _, tt := range tests {
			if tt.tarOnly && format == FormatZip || tt.zipOnly && format != FormatZip {
				continue
			}
			t.Run(format+"/"+tt.name, func(t *testing.T) {
				tmp := t.TempDir()
				ents := append([]ent{file("ok", "fine")}, tt.ents...)
				ar := writeFile(t, tmp, "ar", archiveOf(t, format, ents))
				err := Unpack(context.Background(), ar, format, filepath.Join(tmp, "out"), 0)
				if !errors.Is(err, ErrUnsafe) {
					t.Fatalf("Unpack = %v; want an error wrapping ErrUnsafe", err)
				}
				if q := strconv.Quote(tt.bad); !strings.Contains(err.Error(), q) {
					t.Errorf("Unpack = %q; want the entry %s named", err, q)
				}
				if diff := cmp.Diff([]string{"ar"}, names(t, tmp)); diff != "" {
					t.Errorf("files left beside the archive (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestUnpackTooLarge(t *testing.T) {
	zeros := strings.Repeat("\x00", 1<<20)
	tests := []struct {
		name string
		ents []ent
		max  int64
	}{
		{name: "one big file", ents: []ent{file("big", zeros)}, max: 1 << 19},
		{name: "many files", ents: []ent{file("a", zeros[:600]), file("b", zeros[:600])}, max: 1000},
		{name: "exactly at limit is fine", ents: []ent{file("a", zeros[:500]), file("b", zeros[:500])}, max: 1000},
	}
	for _, format := range formats {
		for _, tt := range tests {
			t.Run(format+"/"+tt.name, func(t *testing.T) {
				tmp := t.TempDir()
				ar := writeFile(t, tmp, "ar", archiveOf(t, format, tt.ents))
				err := Unpack(context.Background(), ar, format, filepath.Join(tmp, "out"), tt.max)
				if strings.HasPrefix(tt.name, "exactly") {
					if err != nil {
						t.Fatalf("Unpack = %v; want nil", err)
					}
					return
				}
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("Unpack = %v; want an error wrapping ErrTooLarge", err)
				}
				if diff := cmp.Diff([]string{"ar"}, names(t, tmp)); diff != "" {
					t.Errorf("files left beside the archive (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestUnpackZipLyingSize: a zip entry that declares a small size but
// inflates to more is stopped by the count of bytes written.
func TestUnpackZipLyingSize(t *testing.T) {
	b := makeZip(t, []ent{file("bomb", strings.Repeat("z", 4096))})
	// Patch both declared uncompressed sizes (local header offset 22, and
	// the central directory's) from 4096 to 16: the reader then fails
	// rather than writing past the limit.
	b = bytes.ReplaceAll(b, []byte{0x00, 0x10, 0x00, 0x00}, []byte{0x10, 0x00, 0x00, 0x00})
	tmp := t.TempDir()
	ar := writeFile(t, tmp, "ar", b)
	err := Unpack(context.Background(), ar, FormatZip, filepath.Join(tmp, "out"), 100)
	if err == nil {
		t.Fatalf("Unpack of a zip lying about its size = nil; want an error")
	}
	if diff := cmp.Diff([]string{"ar"}, names(t, tmp)); diff != "" {
		t.Errorf("files left beside the archive (-want +got):\n%s", diff)
	}
}

func TestDetect(t *testing.T) {
	tarBytes := makeTar(t, []ent{file("a", "x")})
	v7 := append([]byte(nil), tarBytes...)
	copy(v7[257:265], make([]byte, 8)) // drop the ustar magic and version
	sum := 0
	for i, c := range v7[:512] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int(c)
	}
	copy(v7[148:156], []byte(strconv.FormatInt(int64(sum), 8)+"\x00 "))
	tests := []struct {
		name    string
		content []byte
		want    string // "" when detection fails
	}{
		{name: "tar", content: tarBytes, want: FormatTar},
		{name: "v7 tar", content: v7, want: FormatTar},
		{name: "empty tar", content: make([]byte, 1024), want: FormatTar},
		{name: "gzip", content: gzipBytes(t, tarBytes), want: FormatTarGz},
		{name: "zip", content: makeZip(t, []ent{file("a", "x")}), want: FormatZip},
		{name: "empty zip", content: makeZip(t, nil), want: FormatZip},
		{name: "text", content: []byte("hello, world\n"), want: ""},
		{name: "empty file", content: nil, want: ""},
		{name: "bad tar checksum", content: append(bytes.Repeat([]byte("x"), 148), make([]byte, 364)...), want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Detect(bytes.NewReader(tt.content))
			if tt.want == "" {
				if !errors.Is(err, ErrFormat) {
					t.Errorf("Detect = %q, %v; want an error wrapping ErrFormat", got, err)
				}
				return
			}
			if got != tt.want || err != nil {
				t.Errorf("Detect = %q, %v; want %q, nil", got, err, tt.want)
			}
		})
	}
}

func TestUnpackErrors(t *testing.T) {
	tmp := t.TempDir()
	ar := writeFile(t, tmp, "ar", makeTar(t, []ent{file("a", "x")}))
	text := writeFile(t, tmp, "text", []byte("not an archive"))
	truncated := writeFile(t, tmp, "trunc", gzipBytes(t, makeTar(t, []ent{file("a", strings.Repeat("y", 5000))}))[:60])
	existing := filepath.Join(tmp, "exists")
	if err := os.Mkdir(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		archive string
		format  string
		dest    string
		want    error // nil: any error
	}{
		{name: "dest exists", archive: ar, dest: existing, want: fs.ErrExist},
		{name: "unknown content", archive: text, want: ErrFormat},
		{name: "unknown format name", archive: ar, format: "rar", want: ErrFormat},
		{name: "missing archive", archive: filepath.Join(tmp, "nope"), want: fs.ErrNotExist},
		{name: "truncated gzip", archive: truncated},
		{name: "tar read as zip", archive: ar, format: FormatZip},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := tt.dest
			if dest == "" {
				dest = filepath.Join(tmp, "out")
			}
			err := Unpack(context.Background(), tt.archive, tt.format, dest, 0)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Unpack = %v; want an error wrapping %v", err, tt.want)
			}
			if _, err := os.Lstat(filepath.Join(tmp, "out")); err == nil {
				t.Errorf("Unpack failed but left %s", filepath.Join(tmp, "out"))
			}
		})
	}
	if diff := cmp.Diff([]string{"ar", "exists", "text", "trunc"}, names(t, tmp)); diff != "" {
		t.Errorf("files left behind (-want +got):\n%s", diff)
	}
}

func TestUnpackCancelled(t *testing.T) {
	tmp := t.TempDir()
	ar := writeFile(t, tmp, "ar", makeTar(t, []ent{file("a", "x")}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Unpack(ctx, ar, "", filepath.Join(tmp, "out"), 0)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Unpack with a cancelled context = %v; want context.Canceled", err)
	}
	if diff := cmp.Diff([]string{"ar"}, names(t, tmp)); diff != "" {
		t.Errorf("files left behind (-want +got):\n%s", diff)
	}
}

// makeSourceTree builds a small tree with every kind of entry WriteTar
// writes, plus a FIFO it leaves out.
func makeSourceTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "src")
	for _, d := range []string{"b/c", "a", "empty"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]os.FileMode{"a/x": 0o600, "b/c/run": 0o700, "top": 0o444, "a-b": 0o644}
	for name, mode := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte("content of "+name), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../a/x", filepath.Join(root, "b/lx")); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestWriteTarDeterministic(t *testing.T) {
	root := makeSourceTree(t)
	size1, d1, err := DirDigest(root)
	if err != nil {
		t.Fatalf("DirDigest = %v", err)
	}
	var wantSize int64
	for _, n := range []string{"a/x", "b/c/run", "top", "a-b"} {
		wantSize += int64(len("content of " + n))
	}
	if size1 != wantSize {
		t.Errorf("DirDigest size = %d; want %d", size1, wantSize)
	}
	_, d2, err := DirDigest(root)
	if err != nil || d2 != d1 {
		t.Errorf("DirDigest again = %q, %v; want %q, nil", d2, err, d1)
	}

	// Times, owner write bits and group/other bits do not matter.
	when := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		os.Chtimes(p, when, when)
		if d.Type().IsRegular() {
			fi, _ := d.Info()
			os.Chmod(p, fi.Mode()&0o100|0o444)
		}
		return nil
	})
	_, d3, err := DirDigest(root)
	if err != nil || d3 != d1 {
		t.Errorf("DirDigest after touching times and modes = %q, %v; want %q, nil", d3, err, d1)
	}

	var buf bytes.Buffer
	if err := WriteTar(root, &buf); err != nil {
		t.Fatalf("WriteTar = %v", err)
	}
	var got []string
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" || !hdr.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("header %q: uid %d gid %d uname %q gname %q mtime %v; want 0 0 \"\" \"\" epoch",
				hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname, hdr.ModTime)
		}
		got = append(got, hdr.Name+" "+strconv.FormatInt(hdr.Mode, 8))
	}
	want := []string{"a/ 755", "a/x 644", "a-b 644", "b/ 755", "b/c/ 755", "b/c/run 755", "b/lx 777", "empty/ 755", "top 644"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WriteTar entries mismatch (-want +got):\n%s", diff)
	}

	// The stream extracts to a tree with the same digest.
	dest := filepath.Join(t.TempDir(), "copy")
	if err := ExtractTar(context.Background(), bytes.NewReader(buf.Bytes()), dest, 0); err != nil {
		t.Fatalf("ExtractTar = %v", err)
	}
	size4, d4, err := DirDigest(dest)
	if err != nil || d4 != d1 || size4 != size1 {
		t.Errorf("DirDigest of the extracted copy = %d, %q, %v; want %d, %q, nil", size4, d4, err, size1, d1)
	}

	// Content matters.
	if err := os.Chmod(filepath.Join(root, "top"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "top"), []byte("content of toq"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, d5, _ := DirDigest(root); d5 == d1 {
		t.Errorf("DirDigest after changing a byte = %q, the same as before", d5)
	}
}

func TestWriteTarRefusesEscapingLink(t *testing.T) {
	root := t.TempDir()
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "l")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := DirDigest(root); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), `"l"`) {
		t.Errorf("DirDigest of a tree with an absolute link = %v; want an error wrapping ErrUnsafe naming \"l\"", err)
	}
}

func TestExtractTarRefuses(t *testing.T) {
	tests := []struct {
		name string
		r    []byte
		want error
	}{
		{name: "escaping entry", r: makeTar(t, []ent{file("../x", "y")}), want: ErrUnsafe},
		{name: "too large", r: makeTar(t, []ent{file("x", "0123456789")}), want: ErrTooLarge},
		{name: "truncated", r: makeTar(t, []ent{file("x", strings.Repeat("y", 2000))})[:1024]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			err := ExtractTar(context.Background(), bytes.NewReader(tt.r), filepath.Join(tmp, "out"), 5)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("ExtractTar = %v; want an error wrapping %v", err, tt.want)
			}
			if got := names(t, tmp); len(got) != 0 {
				t.Errorf("ExtractTar failed and left %q", got)
			}
		})
	}
}
