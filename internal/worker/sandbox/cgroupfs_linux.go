package sandbox

import (
	"bytes"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"trellis/internal/mountinfo"
)

// This file holds what the warden and the guard do with cgroup directories
// as such: find them, kill what runs in them, remove them.

// cgroupBases returns this process's cgroup directory in the unified (v2)
// hierarchy and in the v1 hierarchies of the cpu and memory controllers,
// given the contents of /proc/self/cgroup and /proc/self/mountinfo; "" for
// a hierarchy that is not mounted where this process can see it.
func cgroupBases(selfCgroup, mounts []byte) (v2, v1cpu, v1mem string) {
	var v2path, cpuPath, memPath string
	var haveV2, haveCPU, haveMem bool
	for _, line := range strings.Split(string(selfCgroup), "\n") {
		id, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		ctrls, p, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		switch {
		case id == "0" && ctrls == "":
			v2path, haveV2 = path.Clean("/"+p), true
		case hasOption(ctrls, "cpu"):
			cpuPath, haveCPU = path.Clean("/"+p), true
		}
		if id != "0" && hasOption(ctrls, "memory") {
			memPath, haveMem = path.Clean("/"+p), true
		}
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		m, ok := mountinfo.Parse(line)
		if !ok {
			continue
		}
		switch {
		case m.FSType == "cgroup2" && haveV2 && v2 == "":
			v2 = m.Below(v2path)
		case m.FSType == "cgroup" && haveCPU && v1cpu == "" && hasOption(m.Options, "cpu"):
			v1cpu = m.Below(cpuPath)
		}
		if m.FSType == "cgroup" && haveMem && v1mem == "" && hasOption(m.Options, "memory") {
			v1mem = m.Below(memPath)
		}
	}
	return v2, v1cpu, v1mem
}

// hasOption reports whether the comma-separated list holds opt exactly
// ("cpu", not "cpuacct" or "cpuset").
func hasOption(list, opt string) bool {
	for o := range strings.SplitSeq(list, ",") {
		if o == opt {
			return true
		}
	}
	return false
}

// wardenDir matches the name of a warden's own cgroup,
// trellis-PID-START-SEQ, and returns the process that made it: its pid and
// its start time in clock ticks after boot (field 22 of /proc/PID/stat).
func wardenDir(name string) (pid int, start uint64, ok bool) {
	rest, found := strings.CutPrefix(name, "trellis-")
	if !found {
		return 0, 0, false
	}
	f := strings.Split(rest, "-")
	if len(f) != 3 {
		return 0, 0, false
	}
	p, err1 := strconv.Atoi(f[0])
	s, err2 := strconv.ParseUint(f[1], 10, 64)
	_, err3 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || p <= 0 {
		return 0, 0, false
	}
	return p, s, true
}

// startTime returns field 22 of /proc/PID/stat: when the process started,
// in clock ticks after boot. With the pid it names one process for good.
func startTime(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 { // f[0] is field 3
		return 0, false
	}
	n, err := strconv.ParseUint(f[19], 10, 64)
	return n, err == nil
}

// procsOf returns the pids listed in dir/cgroup.procs. A 0 stands for a
// process in another pid namespace.
func procsOf(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for f := range strings.FieldsSeq(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids, nil
}

// subdirs returns the cgroup directories at and below dir, deepest first.
func subdirs(dir string) []string {
	var out []string
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if e.IsDir() {
				out = append(out, subdirs(filepath.Join(dir, e.Name()))...)
			}
		}
	}
	return append(out, dir)
}

// killCgroup sends SIGKILL to every process in the cgroup dir and below it:
// in cgroup v2 with one write to cgroup.kill, in v1 to each pid listed, but
// never to the process spare (the worker, one of whose threads may be in a
// v1 cgroup). A process that forks during a v1 kill can leave a child
// behind: callers repeat until the cgroup is empty.
func killCgroup(dir string, v2 bool, spare int) {
	if v2 {
		_ = writeControl(filepath.Join(dir, "cgroup.kill"), []byte("1"))
		return
	}
	for _, d := range subdirs(dir) {
		pids, _ := procsOf(d)
		for _, pid := range pids {
			if pid > 0 && pid != spare {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// removeCgroup kills what runs in the cgroup dir and below it, and removes
// those directories, trying until they are gone or wait has passed. A
// directory already gone is not an error.
func removeCgroup(dir string, v2 bool, spare int, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	pause := 100 * time.Microsecond
	for {
		killCgroup(dir, v2, spare)
		var err error
		for _, d := range subdirs(dir) {
			if e := syscall.Rmdir(d); e != nil && !errors.Is(e, syscall.ENOENT) && err == nil {
				err = &os.PathError{Op: "remove cgroup", Path: d, Err: e}
			}
		}
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(pause) // killed processes take a moment to leave
		pause = min(2*pause, 10*time.Millisecond)
	}
}

// foreign reports whether a process of another pid namespace is in the
// cgroup dir or below it: cgroup v2 lists such a process as 0. The cgroup
// of a warden of another namespace looks abandoned, as its pid does not
// name a live process here; this spares it.
func foreign(dir string) bool {
	for _, d := range subdirs(dir) {
		pids, _ := procsOf(d)
		for _, pid := range pids {
			if pid == 0 {
				return true
			}
		}
	}
	return false
}

// sweep removes the cgroups that wardens of dead processes left in base
// (the guard of a worker killed together with it, say), with what still
// runs in them. It returns how many it removed.
func sweep(base string, v2 bool) int {
	ents, err := os.ReadDir(base)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		pid, start, ok := wardenDir(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		if s, alive := startTime(pid); alive && s == start {
			continue
		}
		dir := filepath.Join(base, e.Name())
		if v2 && foreign(dir) {
			continue
		}
		if removeCgroup(dir, v2, os.Getpid(), time.Second) == nil {
			n++
		}
	}
	return n
}

// writeControl writes data to an existing cgroup control file in one
// write. Unlike os.WriteFile it never creates the file: a directory that is
// not a cgroup gets no stray files.
func writeControl(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Close())
}
