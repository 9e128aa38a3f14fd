//go:build linux || darwin

package dirtar

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// vectorTree builds the tree of the directory digest's test vector
// (docs/directory-digest.md): every kind of entry, names that need the
// USTAR prefix field and PAX records, and a FIFO that is left out.
func vectorTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "tree")
	long := "long/" + strings.Repeat("d", 60) + "/" + strings.Repeat("f", 60)
	for _, d := range []string{"a", "b/c", "empty", filepath.Dir(long), "x/é"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	files := []struct {
		name    string
		content string
		mode    os.FileMode
	}{
		{"a/x", "content of a/x\n", 0o600},
		{"a-b", "a dash b\n", 0o664},
		{"b/c/run", "#!/bin/sh\necho hi\n", 0o700},
		{"top", "read only\n", 0o444},
		{"zero", "", 0o644},
		{long, "prefix and name\n", 0o644},
		{strings.Repeat("n", 120), "a name over 100 bytes\n", 0o644},
		{"é.txt", "not ascii\n", 0o755},
		{"x/é/in", "in a non-ascii directory\n", 0o644},
	}
	for _, f := range files {
		p := filepath.Join(root, f.name)
		if err := os.WriteFile(p, []byte(f.content), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"b/lx": "../a/x", "lé": "é.txt", "self": "."} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// vectorDigest is the digest of vectorTree. It changes only if the format
// does, which breaks every cached directory and every client in another
// language: change docs/directory-digest.md and the Python reference,
// sdk/python/trellis/_dirtar.py, with it.
const vectorDigest = "sha256:09e9f59b3341736fea3cbd9050da2f98fb3eb78f5604539d1f2b52e4c8ed2b46"

func TestDigestVector(t *testing.T) {
	root := vectorTree(t)
	size, digest, err := DirDigest(root)
	if err != nil {
		t.Fatalf("DirDigest = %v", err)
	}
	if digest != vectorDigest {
		t.Errorf("DirDigest of the test vector = %q; want %q", digest, vectorDigest)
	}
	if want := int64(15 + 9 + 18 + 10 + 16 + 22 + 10 + 25); size != want {
		t.Errorf("DirDigest size = %d; want %d", size, want)
	}
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not on PATH: the reference script is not checked")
	}
	const reference = "../../sdk/python/trellis/_dirtar.py"
	out, err := exec.Command(python, reference, root).Output()
	if err != nil {
		t.Fatalf("%s: %v", reference, err)
	}
	if got, want := strings.TrimSpace(string(out)), "dir-"+strings.TrimPrefix(vectorDigest, "sha256:"); got != want {
		t.Errorf("%s = %q; want %q", reference, got, want)
	}
}
