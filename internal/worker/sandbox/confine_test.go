package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// validNameTests are shared by TestValidName and TestConfine: lexical cases
// whose outcome does not depend on the file system.
var validNameTests = []struct {
	name    string
	in      string
	wantRel string // "" when the name is refused
}{
	{name: "plain", in: "a", wantRel: "a"},
	{name: "nested", in: "a/b/c.txt", wantRel: "a/b/c.txt"},
	{name: "leading dot slash", in: "./a", wantRel: "a"},
	{name: "double slash", in: "a//b", wantRel: "a/b"},
	{name: "dot element", in: "a/./b", wantRel: "a/b"},
	{name: "trailing slash", in: "a/", wantRel: "a"},
	{name: "three dots", in: "...", wantRel: "..."},
	{name: "dots prefix", in: "..a/b..", wantRel: "..a/b.."},
	{name: "backslash is an ordinary byte", in: `..\x`, wantRel: `..\x`},
	{name: "parent", in: "../x"},
	{name: "parent alone", in: ".."},
	{name: "parent at end", in: "a/.."},
	{name: "climbs out", in: "a/../../b"},
	{name: "parent inside", in: "a/../b"},
	{name: "absolute", in: "/etc"},
	{name: "absolute passwd", in: "/etc/passwd"},
	{name: "empty", in: ""},
	{name: "dot", in: "."},
	{name: "dot slash", in: "./"},
	{name: "dot dot slash dot", in: "./."},
	{name: "nul", in: "x\x00y"},
}

func TestValidName(t *testing.T) {
	for _, tt := range validNameTests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidName(tt.in)
			if tt.wantRel == "" {
				if !errors.Is(err, ErrEscape) {
					t.Fatalf("ValidName(%q) = %v; want an error wrapping ErrEscape", tt.in, err)
				}
				if !strings.Contains(err.Error(), strconv.Quote(tt.in)) {
					t.Errorf("ValidName(%q) = %q; want the name quoted in the message", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ValidName(%q) = %v; want nil", tt.in, err)
			}
		})
	}
}

func TestValidNameMessage(t *testing.T) {
	err := ValidName("../etc/passwd")
	want := `sandbox: name "../etc/passwd" escapes the sandbox`
	if err == nil || err.Error() != want {
		t.Errorf("ValidName(../etc/passwd) = %v; want %s", err, want)
	}
}

func TestConfineLexical(t *testing.T) {
	root := t.TempDir()
	for _, tt := range validNameTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Confine(root, tt.in)
			if tt.wantRel == "" {
				if !errors.Is(err, ErrEscape) {
					t.Fatalf("Confine(%q) = %q, %v; want an error wrapping ErrEscape", tt.in, got, err)
				}
				return
			}
			if want := filepath.Join(root, tt.wantRel); got != want || err != nil {
				t.Fatalf("Confine(%q) = %q, %v; want %q, nil", tt.in, got, err, want)
			}
		})
	}
}

// makeTree builds a sandbox with links pointing out of it and within it.
func makeTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644))
	must(os.MkdirAll(filepath.Join(root, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(root, "out.txt"), []byte("hello"), 0o644))
	must(os.WriteFile(filepath.Join(root, "sub", "out.txt"), []byte("nested!"), 0o644))
	must(os.Symlink(outside, filepath.Join(root, "linkout")))
	must(os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "secretlink")))
	must(os.Symlink("out.txt", filepath.Join(root, "link")))
	must(os.Symlink("sub", filepath.Join(root, "linkdir")))
	must(os.Symlink("nowhere", filepath.Join(root, "dangling")))
	must(os.Symlink("../out.txt", filepath.Join(root, "sub", "uplink")))
	must(syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	return root
}

func TestConfineSymlinks(t *testing.T) {
	root := makeTree(t)
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{name: "existing file", in: "out.txt"},
		{name: "existing nested file", in: "sub/out.txt"},
		{name: "missing file", in: "new.txt"},
		{name: "missing directories", in: "sub/a/b/c"},
		{name: "below a regular file", in: "out.txt/x"},
		{name: "fifo", in: "fifo"},
		{name: "link out of the sandbox", in: "linkout", wantErr: true},
		{name: "through link out of the sandbox", in: "linkout/secret", wantErr: true},
		{name: "link to a file outside", in: "secretlink", wantErr: true},
		{name: "link to a file inside", in: "link", wantErr: true},
		{name: "through link to a directory inside", in: "linkdir/out.txt", wantErr: true},
		{name: "dangling link", in: "dangling", wantErr: true},
		{name: "nested link", in: "sub/uplink", wantErr: true},
		{name: "link reached through dot elements", in: "./sub/./uplink", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Confine(root, tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrEscape) {
					t.Fatalf("Confine(%q) = %q, %v; want an error wrapping ErrEscape", tt.in, got, err)
				}
				if !strings.Contains(err.Error(), strconv.Quote(tt.in)) || !strings.Contains(err.Error(), "symlink") {
					t.Errorf("Confine(%q) error %q; want it to quote the name and mention the symlink", tt.in, err)
				}
				return
			}
			if want := filepath.Join(root, filepath.Clean(tt.in)); got != want || err != nil {
				t.Fatalf("Confine(%q) = %q, %v; want %q, nil", tt.in, got, err, want)
			}
		})
	}
}

func TestConfineRelativeRoot(t *testing.T) {
	got, err := Confine("rel/root", "a")
	if err != nil {
		t.Fatalf("Confine(rel/root, a) error: %v", err)
	}
	if !filepath.IsAbs(got) || !strings.HasSuffix(got, "/rel/root/a") {
		t.Errorf("Confine(rel/root, a) = %q; want an absolute path ending in /rel/root/a", got)
	}
}
