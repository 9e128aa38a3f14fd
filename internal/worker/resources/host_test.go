package resources

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeHost writes files (path relative to the root: content) into a new
// directory and returns a hostFS rooted there.
func fakeHost(t *testing.T, files map[string]string) hostFS {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return hostFS{root: root}
}

const (
	mountCgroup2 = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
	mountHybrid  = "30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n" +
		"31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory\n"
	mountOther = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
)

func TestCgroupLimits(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  cgroupLimits
	}{
		{
			name: "limits in the leaf",
			files: map[string]string{
				"proc/self/cgroup":                  "0::/job/task\n",
				"proc/self/mountinfo":               mountOther + mountCgroup2,
				"sys/fs/cgroup/job/task/cpu.max":    "150000 100000\n",
				"sys/fs/cgroup/job/task/memory.max": "1073741824\n",
			},
			want: cgroupLimits{milliCores: 1500, memoryMB: 1024},
		},
		{
			name: "tightest ancestor wins",
			files: map[string]string{
				"proc/self/cgroup":                  "0::/job/task\n",
				"proc/self/mountinfo":               mountCgroup2,
				"sys/fs/cgroup/job/task/cpu.max":    "max 100000\n",
				"sys/fs/cgroup/job/cpu.max":         "50000 100000\n",
				"sys/fs/cgroup/cpu.max":             "400000 100000\n",
				"sys/fs/cgroup/job/task/memory.max": "4294967296\n",
				"sys/fs/cgroup/job/memory.max":      "max\n",
				"sys/fs/cgroup/memory.max":          "2147483648\n",
			},
			want: cgroupLimits{milliCores: 500, memoryMB: 2048},
		},
		{
			name: "no limits set",
			files: map[string]string{
				"proc/self/cgroup":                  "0::/job\n",
				"proc/self/mountinfo":               mountCgroup2,
				"sys/fs/cgroup/job/cpu.max":         "max 100000\n",
				"sys/fs/cgroup/job/memory.max":      "max\n",
				"sys/fs/cgroup/job/task/memory.max": "1\n",
			},
		},
		{
			name: "cgroup namespace root",
			files: map[string]string{
				"proc/self/cgroup":         "0::/\n",
				"proc/self/mountinfo":      mountCgroup2,
				"sys/fs/cgroup/cpu.max":    "200000 100000\n",
				"sys/fs/cgroup/memory.max": "536870912\n",
			},
			want: cgroupLimits{milliCores: 2000, memoryMB: 512},
		},
		{
			name: "mount of a subtree",
			files: map[string]string{
				"proc/self/cgroup":             "0::/kubepods/pod1/ctr\n",
				"proc/self/mountinfo":          "35 24 0:30 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
				"sys/fs/cgroup/ctr/cpu.max":    "25000 100000\n",
				"sys/fs/cgroup/memory.max":     "268435456\n",
				"sys/fs/cgroup/ctr/memory.max": "max\n",
				"sys/fs/cpu.max":               "1000 100000\n", // above the mount: never read
			},
			want: cgroupLimits{milliCores: 250, memoryMB: 256},
		},
		{
			name: "mount point with a space",
			files: map[string]string{
				"proc/self/cgroup":     "0::/\n",
				"proc/self/mountinfo":  `35 24 0:30 / /my\040cgroup rw - cgroup2 cgroup2 rw` + "\n",
				"my cgroup/cpu.max":    "100000 100000\n",
				"my cgroup/memory.max": "max\n",
			},
			want: cgroupLimits{milliCores: 1000},
		},
		{
			name: "hybrid layout, no v2 controllers",
			files: map[string]string{
				"proc/self/cgroup":    "4:memory:/job\n0::/job\n",
				"proc/self/mountinfo": mountOther + mountHybrid,
			},
		},
		{
			name: "cgroup v1 only",
			files: map[string]string{
				"proc/self/cgroup":    "4:memory:/job\n3:cpu:/job\n",
				"proc/self/mountinfo": mountOther,
			},
		},
		{
			name: "no cgroup2 mount",
			files: map[string]string{
				"proc/self/cgroup":    "0::/job\n",
				"proc/self/mountinfo": mountOther,
			},
		},
		{name: "nothing readable", files: map[string]string{}},
		{
			name: "malformed files",
			files: map[string]string{
				"proc/self/cgroup":             "0::/job\n",
				"proc/self/mountinfo":          mountCgroup2,
				"sys/fs/cgroup/job/cpu.max":    "lots\n",
				"sys/fs/cgroup/job/memory.max": "-5\n",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fakeHost(t, tt.files).cgroupLimits()
			if got != tt.want {
				t.Errorf("cgroupLimits() = %+v; want %+v", got, tt.want)
			}
		})
	}
}

