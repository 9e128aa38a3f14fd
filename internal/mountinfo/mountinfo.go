// Package mountinfo reads the lines of /proc/self/mountinfo (proc(5)),
// which say where each file system, cgroup hierarchies included, is
// mounted and which of its directories the mount shows.
package mountinfo

import (
	"path"
	"strconv"
	"strings"
)

// Mount is one line of mountinfo.
type Mount struct {
	Root    string // the directory of the file system that the mount shows
	Point   string // where it is mounted
	FSType  string // e.g. "cgroup2", or "cgroup" for a v1 hierarchy
	Options string // the super-block options, e.g. "rw,cpu" for a v1 cpu hierarchy
}

// Parse parses one line; ok is false for a malformed one.
func Parse(line string) (m Mount, ok bool) {
	pre, post, found := strings.Cut(line, " - ")
	if !found {
		return Mount{}, false
	}
	f, p := strings.Fields(pre), strings.Fields(post)
	if len(f) < 5 || len(p) < 1 {
		return Mount{}, false
	}
	m = Mount{Root: unescape(f[3]), Point: unescape(f[4]), FSType: p[0]}
	if len(p) >= 3 {
		m.Options = p[2]
	}
	return m, true
}

// Below returns where path p of the mounted file system appears under the
// mount point, or "" if the mount does not show it.
func (m Mount) Below(p string) string {
	if m.Root == "/" {
		return path.Join(m.Point, p)
	}
	if rel, ok := strings.CutPrefix(p, m.Root); ok && (rel == "" || rel[0] == '/') {
		return path.Join(m.Point, rel)
	}
	return ""
}

// unescape undoes the octal escapes of mountinfo (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
