package archive

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzSeeds are entry lists that exercise every rule.
var fuzzSeeds = [][]ent{
	{dir("./"), dir("d/"), file("d/a", "alpha"), symlink("d/l", "a"), symlink("up", "d/../d")},
	{file("../evil", "x")},
	{file("/abs", "x")},
	{symlink("l", "/etc"), file("l/passwd", "x")},
	{symlink("s", "."), symlink("l", "s/../x"), file("l/f", "x")},
	{dir("sub/"), symlink("l", "sub"), file("l/f", "x")},
	{symlink("a/l", ".."), symlink("a/l/m", "../..")},
	{file("a", "x"), hardlink("b", "a"), hardlink("c", "../a")},
	{file("f", "x"), dir("f/"), file("f/g", "y")},
	{dir("d/"), file("d", "x")},
	{symlink("x", "y"), file("x", "z")},
}

// checkConfined fails the test if anything but the archive and dest
// appeared in parent, or if a symbolic link under dest resolves outside it.
func checkConfined(t *testing.T, parent, archive, dest string) {
	t.Helper()
	err := filepath.WalkDir(parent, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == parent || p == archive || p == dest {
			return nil
		}
		if !strings.HasPrefix(p, dest+string(filepath.Separator)) {
			t.Errorf("%s appeared outside the destination %s", p, dest)
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				// A dangling link: check where it would point.
				target, _ := os.Readlink(p)
				real = filepath.Join(filepath.Dir(p), target)
			}
			if real != dest && !strings.HasPrefix(real, dest+string(filepath.Separator)) {
				t.Errorf("link %s resolves to %s, outside %s", p, real, dest)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", parent, err)
	}
}

func fuzzUnpack(t *testing.T, format string, data []byte) {
	parent := t.TempDir()
	ar := filepath.Join(parent, "ar")
	if err := os.WriteFile(ar, data, 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(parent, "out")
	err := Unpack(context.Background(), ar, format, dest, 64<<10)
	if err != nil {
		if _, serr := os.Lstat(dest); serr == nil {
			t.Errorf("Unpack = %v, but it left %s", err, dest)
		}
	}
	checkConfined(t, parent, ar, dest)
}

func FuzzUnpackTar(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(makeTar(f, s))
		f.Add(gzipBytes(f, makeTar(f, s)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzUnpack(t, "", data)
	})
}

func FuzzUnpackZip(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(makeZip(f, s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzUnpack(t, FormatZip, data)
	})
}
