package mountinfo

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Mount
		ok   bool
	}{
		{"35 24 0:30 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate",
			Mount{Root: "/", Point: "/sys/fs/cgroup/unified", FSType: "cgroup2", Options: "rw,nsdelegate"}, true},
		{"36 24 0:31 /a\\040b /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu",
			Mount{Root: "/a b", Point: "/sys/fs/cgroup/cpu", FSType: "cgroup", Options: "rw,cpu"}, true},
		{"37 24 0:32 / /x rw - tmpfs", Mount{Root: "/", Point: "/x", FSType: "tmpfs"}, true},
		{"no separator here", Mount{}, false},
		{"1 2 3 - cgroup2", Mount{}, false},
	} {
		got, ok := Parse(tc.line)
		if ok != tc.ok || !cmp.Equal(got, tc.want) {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

func TestBelow(t *testing.T) {
	for _, tc := range []struct {
		root, point, p, want string
	}{
		{"/", "/sys/fs/cgroup", "/a/b", "/sys/fs/cgroup/a/b"},
		{"/a", "/mnt", "/a/b", "/mnt/b"},
		{"/a", "/mnt", "/a", "/mnt"},
		{"/a", "/mnt", "/ab", ""},
		{"/a", "/mnt", "/c", ""},
	} {
		if got := (Mount{Root: tc.root, Point: tc.point}).Below(tc.p); got != tc.want {
			t.Errorf("Mount{%q at %q}.Below(%q) = %q, want %q", tc.root, tc.point, tc.p, got, tc.want)
		}
	}
}
