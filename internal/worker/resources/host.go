package resources

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"trellis/internal/mountinfo"
)

// hostFS reads the machine's /proc and /sys files below root, which is ""
// for the real machine and a directory tree in tests.
type hostFS struct {
	root string
}

func (h hostFS) read(name string) ([]byte, error) {
	return os.ReadFile(h.root + name)
}

// memTotalMB returns MemTotal from /proc/meminfo, in MiB.
func (h hostFS) memTotalMB() (int64, error) {
	b, err := h.read("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("resources: read memory size: %w", err)
	}
	kb, err := parseMemTotal(b)
	if err != nil {
		return 0, err
	}
	return kb >> 10, nil
}

// parseMemTotal returns the MemTotal line of /proc/meminfo, in KiB.
func parseMemTotal(b []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 2 && f[1] == "kB" {
			if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil && kb > 0 {
				return kb, nil
			}
		}
		return 0, fmt.Errorf("resources: parse /proc/meminfo line %q: want \"MemTotal: N kB\"", sc.Text())
	}
	return 0, fmt.Errorf("resources: parse /proc/meminfo: no MemTotal line")
}

// cgroupLimits holds the tightest cgroup v2 limits found; 0 means none.
type cgroupLimits struct {
	milliCores int64
	memoryMB   int64
}

// cgroupLimits reads cpu.max and memory.max in this process's cgroup v2 and
// in each of its ancestors within the cgroup2 mount, and keeps the tightest
// of each. Anything missing or unreadable counts as no limit.
func (h hostFS) cgroupLimits() cgroupLimits {
	var lim cgroupLimits
	dir, mountpoint, ok := h.cgroupDir()
	if !ok {
		return lim
	}
	for {
		if b, err := h.read(path.Join(dir, "cpu.max")); err == nil {
			if m, ok := parseCPUMax(b); ok && (lim.milliCores == 0 || m < lim.milliCores) {
				lim.milliCores = m
			}
		}
		if b, err := h.read(path.Join(dir, "memory.max")); err == nil {
			if m, ok := parseMemoryMax(b); ok && (lim.memoryMB == 0 || m < lim.memoryMB) {
				lim.memoryMB = m
			}
		}
		if dir == mountpoint {
			return lim
		}
		dir = path.Dir(dir)
	}
}

// cgroupDir returns the directory of this process's cgroup v2 and the
// cgroup2 mount point above it.
func (h hostFS) cgroupDir() (dir, mountpoint string, ok bool) {
	b, err := h.read("/proc/self/cgroup")
	if err != nil {
		return "", "", false
	}
	var cg string
	for _, line := range strings.Split(string(b), "\n") {
		if p, found := strings.CutPrefix(line, "0::"); found {
			cg, ok = path.Clean("/"+p), true
			break
		}
	}
	if !ok {
		return "", "", false // cgroup v1 only
	}
	mi, err := h.read("/proc/self/mountinfo")
	if err != nil {
		return "", "", false
	}
	for _, line := range strings.Split(string(mi), "\n") {
		m, ok := mountinfo.Parse(line)
		if !ok || m.FSType != "cgroup2" {
			continue
		}
		if dir := m.Below(cg); dir != "" {
			return dir, m.Point, true
		}
	}
	return "", "", false
}

// parseCPUMax parses cgroup v2 cpu.max ("QUOTA PERIOD" or "max PERIOD")
// into milli-cores; ok is false when there is no limit or it is malformed.
func parseCPUMax(b []byte) (milli int64, ok bool) {
	f := strings.Fields(string(b))
	if len(f) < 1 || f[0] == "max" {
		return 0, false
	}
	quota, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || quota <= 0 {
		return 0, false
	}
	period := int64(100000) // the kernel's default when only a quota is written
	if len(f) > 1 {
		if period, err = strconv.ParseInt(f[1], 10, 64); err != nil || period <= 0 {
			return 0, false
		}
	}
	return max(1, quota*1000/period), true
}

// parseMemoryMax parses cgroup v2 memory.max (bytes or "max") into MiB; ok
// is false when there is no limit or it is malformed.
func parseMemoryMax(b []byte) (mb int64, ok bool) {
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return max(1, n>>20), true
}