func TestParseCPUMax(t *testing.T) {
	tests := []struct {
		in     string
		want   int64
		wantOK bool
	}{
		{in: "max 100000\n"},
		{in: "max"},
		{in: "200000 100000\n", want: 2000, wantOK: true},
		{in: "150000 100000", want: 1500, wantOK: true},
		{in: "1000 1000000", want: 1, wantOK: true},
		{in: "1 1000000", want: 1, wantOK: true},
		{in: "50000", want: 500, wantOK: true},
		{in: ""},
		{in: "x 100000"},
		{in: "100000 0"},
		{in: "-1 100000"},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.in), func(t *testing.T) {
			got, ok := parseCPUMax([]byte(tt.in))
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("parseCPUMax(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestParseMemoryMax(t *testing.T) {
	tests := []struct {
		in     string
		want   int64
		wantOK bool
	}{
		{in: "max\n"},
		{in: "1073741824\n", want: 1024, wantOK: true},
		{in: "1000", want: 1, wantOK: true},
		{in: ""},
		{in: "0"},
		{in: "1G"},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.in), func(t *testing.T) {
			got, ok := parseMemoryMax([]byte(tt.in))
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("parseMemoryMax(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestParseMemTotal(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{name: "real layout", in: "MemTotal:       16318412 kB\nMemFree:         1000 kB\n", want: 16318412},
		{name: "not first", in: "Foo: 1 kB\nMemTotal: 2048 kB\n", want: 2048},
		{name: "missing", in: "MemFree: 1 kB\n", wantErr: true},
		{name: "bad unit", in: "MemTotal: 2048 MB\n", wantErr: true},
		{name: "bad number", in: "MemTotal: lots kB\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMemTotal([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseMemTotal(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestDetectWithCgroupLimits(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no nvidia-smi
	host := fakeHost(t, map[string]string{
		"proc/meminfo":                 "MemTotal:       16777216 kB\n",
		"proc/self/cgroup":             "0::/job\n",
		"proc/self/mountinfo":          mountCgroup2,
		"sys/fs/cgroup/job/cpu.max":    "50000 100000\n",
		"sys/fs/cgroup/job/memory.max": "1073741824\n",
	})
	got, err := detect(context.Background(), host, t.TempDir())
	if err != nil {
		t.Fatalf("detect: %v", err)
	}
	want := Resources{MilliCores: min(500, int64(runtime.NumCPU())*1000), MemoryMB: 1024, DiskMB: got.DiskMB}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("detect mismatch (-want +got):\n%s", diff)
	}
	if got.DiskMB <= 0 {
		t.Errorf("DiskMB = %d; want > 0", got.DiskMB)
	}
}

func TestDetectLimitsAboveMachine(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	host := fakeHost(t, map[string]string{
		"proc/meminfo":             "MemTotal:       1048576 kB\n",
		"proc/self/cgroup":         "0::/\n",
		"proc/self/mountinfo":      mountCgroup2,
		"sys/fs/cgroup/cpu.max":    "100000000 100000\n",
		"sys/fs/cgroup/memory.max": "1099511627776\n",
	})
	got, err := detect(context.Background(), host, t.TempDir())
	if err != nil {
		t.Fatalf("detect: %v", err)
	}
	if want := int64(runtime.NumCPU()) * 1000; got.MilliCores != want {
		t.Errorf("MilliCores = %d; want the machine's %d", got.MilliCores, want)
	}
	if got.MemoryMB != 1024 {
		t.Errorf("MemoryMB = %d; want MemTotal's 1024", got.MemoryMB)
	}
}

func TestDetectWithoutMeminfo(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := detect(context.Background(), fakeHost(t, nil), t.TempDir()); err == nil {
		t.Errorf("detect without /proc/meminfo: want an error")
	}
}
