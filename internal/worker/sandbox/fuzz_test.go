package sandbox

import (
	"path/filepath"
	"strings"
	"testing"
)

var fuzzSeeds = []string{
	"a", "a/b", "../x", "a/../../b", "a/../b", "/etc", "a//b", "./a", "a/./b",
	"", ".", "..", "./", "x\x00y", "...", "a/", `..\x`, "a/b/../../..", "//a",
}

func FuzzValidName(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidName(name) != nil {
			return
		}
		if !filepath.IsLocal(name) {
			t.Errorf("ValidName(%q) = nil, but filepath.IsLocal is false", name)
		}
		if strings.IndexByte(name, 0) >= 0 {
			t.Errorf("ValidName(%q) = nil for a name with a NUL byte", name)
		}
		for _, elem := range strings.Split(name, "/") {
			if elem == ".." {
				t.Errorf("ValidName(%q) = nil for a name with a .. element", name)
			}
		}
		const root = "/sandbox"
		if p := filepath.Join(root, name); !strings.HasPrefix(p, root+"/") {
			t.Errorf("ValidName(%q) = nil, but it joins to %q, outside %s", name, p, root)
		}
	})
}

func FuzzConfine(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	root := f.TempDir()
	f.Fuzz(func(t *testing.T, name string) {
		got, err := Confine(root, name)
		if err != nil {
			return
		}
		if ValidName(name) != nil {
			t.Errorf("Confine(%q) = %q, nil, but ValidName refuses the name", name, got)
		}
		if !strings.HasPrefix(got, root+"/") {
			t.Errorf("Confine(%q) = %q; want a path inside %s", name, got, root)
		}
		rel, err := filepath.Rel(root, got)
		if err != nil {
			t.Fatalf("filepath.Rel(%q, %q): %v", root, got, err)
		}
		if rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
			t.Errorf("Confine(%q) = %q, which is %q relative to the root", name, got, rel)
		}
	})
}
