package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrEscape is wrapped by every refusal of a name: one that is malformed,
// leaves the sandbox lexically, or passes through a symlink.
var ErrEscape = errors.New("sandbox: path escapes the sandbox")

// refusal is an error with its own message that wraps a sentinel.
type refusal struct {
	msg string
	err error
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.err }

// refuseName returns an error wrapping ErrEscape that quotes name.
func refuseName(name, why string) error {
	return &refusal{msg: fmt.Sprintf("sandbox: name %q %s", name, why), err: ErrEscape}
}

// ValidName checks name lexically, without touching the file system. It
// refuses an empty name, a name holding a NUL byte, an absolute name, a name
// with a ".." element anywhere (even one that cleaning would remove), and a
// name that denotes the sandbox itself (".", "./"). Redundant separators and
// "." elements ("a//b", "./a") are accepted. Errors wrap ErrEscape.
func ValidName(name string) error {
	switch {
	case name == "":
		return refuseName(name, "is empty")
	case strings.IndexByte(name, 0) >= 0:
		return refuseName(name, "contains a NUL byte")
	case name[0] == '/' || filepath.IsAbs(name):
		return refuseName(name, "is absolute")
	}
	for rest := name; rest != ""; {
		elem := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			elem, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		if elem == ".." {
			return refuseName(name, "escapes the sandbox")
		}
	}
	if filepath.Clean(name) == "." {
		return refuseName(name, "names the sandbox itself")
	}
	return nil
}

// Confine returns the absolute path of name inside root. It refuses what
// ValidName refuses, and a name whose path under root passes through an
// existing symlink, the last component included, so a task cannot point an
// input or output name through a link out of the sandbox. Components that do
// not exist yet are fine; root itself may be a symlink. Errors wrap
// ErrEscape and name the offending input, e.g.
// `sandbox: name "../etc/passwd" escapes the sandbox`.
func Confine(root, name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("sandbox: confine %q: %w", name, err)
	}
	rel := filepath.Clean(name)
	for i := 0; i <= len(rel); i++ {
		if i < len(rel) && rel[i] != '/' {
			continue
		}
		fi, err := os.Lstat(filepath.Join(root, rel[:i]))
		if err != nil {
			break // missing (or unreadable): nothing below it exists to check
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return "", refuseName(name, fmt.Sprintf("passes through symlink %q", rel[:i]))
		}
		if !fi.IsDir() {
			break
		}
	}
	return filepath.Join(root, rel), nil
}
