package sandbox

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"trellis/internal/syncbuf"
)

func TestCgroupBases(t *testing.T) {
	const (
		v2mount   = "31 23 0:28 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
		tmpfs     = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
		cpuMount  = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
		acctMount = "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
		unified   = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
		memMount  = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
	)
	tests := []struct {
		name         string
		self, mounts string
		wantV2       string
		wantV1       string
		wantMem      string
	}{
		{
			name:   "pure v2, in a slice",
			self:   "0::/system.slice/trellis.service\n",
			mounts: v2mount,
			wantV2: "/sys/fs/cgroup/system.slice/trellis.service",
		},
		{
			name:    "hybrid: v1 cpu and memory, and an empty unified hierarchy",
			self:    "4:memory:/process_api/b1\n2:cpuacct:/\n1:cpu:/\n0::/\n",
			mounts:  tmpfs + cpuMount + acctMount + memMount + unified,
			wantV2:  "/sys/fs/cgroup/unified",
			wantV1:  "/sys/fs/cgroup/cpu",
			wantMem: "/sys/fs/cgroup/memory/process_api/b1",
		},
		{
			name:   "v1 memory in the process's cgroups but not mounted",
			self:   "4:memory:/process_api/b1\n1:cpu:/\n",
			mounts: tmpfs + cpuMount,
			wantV1: "/sys/fs/cgroup/cpu",
		},
		{
			name:    "v1 memory mounted with another controller",
			self:    "5:cpuset,memory:/job/7\n0::/\n",
			mounts:  tmpfs + "35 31 0:32 / /sys/fs/cgroup/cpuset,memory rw - cgroup cgroup rw,cpuset,memory\n",
			wantMem: "/sys/fs/cgroup/cpuset,memory/job/7",
		},
		{
			name:   "memory_recursiveprot is not the memory controller",
			self:   "0::/a\n",
			mounts: "31 23 0:28 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,memory_recursiveprot\n",
			wantV2: "/sys/fs/cgroup/a",
		},
		{
			name:   "v1 with cpu and cpuacct together, no v2",
			self:   "3:cpu,cpuacct:/docker/abc\n2:cpuset:/docker/abc\n",
			mounts: tmpfs + "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n" + "34 31 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n",
			wantV1: "/sys/fs/cgroup/cpu,cpuacct/docker/abc",
		},
		{
			name:   "a container's view: the mount's root is the container's cgroup",
			self:   "0::/docker/abc/sub\n",
			mounts: "31 23 0:28 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			wantV2: "/sys/fs/cgroup/sub",
		},
		{
			name:   "the cgroup is outside the mount",
			self:   "0::/elsewhere\n",
			mounts: "31 23 0:28 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
		},
		{
			name:   "cpuset and cpuacct are not cpu",
			self:   "2:cpuacct:/\n3:cpuset:/\n",
			mounts: acctMount + "34 31 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n",
		},
		{
			name:   "a mount point with a space",
			self:   "0::/a\n",
			mounts: `31 23 0:28 / /cg\040roups rw - cgroup2 cgroup2 rw` + "\n",
			wantV2: "/cg roups/a",
		},
		{name: "nothing mounted", self: "0::/\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v2, v1, mem := cgroupBases([]byte(tt.self), []byte(tt.mounts))
			if v2 != tt.wantV2 || v1 != tt.wantV1 || mem != tt.wantMem {
				t.Errorf("cgroupBases = %q, %q, %q; want %q, %q, %q", v2, v1, mem, tt.wantV2, tt.wantV1, tt.wantMem)
			}
		})
	}
}

func TestWardenDirName(t *testing.T) {
	type parsed struct {
		Pid   int
		Start uint64
		OK    bool
	}
	tests := []struct {
		name string
		want parsed
	}{
		{"trellis-123-456-1", parsed{123, 456, true}},
		{"trellis-123-456", parsed{}},
		{"trellis-123-456-1-2", parsed{}},
		{"trellis-x-456-1", parsed{}},
		{"trellis-0-456-1", parsed{}},
		{"other-123-456-1", parsed{}},
		{"c0", parsed{}},
	}
	for _, tt := range tests {
		pid, start, ok := wardenDir(tt.name)
		if diff := cmp.Diff(tt.want, parsed{pid, start, ok}); diff != "" {
			t.Errorf("wardenDir(%q) mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestQuota(t *testing.T) {
	tests := []struct {
		cores float64
		want  int64
	}{
		{0, 0},
		{-1, 0},
		{1, 100000},
		{0.5, 50000},
		{2.25, 225000},
		{0.001, 1000}, // the kernel's least
		{1e9, 1e6 * 100000},
	}
	for _, tt := range tests {
		if got := quota(tt.cores); got != tt.want {
			t.Errorf("quota(%g) = %d; want %d", tt.cores, got, tt.want)
		}
	}
}

// newWarden opens a warden with cgroups, or skips the test where the
// worker could not create one.
func newWarden(t *testing.T, cfg WardenConfig) *Warden {
	t.Helper()
	w, err := NewWarden(cfg)
	if err != nil {
		t.Fatalf("NewWarden: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if w.cg == nil {
		t.Skipf("no writable cgroup here: cpu %s", w.cpu)
	}
	return w
}

// A process that leaves its process group is still killed with its task:
// it stays in the task's cgroup.
func TestRunKillsSetsidChildInCgroup(t *testing.T) {
	w := newWarden(t, WardenConfig{})
	dir := t.TempDir()
	res, err := Run(context.Background(), Spec{Dir: dir, Command: "setsid sleep 300 & echo $! > bg.pid", Warden: w})
	if err != nil || res.Kind != Success {
		t.Fatalf("Run = %v (%s), %v; want success", res.Kind, res.Message, err)
	}
	pid := readPID(t, dir, "bg.pid")
	pollUntil(t, 5*time.Second, "the setsid child "+strconv.Itoa(pid)+" to die", func() bool { return dead(pid) })
}

// A task in a cgroup v2 cell is sampled by its cell: memory held by a
// process that left the shell's group and tree (setsid) counts against the
// task's limit, and no sample scans all of /proc.
func TestMemorySampledByCell(t *testing.T) {
	w := newWarden(t, WardenConfig{SampleMemory: true})
	if w.cg.v2 == nil {
		t.Skip("no cgroup v2 cells here")
	}
	before := sharedScans.passCount()
	dir := t.TempDir()
	res, err := Run(context.Background(), Spec{Dir: dir, Warden: w, MemoryMB: 40, PollInterval: 10 * time.Millisecond, WallTime: 20 * time.Second,
		Command: "setsid sh -c 'head -c 300M /dev/zero | tail' & sleep 30"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kind != MemoryExceeded {
		t.Fatalf("Kind = %v (%s); want %v", res.Kind, res.Message, MemoryExceeded)
	}
	if n := sharedScans.passCount() - before; n != 0 {
		t.Errorf("%d passes over /proc for a task in a cell; want 0", n)
	}
}

// watchesAdded is how many runs the sampler has watched.
func watchesAdded() int {
	samplers.mu.Lock()
	defer samplers.mu.Unlock()
	return samplers.added
}

// Where the worker may make a memory cgroup, the kernel enforces a run's
// memory limit: nothing is sampled, and going over it kills the run whole
// (a process that left the shell's group and tree included), reported as
// MemoryExceeded.
func TestMemoryLimitByKernel(t *testing.T) {
	w := newWarden(t, WardenConfig{})
	if how := w.MemoryEnforcement(); how != kernelMemory && how != kernelMemoryV1 {
		t.Skipf("no memory cgroup here: %s", how)
	}
	for _, tt := range []struct{ name, command string }{
		{"over at once", "echo $$ > bg.pid; head -c 300M /dev/zero | tail"},
		{"over after a steady start", "echo $$ > bg.pid; sleep 0.5; head -c 300M /dev/zero | tail"},
		// The rest of the run dies with the process over the limit
		// (memory.oom.group in v2; in v1 the sampler's reading of
		// memory.oom_control), not run on for 30 s.
		{"over in a process that left the group", "sleep 30 & echo $! > bg.pid; setsid sh -c '(head -c 300M /dev/zero; sleep 30) | tail' & sleep 30"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			added, scans := watchesAdded(), sharedScans.passCount()
			res, err := Run(context.Background(), Spec{Dir: dir, Command: tt.command, Warden: w, MemoryMB: 40, WallTime: 20 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			want := "killed: memory exceeded the limit of 40 MB (the kernel's out-of-memory killer ended a process of the task)"
			if res.Kind != MemoryExceeded || res.Message != want || res.ExitCode != -1 {
				t.Errorf("Run = %v (%q), exit %d; want %v (%q), exit -1", res.Kind, res.Message, res.ExitCode, MemoryExceeded, want)
			}
			if res.Duration > 10*time.Second {
				t.Errorf("Duration = %v; want the kill well before the command's own end", res.Duration)
			}
			if res.PeakMemoryMB < 40 {
				t.Errorf("PeakMemoryMB = %d; want at least the limit, 40", res.PeakMemoryMB)
			}
			// In v1 the sampler reads the cell's memory.oom_control to end
			// the rest of the run; it scans no process.
			watches := 0
			if w.MemoryEnforcement() == kernelMemoryV1 {
				watches = 1
			}
			if n := watchesAdded() - added; n != watches {
				t.Errorf("the sampler watched %d runs; want %d (the kernel enforces the limit)", n, watches)
			}
			if passes := sharedScans.passCount() - scans; passes != 0 {
				t.Errorf("%d passes over /proc; want 0", passes)
			}
			pid := readPID(t, dir, "bg.pid")
			pollUntil(t, 5*time.Second, "process "+strconv.Itoa(pid)+" to die", func() bool { return dead(pid) })
		})
	}
}

// Runs watched for their context, wall time and sampled limits need no
// goroutine each for the watching, nor for their outputs: only Run's own.
func TestRunsWatchedWithoutGoroutines(t *testing.T) {
	w := newWarden(t, WardenConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 20
	Run(ctx, Spec{Dir: t.TempDir(), Warden: w, MemoryMB: 100, Command: "true"}) // the sampler exists
	before := runtime.NumGoroutine()
	dirs := make([]string, n)
	done := make(chan Result, n)
	for i := range dirs {
		dirs[i] = t.TempDir()
		go func() { // exits when the run ends: cancel below, or its wall time
			res, _ := Run(ctx, Spec{Dir: dirs[i], Warden: w, MemoryMB: 100, DiskMB: 100, WallTime: time.Minute,
				Command: "touch started; sleep 30"})
			done <- res
		}()
	}
	for _, d := range dirs {
		pollUntil(t, 20*time.Second, "every run to start", func() bool {
			_, err := os.Stat(filepath.Join(d, "started"))
			return err == nil
		})
	}
	if got := runtime.NumGoroutine() - before; got > n+2 {
		t.Errorf("%d more goroutines with %d runs under way; want at most %d (one each, Run's; and the sampler's)", got, n, n+2)
	}
	cancel()
	for range n {
		if res := <-done; res.Kind != Cancelled || res.Message != "killed: cancelled (context canceled)" {
			t.Errorf("Run = %v (%q); want %v", res.Kind, res.Message, Cancelled)
		}
	}
}

// A cell takes each run's memory limit, or none; a run within its limit,
// after one killed for going over it in the same cell, succeeds.
func TestMemoryLimitPerRun(t *testing.T) {
	w := newWarden(t, WardenConfig{})
	file, none := "memory.max", "max"
	switch how := w.MemoryEnforcement(); how {
	case kernelMemory:
	case kernelMemoryV1:
		file, none = "memory.limit_in_bytes", "9223372036854771712"
	default:
		t.Skipf("no memory cgroup here: %s", how)
	}
	dir := t.TempDir()
	for i, tt := range []struct {
		command  string
		memoryMB int64
		want     Kind
		limit    string
	}{
		{"head -c 300M /dev/zero | tail", 40, MemoryExceeded, "41943040"},
		{"head -c 20M /dev/zero | tail | wc -c", 64, Success, "67108864"},
		{"true", 0, Success, none},
		{"head -c 20M /dev/zero | tail | wc -c", 64, Success, "67108864"},
	} {
		res, err := Run(context.Background(), Spec{Dir: dir, Command: tt.command, MemoryMB: tt.memoryMB, Warden: w})
		if err != nil || res.Kind != tt.want {
			t.Fatalf("run %d: %v (%s), %v; want %v", i, res.Kind, res.Message, err, tt.want)
		}
		if tt.want == MemoryExceeded {
			continue // its cell may be killed whole, and so not kept
		}
		w.cg.mu.Lock()
		var c *cell
		if n := len(w.cg.free); n > 0 {
			c = w.cg.free[n-1] // the cell just released
		}
		w.cg.mu.Unlock()
		if c == nil {
			t.Fatalf("run %d: no cell kept for reuse", i)
		}
		b, err := os.ReadFile(filepath.Join(c.memdir, file))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != tt.limit {
			t.Errorf("run %d with %d MB: %s holds %s; want %s", i, tt.memoryMB, file, got, tt.limit)
		}
	}
}

// cellOf returns the directory in the warden's CPU hierarchy of the cell
// that a task's /proc/self/cgroup names: its v2 cell where there is v2 (a
// task without a quota does not enter its v1 cell), else its v1 cell.
func cellOf(t *testing.T, w *Warden, selfCgroup []byte) string {
	t.Helper()
	for line := range strings.SplitSeq(string(selfCgroup), "\n") {
		_, rest, _ := strings.Cut(line, ":")
		ctrls, p, _ := strings.Cut(rest, ":")
		if p != "" && (w.cg.v2 != nil && ctrls == "" || w.cg.v2 == nil && hasOption(ctrls, "cpu")) {
			return filepath.Join(w.cg.cpu.dir, filepath.Base(p))
		}
	}
	t.Fatalf("no cell in %q", selfCgroup)
	return ""
}

// inCPUCell reports whether a task's /proc/self/cgroup puts it in cell in
// the warden's CPU hierarchy.
func inCPUCell(w *Warden, selfCgroup []byte, cell string) bool {
	for line := range strings.SplitSeq(string(selfCgroup), "\n") {
		_, rest, _ := strings.Cut(line, ":")
		ctrls, p, _ := strings.Cut(rest, ":")
		if p != "" && (w.cg.cpu.v2 && ctrls == "" || !w.cg.cpu.v2 && hasOption(ctrls, "cpu")) {
			return strings.HasSuffix(p, "/"+filepath.Base(w.cg.cpu.dir)+"/"+filepath.Base(cell))
		}
	}
	return false
}

// readQuota reads the CPU quota of a cell: cpu.max's first field in v2,
// cpu.cfs_quota_us in v1.
func readQuota(t *testing.T, w *Warden, cell string) string {
	t.Helper()
	file := "cpu.cfs_quota_us"
	if w.cg.cpu.v2 {
		file = "cpu.max"
	}
	b, err := os.ReadFile(filepath.Join(cell, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))[0]
}

// A task runs in a cell of the warden's with its quota; a cell is reused
// with the next task's quota; one that was killed whole is not reused.
func TestRunCellQuota(t *testing.T) {
	w := newWarden(t, WardenConfig{})
	if w.cg.cpu == nil {
		t.Skipf("no CPU enforcement here: %s", w.cpu)
	}
	none := "-1"
	if w.cg.cpu.v2 {
		none = "max"
	}
	dir := t.TempDir()
	var cells []string
	for i, tt := range []struct {
		command string
		cores   float64
		want    string
	}{
		{"cat /proc/self/cgroup", 0.5, "50000"},
		{"cat /proc/self/cgroup", 0, none},
		// (It waits for the setsid: else the group's kill may come first.)
		{"cat /proc/self/cgroup; rm -f up; setsid sh -c 'touch up; exec sleep 300' & while [ ! -e up ]; do sleep 0.01; done", 2, "200000"},
		{"cat /proc/self/cgroup", 1, "100000"},
	} {
		res, err := Run(context.Background(), Spec{Dir: dir, Command: tt.command, Cores: tt.cores, Warden: w})
		if err != nil || res.Kind != Success {
			t.Fatalf("run %d: %v (%s), %v; want success", i, res.Kind, res.Message, err)
		}
		cell := cellOf(t, w, res.Stdout)
		cells = append(cells, filepath.Base(cell))
		// Where the quota is in v1 and a v2 cell holds the shell, it stays
		// out of its v1 cell unless it uses more than its cores (quotaGate).
		if in := inCPUCell(w, res.Stdout, cell); tt.cores > 0 && in == gated(w) {
			t.Errorf("run %d with %g cores: in its cell %s of the CPU hierarchy %v; want %v:\n%s", i, tt.cores, cell, in, !gated(w), res.Stdout)
		}
		if i == 2 {
			continue // killed whole and removed
		}
		if got := readQuota(t, w, cell); got != tt.want {
			t.Errorf("run %d with %g cores: quota %s; want %s", i, tt.cores, got, tt.want)
		}
	}
	// c0 is reused until a leftover process makes the warden kill it whole
	// (in v2; v1 kills by pid).
	want := []string{"c0", "c0", "c0", "c0"}
	if w.cg.v2 != nil {
		want[3] = "c1"
	}
	if !cmp.Equal(cells, want) {
		t.Errorf("cells of the runs: %v; want %v", cells, want)
	}
}

// NewWarden removes what a warden of a dead process left: its cgroups and
// what still runs in them. Its own process is alive, so the leftover is
// named with its pid and another start time.
func TestNewWardenSweepsDeadWardens(t *testing.T) {
	w := newWarden(t, WardenConfig{})
	h := w.cg.v2
	if h == nil {
		h = w.cg.v1
	}
	start, _ := startTime(os.Getpid())
	dead1 := filepath.Join(h.base, fmt.Sprintf("trellis-%d-%d-1", os.Getpid(), start+1))
	if err := os.MkdirAll(filepath.Join(dead1, "c0"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeCgroup(dead1, h.v2, os.Getpid(), time.Second) })
	sleeper := exec.Command("sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { sleeper.Wait(); close(exited) }() // exits when the sleeper dies
	t.Cleanup(func() { sleeper.Process.Kill(); <-exited })
	if err := os.WriteFile(filepath.Join(dead1, "c0", "cgroup.procs"), []byte(strconv.Itoa(sleeper.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}

	newWarden(t, WardenConfig{})
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatalf("a process in a dead warden's cgroup outlived NewWarden")
	}
	if _, err := os.Stat(dead1); !os.IsNotExist(err) {
		t.Errorf("the dead warden's cgroup %s is still there: %v", dead1, err)
	}
	for _, d := range []string{w.cg.v2.dirOrEmpty(), w.cg.v1.dirOrEmpty()} {
		if _, err := os.Stat(d); d != "" && err != nil {
			t.Errorf("the live warden's cgroup %s is gone: %v", d, err)
		}
	}
}

func (h *hierarchy) dirOrEmpty() string {
	if h == nil {
		return ""
	}
	return h.dir
}

// Close leaves no cgroup of the warden's behind.
func TestWardenCloseRemovesCgroups(t *testing.T) {
	w, err := NewWarden(WardenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if w.cg == nil {
		w.Close()
		t.Skipf("no writable cgroup here: cpu %s", w.cpu)
	}
	v2, v1 := w.cg.dirs()
	dir := t.TempDir()
	for _, cmd := range []string{"true", "sleep 300 &"} {
		if _, err := Run(context.Background(), Spec{Dir: dir, Command: cmd, Warden: w, Cores: 1, MemoryMB: 64}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, d := range append(v1, v2) {
		if _, err := os.Stat(d); d != "" && !os.IsNotExist(err) {
			t.Errorf("cgroup %s is still there after Close: %v", d, err)
		}
	}
}

// startSleeper starts sleep 300 leading a process group of its own; it is
// killed when the test ends. The channel is closed when it has exited.
func startSleeper(t *testing.T) (int, <-chan struct{}) {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }() // exits when the sleeper dies
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	return cmd.Process.Pid, exited
}

// At end of input the guard kills the groups it was told of and not told
// are gone, and everything in the cgroups it was given.
func TestGuardLoop(t *testing.T) {
	live, liveExited := startSleeper(t)
	gone, goneExited := startSleeper(t)
	lines := fmt.Sprintf("pid %d\n+%d\n+%d\n-%d\n", os.Getpid(), live, gone, gone)

	var cellExited <-chan struct{}
	var dir string
	if w, _ := NewWarden(WardenConfig{}); w != nil && w.cg != nil {
		defer w.Close()
		h := w.cg.v2
		if h == nil {
			h = w.cg.v1
		}
		dir = h.dir
		c, _, err := w.cg.cell(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		pid, exited := startSleeper(t) // a group the guard does not know of, in a cell
		cellDir := c.v2dir
		if cellDir == "" {
			cellDir = c.v1dir
		}
		if err := os.WriteFile(filepath.Join(cellDir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			t.Fatal(err)
		}
		c.closeFiles()
		cellExited = exited
		lines += "v" + map[bool]string{true: "2", false: "1"}[h.v2] + " " + strconv.Quote(dir) + "\n"
	}

	var log strings.Builder
	if err := guardLoop(strings.NewReader(lines+"garbage\n"), &log); err != nil {
		t.Errorf("guardLoop: %v", err)
	}
	for what, c := range map[string]<-chan struct{}{"the live group": liveExited, "the process in the cell": cellExited} {
		if c == nil {
			continue
		}
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			t.Errorf("%s outlived the guard's end", what)
		}
	}
	select {
	case <-goneExited:
		t.Errorf("the guard killed a group it was told is gone")
	default:
	}
	if dir != "" {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("the guard left cgroup %s: %v", dir, err)
		}
	}
	if want := fmt.Sprintf("trellis guard: worker %d is gone; killed what it left running (1 process groups)\n", os.Getpid()); log.String() != want {
		t.Errorf("guard said %q; want %q", log.String(), want)
	}
}

// TestHelperGuard is not a test: with SANDBOX_HELPER_GUARD=1 it is the
// guard process.
func TestHelperGuard(t *testing.T) {
	if os.Getenv("SANDBOX_HELPER_GUARD") != "1" {
		t.Skip("helper process")
	}
	os.Exit(ServeGuard())
}

// The guard runs as a process of its own and acts when its pipe closes
// while the worker's processes still run, as it does when the worker is
// killed.
func TestGuardProcess(t *testing.T) {
	t.Setenv("SANDBOX_HELPER_GUARD", "1")
	w, err := NewWarden(WardenConfig{Guard: []string{os.Args[0], "-test.run=^TestHelperGuard$"}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cmd := exec.Command("/bin/sh", "-c", "sleep 300 & sleep 300")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	c, err := w.Start(cmd, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.guard.close(); err != nil { // what the guard sees when the worker dies
		t.Errorf("guard: %v", err)
	}
	exited := make(chan struct{})
	go func() { c.WaitExited(); close(exited) }() // exits when the shell dies
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		c.Kill()
		t.Errorf("the guard left the shell running")
	}
	c.Kill()
	c.Wait()
	_, procs := w.Enforcement()
	if !strings.Contains(procs, "guard pid ") {
		t.Errorf("Enforcement says %q; want it to name the guard", procs)
	}
	if w.cg != nil && !strings.Contains(procs, "parent-death signal where no cgroup holds a process from its start") {
		t.Errorf("Enforcement says %q; want it to say where the parent-death signal is used", procs)
	}
}

// Where a cgroup cannot be used, the warden says why and leaves nothing
// behind; its tasks still run.
func TestCgroupFallbacks(t *testing.T) {
	notCgroup := t.TempDir() // writable, but not a cgroup
	tests := []struct {
		name    string
		open    func() error
		wantErr string
	}{
		{"v2 not writable", func() error { _, _, err := openV2("/proc/self", "trellis-1-2-3"); return err }, "cgroup v2 /proc/self not writable: "},
		{"v2 not a cgroup", func() error { _, _, err := openV2(notCgroup, "trellis-1-2-3"); return err }, "cgroup v2 without cgroup.kill (Linux 5.14 or later needed)"},
		{"v1 not writable", func() error { _, err := openV1("/proc/self", "trellis-1-2-3"); return err }, "cgroup v1 cpu /proc/self not writable: "},
		{"v1 not a cgroup", func() error { _, err := openV1(notCgroup, "trellis-1-2-3"); return err }, "cgroup v1 cpu " + notCgroup + ": open " + notCgroup + "/tasks: no such file or directory"},
		{"v1 memory not writable", func() error { _, err := openV1Memory("/proc/self", "trellis-1-2-3"); return err }, "cgroup v1 memory /proc/self not writable: "},
		{"v1 memory not a cgroup", func() error { _, err := openV1Memory(notCgroup, "trellis-1-2-3"); return err }, "cgroup v1 memory has no memory.memsw.limit_in_bytes (swap accounting is off)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.open()
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("open: %v; want an error starting %q", err, tt.wantErr)
			}
			if ents, _ := os.ReadDir(notCgroup); len(ents) != 0 {
				t.Errorf("left %v behind", ents)
			}
		})
	}

	w := &Warden{log: slog.New(slog.DiscardHandler), cpu: "not enforced (no writable cgroup)"}
	res, err := Run(context.Background(), Spec{Dir: t.TempDir(), Command: "echo ok", Cores: 1, Warden: w})
	if err != nil || res.Kind != Success || string(res.Stdout) != "ok\n" {
		t.Errorf("Run without cgroups = %v (%s) %q, %v; want success, %q", res.Kind, res.Message, res.Stdout, err, "ok\n")
	}
	if cpu, procs := w.Enforcement(); cpu != "not enforced (no writable cgroup)" || procs != "process groups, parent-death signal, no guard" {
		t.Errorf("Enforcement() = %q, %q", cpu, procs)
	}
}

// parseMemoryEvents reads memory.events' oom and oom_kill counters, and a
// run is over its limit only where both rose: a host-wide out-of-memory
// kill raises oom_kill alone.
func TestMemoryEvents(t *testing.T) {
	for _, tt := range []struct {
		text string
		want memEvents
		ok   bool
	}{
		{"low 0\nhigh 0\nmax 12\noom 1\noom_kill 3\noom_group_kill 1\n", memEvents{oom: 1, oomKill: 3}, true},
		{"oom_kill 2\noom 0", memEvents{oom: 0, oomKill: 2}, true},
		{"low 0\nhigh 0\nmax 0\noom_kill 3\n", memEvents{}, false}, // no oom
		{"low 0\noom 1\n", memEvents{}, false},                     // no oom_kill
		{"oom x\noom_kill 1\n", memEvents{}, false},
		{"", memEvents{}, false},
	} {
		if got, ok := parseMemoryEvents([]byte(tt.text)); got != tt.want || ok != tt.ok {
			t.Errorf("parseMemoryEvents(%q) = %+v, %v; want %+v, %v", tt.text, got, ok, tt.want, tt.ok)
		}
	}
	before := memEvents{oom: 2, oomKill: 5}
	for _, tt := range []struct {
		name  string
		after memEvents
		want  bool
	}{
		{"nothing happened", memEvents{oom: 2, oomKill: 5}, false},
		{"the cell's limit killed", memEvents{oom: 3, oomKill: 7}, true},
		{"oom_kill rose but oom did not: a host-wide kill", memEvents{oom: 2, oomKill: 6}, false},
		{"the limit was hit but nothing was killed", memEvents{oom: 3, oomKill: 5}, false},
	} {
		if got := tt.after.overLimit(before); got != tt.want {
			t.Errorf("%s: %+v.overLimit(%+v) = %v; want %v", tt.name, tt.after, before, got, tt.want)
		}
	}
}

// A cell reads its memory.events when a limited run starts and compares
// at its end; without the file, or without a reading at the start, no run
// is over its limit.
func TestCellOverLimit(t *testing.T) {
	file := filepath.Join(t.TempDir(), "memory.events")
	write := func(oom, kills int) {
		t.Helper()
		text := fmt.Sprintf("low 0\nhigh 0\nmax 12\noom %d\noom_kill %d\noom_group_kill 1\n", oom, kills)
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(0, 0)
	fd, err := syscall.Open(file, syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	c := &cell{oomFD: fd}
	var over []bool
	for _, counts := range [][4]int{ // oom, oom_kill at the start; at the end
		{0, 0, 0, 0},
		{0, 0, 1, 3}, // killed over its limit
		{1, 3, 1, 4}, // a host-wide kill
		{1, 4, 2, 5}, // killed over its limit
	} {
		write(counts[0], counts[1])
		c.events, c.eventsOK = c.memEvents()
		write(counts[2], counts[3])
		over = append(over, c.overLimit())
	}
	if want := []bool{false, true, false, true}; !cmp.Equal(over, want) {
		t.Errorf("overLimit() = %v; want %v", over, want)
	}
	c.eventsOK = false // memory.events could not be read at the start
	if c.overLimit() {
		t.Error("overLimit() with no reading at the start = true; want false")
	}
	if (&cell{oomFD: -1, eventsOK: true}).overLimit() {
		t.Error("overLimit() without memory.events = true; want false")
	}
}

// A cell's memory is limited by the kernel only where it may not swap
// (memory.swap.max set to 0), its processes are killed together
// (memory.oom.group) and its kills are counted (memory.events); else it
// is sampled (memdir ""). The cell's directory here is a plain one with
// the files made by hand: this machine may have no memory controller.
func TestCellOpenMemory(t *testing.T) {
	for _, tt := range []struct {
		name   string
		files  []string
		kernel bool
	}{
		{"all files", []string{"memory.oom.group", "memory.swap.max", "memory.events"}, true},
		{"swap file absent: sample", []string{"memory.oom.group", "memory.events"}, false},
		{"no memory.oom.group: sample", []string{"memory.swap.max", "memory.events"}, false},
		{"no memory.events: sample", []string{"memory.oom.group", "memory.swap.max"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c := &cell{v2dir: dir, oomFD: -1}
			c.openMemory()
			if c.oomFD >= 0 {
				defer syscall.Close(c.oomFD)
			}
			if got := c.memdir != ""; got != tt.kernel {
				t.Fatalf("memdir = %q; want the kernel to limit memory: %v", c.memdir, tt.kernel)
			}
			if !tt.kernel {
				return
			}
			for file, want := range map[string]string{"memory.swap.max": "0", "memory.oom.group": "1"} {
				if b, _ := os.ReadFile(filepath.Join(dir, file)); string(b) != want {
					t.Errorf("%s = %q; want %q", file, b, want)
				}
			}
		})
	}
}

// Sandboxes on tmpfs make a warden sample memory that the kernel would
// limit (the files a task writes there would be charged to it), and say
// so; elsewhere nothing changes.
func TestSandboxesOnTmpfs(t *testing.T) {
	kernel := func() *Warden { return &Warden{cg: &cgroups{mem: &hierarchy{v2: true}}} }
	w := kernel()
	w.sandboxesIn("/work/sandboxes", false)
	if got := w.MemoryEnforcement(); got != kernelMemory || w.sampleMemory {
		t.Errorf("not on tmpfs: MemoryEnforcement() = %q, sampled %v; want %q, false", got, w.sampleMemory, kernelMemory)
	}
	w = kernel()
	w.sandboxesIn("/tmp/sandboxes", true)
	want := "sampled (the sandboxes in /tmp/sandboxes are on tmpfs, whose files would count against a task's memory limit in its cgroup)"
	if got := w.MemoryEnforcement(); got != want || !w.sampleMemory {
		t.Errorf("on tmpfs: MemoryEnforcement() = %q, sampled %v; want %q, true", got, w.sampleMemory, want)
	}
	w = &Warden{cg: &cgroups{}} // sampled anyway: nothing to say about tmpfs
	w.sandboxesIn("/tmp/sandboxes", true)
	if got := w.MemoryEnforcement(); got != "sampled" {
		t.Errorf("sampled and on tmpfs: MemoryEnforcement() = %q; want %q", got, "sampled")
	}
	if onTmpfs("/proc") {
		t.Error("onTmpfs(/proc) = true; want false")
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for line := range strings.Lines(string(mi)) {
		// mount ID, parent ID, major:minor, root, mount point, …, "-", type
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == "/dev/shm" && strings.Contains(line, " - tmpfs ") && !onTmpfs("/dev/shm") {
			t.Error("onTmpfs(/dev/shm) = false; mountinfo says it is tmpfs")
		}
	}
}

// With a guard, a task's shell enters its cell's v1 cpu cgroup itself,
// before anything of the task's runs: no thread of the worker enters the
// cell, none is kept per cell to fork from inside it, and what the task's
// errors say is what they say without a cell (the same line numbers).
func TestShellJoinsItsCell(t *testing.T) {
	joinAtStart(t)
	w := newGuardedV1Warden(t)
	dir := t.TempDir()
	res, err := Run(context.Background(), Spec{Dir: dir, Command: "cat /proc/self/cgroup", Cores: 0.5, Warden: w})
	if err != nil || res.Kind != Success {
		t.Fatalf("Run: %v (%s), %v; want success", res.Kind, res.Message, err)
	}
	cell := cellOf(t, w, res.Stdout)
	if !inCPUCell(w, res.Stdout, cell) {
		t.Errorf("the task ran outside its cell %s:\n%s", cell, res.Stdout)
	}
	if got := readQuota(t, w, cell); got != "50000" {
		t.Errorf("quota %s; want 50000", got)
	}
	if b, err := os.ReadFile(filepath.Join(cell, "tasks")); err != nil || len(b) != 0 {
		t.Errorf("threads in the idle cell %s: %q, %v; want none (no launcher thread)", cell, b, err)
	}
	for _, c := range w.cg.free {
		if c.launcher != nil {
			t.Errorf("cell %s has a launcher thread; want none", c.v1dir)
		}
	}
	for _, tt := range []struct{ command, want string }{
		{"nosuch1", "exit status 127: command not found (sh: 1: nosuch1: not found)"},
		{"true\nnosuch2", "exit status 127: command not found (sh: 2: nosuch2: not found)"},
		{"true; nosuch3 'a\nb'\nnosuch4", "exit status 127: command not found (sh: 1: nosuch3: not found)"},
	} {
		for _, cores := range []float64{0.5, 0} {
			res, err := Run(context.Background(), Spec{Dir: dir, Command: tt.command, Cores: cores, Warden: w})
			if err != nil || res.Message != tt.want {
				t.Errorf("Run(%q, %g cores) = %q, %v; want %q", tt.command, cores, res.Message, err, tt.want)
			}
		}
	}
}

// A shell that cannot enter its cell runs nothing of the task's, and Run
// says why.
func TestShellCannotJoinItsCell(t *testing.T) {
	joinAtStart(t)
	w := newGuardedV1Warden(t)
	dir := t.TempDir()
	if _, err := Run(context.Background(), Spec{Dir: dir, Command: "true", Cores: 0.5, Warden: w}); err != nil {
		t.Fatal(err)
	}
	c := w.cg.free[0]
	if err := os.Remove(c.v1dir); err != nil { // kept for reuse, empty
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Spec{Dir: dir, Command: "touch ran", Cores: 0.5, Warden: w})
	if want := joinFailedText + c.v1dir; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Run = %v (%s), %v; want an error saying %q", res.Kind, res.Message, err, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Errorf("the task's command ran outside its cell")
	}
}

// With a guard, a task's shell that joins its cell has no parent-death
// signal (it is forked from any thread) and the guard is not told of its
// process group; the guard still kills it, and what it started, when the
// worker is gone: with the cells.
func TestGuardKillsJoinedShell(t *testing.T) {
	joinAtStart(t)
	w := newGuardedV1Warden(t)
	dir := t.TempDir()
	c, err := w.start(nil, testShell(t, dir, "setsid sleep 300 & echo $! > bg.pid; sleep 300"), 0.5, 0)
	if err != nil {
		t.Fatal(err)
	}
	if sig := procAttr(c.cell, c.contained).Pdeathsig; sig != 0 || !c.contained {
		t.Errorf("Pdeathsig = %v, contained %v; want none, true for a shell in its cell", sig, c.contained)
	}
	pollUntil(t, 5*time.Second, "the background process to start", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "bg.pid"))
		return len(b) > 0 && b[len(b)-1] == '\n'
	})
	bg := readPID(t, dir, "bg.pid")
	if err := w.guard.close(); err != nil { // what the guard sees when the worker dies
		t.Errorf("guard: %v", err)
	}
	pollUntil(t, 5*time.Second, "the shell and its setsid child to die", func() bool {
		return c.WaitExited() == nil && dead(bg)
	})
	c.Kill()
	c.Wait()

	// Once the guard is gone (killed by the out-of-memory killer, say),
	// the worker notices, says so in its log, and a task gets its
	// parent-death signal again.
	var log syncbuf.Buffer
	w = newGuardedV1Warden(t, slog.New(slog.NewTextHandler(&log, nil)))
	if !w.guard.alive() {
		t.Fatal("a new guard is not alive")
	}
	if err := w.guard.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, 5*time.Second, "the worker to notice its guard's death", func() bool { return !w.guard.alive() })
	if want := "the guard process exited while the worker runs"; !strings.Contains(log.String(), want) {
		t.Errorf("the worker's log says %q; want it to say %q", log.String(), want)
	}
	c, err = w.start(nil, testShell(t, dir, "true"), 0.5, 0)
	if err != nil {
		t.Fatal(err)
	}
	if sig := procAttr(c.cell, c.contained).Pdeathsig; sig != syscall.SIGKILL || c.contained {
		t.Errorf("without a guard: Pdeathsig = %v, contained %v; want SIGKILL, false", sig, c.contained)
	}
	c.WaitExited()
	c.Kill()
	c.Wait()
}

// In cgroup v1 the task's shell enters its memory cell itself, and no
// thread of the worker ever does: an out-of-memory kill in a cell leaves
// the worker alone, though it holds far more memory than the task (were
// the worker charged to the cell, the kernel would pick it).
func TestCellOOMSparesWorker(t *testing.T) {
	w := newWarden(t, WardenConfig{})
	if how := w.MemoryEnforcement(); how != kernelMemoryV1 {
		t.Skipf("no cgroup v1 memory limits here: %s", how)
	}
	ballast := make([]byte, 256<<20)
	for i := 0; i < len(ballast); i += 4096 {
		ballast[i] = 1
	}
	dir := t.TempDir()
	for i, cores := range []float64{1, 0, 1} {
		res, err := Run(context.Background(), Spec{Dir: dir, Command: "cat /proc/self/cgroup > cg; head -c 300M /dev/zero | tail", Cores: cores, MemoryMB: 40, Warden: w})
		if err != nil || res.Kind != MemoryExceeded {
			t.Fatalf("run %d: %v (%s), %v; want %v", i, res.Kind, res.Message, err, MemoryExceeded)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "cg"))
		if !strings.Contains(string(b), ":memory:") || !strings.Contains(string(b), filepath.Base(w.cg.mem.dir)+"/c") {
			t.Errorf("run %d ran outside its memory cell:\n%s", i, b)
		}
	}
	res, err := Run(context.Background(), Spec{Dir: dir, Command: "true\nnosuch", MemoryMB: 40, Warden: w})
	if want := "exit status 127: command not found (sh: 2: nosuch: not found)"; err != nil || res.Message != want {
		t.Errorf("Run = %q, %v; want %q (the line numbers of the command)", res.Message, err, want)
	}
	runtime.KeepAlive(ballast)
	tasks, _ := filepath.Glob("/proc/self/task/*/cgroup")
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for line := range strings.Lines(string(b)) {
			if strings.Contains(line, ":memory:") && strings.Contains(line, filepath.Base(w.cg.mem.dir)) {
				t.Errorf("a thread of the worker is in a memory cell: %s: %s", f, line)
			}
		}
	}
}

// newGuardedV1Warden is newWarden with a guard process (TestHelperGuard),
// skipping the test where CPU quotas are not in cgroup v1.
func newGuardedV1Warden(t *testing.T, log ...*slog.Logger) *Warden {
	t.Helper()
	t.Setenv("SANDBOX_HELPER_GUARD", "1")
	cfg := WardenConfig{Guard: []string{os.Args[0], "-test.run=^TestHelperGuard$"}}
	if len(log) > 0 {
		cfg.Logger = log[0]
	}
	w := newWarden(t, cfg)
	if w.cg.v1 == nil || w.cg.cpu != w.cg.v1 {
		t.Skip("no cgroup v1 cpu hierarchy here")
	}
	return w
}

// In cgroup v1 the page cache of the files a task writes is charged to its
// cell, so the most the cell held sits at its limit whenever a task writes
// more than its limit, and stays there for the cell's next run. A task
// whose process an out-of-memory killer ends for a shortage above its cell
// (here the limit the test sets on the warden's own cgroup; on a host, a
// container's limit or the host's memory) is not over its own limit, even
// so; a task that really goes over its limit still is.
func TestOOMAboveCellNotOverLimit(t *testing.T) {
	w := newWarden(t, WardenConfig{})
	if how := w.MemoryEnforcement(); how != kernelMemoryV1 {
		t.Skipf("no cgroup v1 memory limits here: %s", how)
	}
	dir := t.TempDir()
	if onTmpfs(dir) {
		t.Skip("the test's files are on tmpfs, where they are not page cache")
	}
	res, err := Run(context.Background(), Spec{Dir: dir, Command: "head -c 100M /dev/zero > big", MemoryMB: 40, Warden: w})
	if err != nil || res.Kind != Success {
		t.Fatalf("writing a file larger than the limit: %v (%s), %v; want success", res.Kind, res.Message, err)
	}

	// The warden's own cgroup limited to 64 MiB: a process outside the
	// cells that takes more makes the kernel kill in the whole subtree,
	// first the task, whose oom_score_adj says to.
	setWardenLimit := func(v string) {
		t.Helper()
		files := []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"}
		if v == "-1" {
			files[0], files[1] = files[1], files[0]
		}
		for _, f := range files {
			if err := writeControl(filepath.Join(w.cg.mem.dir, f), []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
	}
	setWardenLimit("64M")
	t.Cleanup(func() { setWardenLimit("-1") })
	done := make(chan Result, 1)
	go func() { // exits when the run ends: the kernel kills it below
		res, err := Run(context.Background(), Spec{Dir: dir, MemoryMB: 40, Warden: w,
			// tail holds the 25 MiB it reads, as one line, until killed.
			// The file is synced: its pages in the cell are then clean, so
			// the kernel can drop them at once for the hog below (dirty
			// ones under writeback on a slow disk made it kill the hog too).
			Command: "head -c 100M /dev/zero > big; sync big; echo 1000 > /proc/$$/oom_score_adj; mkfifo p; { head -c 25M /dev/zero; touch ready; exec sleep 300; } > p & exec tail < p"})
		if err != nil {
			res.Message += " (" + err.Error() + ")"
		}
		done <- res
	}()
	pollUntil(t, 30*time.Second, "the task to write its file and take its memory", func() bool {
		_, err := os.Stat(filepath.Join(dir, "ready"))
		return err == nil
	})
	// 50 MiB more in the warden's cgroup: the kernel kills the task, and
	// then the hog fits.
	hog := exec.Command("/bin/sh", "-c", "echo $$ > "+shellQuote(filepath.Join(w.cg.mem.dir, "cgroup.procs"))+" && head -c 50M /dev/zero | tail")
	if out, err := hog.CombinedOutput(); err != nil {
		t.Errorf("the process that takes the memory above the cell: %v\n%s", err, out)
	}
	select {
	case res := <-done:
		if res.Kind == MemoryExceeded || res.Kind == Success {
			t.Errorf("a task killed for a shortage above its cell: %v (%s); want it failed, not over its limit", res.Kind, res.Message)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the task was not killed by the shortage above its cell")
	}
	setWardenLimit("-1")

	res, err = Run(context.Background(), Spec{Dir: dir, Command: "head -c 300M /dev/zero | tail", MemoryMB: 40, Warden: w})
	if err != nil || res.Kind != MemoryExceeded {
		t.Errorf("a task over its limit: %v (%s), %v; want %v", res.Kind, res.Message, err, MemoryExceeded)
	}
}

// A v1 cell whose memory.oom_control has no oom_kill count (Linux before
// 4.13) cannot tell that the kernel killed a process of the run: the
// kernel does not enforce the run's limit there, which is sampled instead,
// rather than enforced and never reported. The cell's files are plain ones.
func TestCellV1WithoutOOMKill(t *testing.T) {
	for _, tt := range []struct {
		name     string
		control  string
		enforced bool
		limit    int64
	}{
		{"oom_kill counted", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", true, 40 << 20},
		{"no oom_kill: sampled", "oom_kill_disable 0\nunder_oom 0\n", false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"} {
				if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			control := filepath.Join(dir, "memory.oom_control")
			if err := os.WriteFile(control, []byte(tt.control), 0o644); err != nil {
				t.Fatal(err)
			}
			fd, err := syscall.Open(control, syscall.O_RDONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer syscall.Close(fd)
			c := &cell{memdir: dir, memV1: true, oomFD: fd, ooms: testOOMNotes(t), above: testOOMNotes(t), procs: -1, v2fd: -1}
			g := &cgroups{free: []*cell{c}}
			got, enforced, err := g.cell(0, 40<<20)
			if err != nil || got != c || enforced != tt.enforced {
				t.Fatalf("cell() = %p, %v, %v; want %p, %v, nil", got, enforced, err, c, tt.enforced)
			}
			if c.memLimit != tt.limit {
				t.Errorf("the cell's memory limit is %d; want %d", c.memLimit, tt.limit)
			}
			if w := c.oomKilled(); (w != nil) != tt.enforced {
				t.Errorf("oomKilled() != nil is %v; want %v (the sampler watches a limited run)", w != nil, tt.enforced)
			}
		})
	}
}

// Where neither cgroup v2 nor the v1 cpu hierarchy can be used, the warden
// has no cells and no cgroups: it makes none in the v1 memory hierarchy
// either, which nothing would remove. (Here the process's cpu and v2
// cgroups are made to name directories that do not exist.)
func TestNoCellsNoMemoryCgroup(t *testing.T) {
	self, mi, err := processCgroups()
	if err != nil {
		t.Skip(err)
	}
	_, _, memBase := cgroupBases(self, mi)
	if memBase == "" {
		t.Skip("no cgroup v1 memory hierarchy here")
	}
	var fake []string
	for line := range strings.Lines(string(self)) {
		id, rest, _ := strings.Cut(strings.TrimSpace(line), ":")
		ctrls, _, _ := strings.Cut(rest, ":")
		if id == "0" || hasOption(ctrls, "cpu") {
			line = id + ":" + ctrls + ":/trellis-test-nowhere\n"
		}
		fake = append(fake, line)
	}
	g, cpu := openCgroupsIn([]byte(strings.Join(fake, "")), mi)
	if g != nil {
		g.close()
		t.Fatalf("openCgroupsIn = cgroups, %q; want none", cpu)
	}
	start, _ := startTime(os.Getpid())
	name := fmt.Sprintf("trellis-%d-%d-%d", os.Getpid(), start, wardens.Load())
	if _, err := os.Stat(filepath.Join(memBase, name)); err == nil {
		removeCgroup(filepath.Join(memBase, name), false, os.Getpid(), time.Second)
		t.Errorf("a v1 memory cgroup %s was left behind; want none", name)
	}
}

// fakeV1Cell is a v1 memory cell made of plain files and real eventfds:
// setKills writes its memory.oom_control's oom_kill, signal signals one of
// its eventfds as the kernel does at an out-of-memory event.
func fakeV1Cell(t *testing.T) (c *cell, setKills func(int64), signal func(*oomNotes)) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "cgroup.procs"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	control := filepath.Join(dir, "memory.oom_control")
	setKills = func(n int64) {
		t.Helper()
		if err := os.WriteFile(control, []byte(fmt.Sprintf("oom_kill_disable 0\nunder_oom 0\noom_kill %d\n", n)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setKills(0)
	fd, err := syscall.Open(control, syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	signal = func(o *oomNotes) {
		t.Helper()
		var b [8]byte
		b[0] = 1 // little-endian 1 (the tests run on little-endian machines)
		if _, err := syscall.Write(o.fd, b[:]); err != nil {
			t.Fatal(err)
		}
	}
	// v2dir holds an empty cgroup.procs: the cell is empty for release.
	c = &cell{v2dir: dir, memdir: dir, memV1: true, oomFD: fd, ooms: testOOMNotes(t), above: testOOMNotes(t), procs: -1, v2fd: -1}
	return c, setKills, signal
}

// testOOMNotes is an oomNotes on a new eventfd that no cgroup signals,
// closed when t ends.
func testOOMNotes(t *testing.T) *oomNotes {
	t.Helper()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(efd) })
	return &oomNotes{fd: efd}
}

// The sampler's check of a v1 run reads memory.oom_control only after the
// cell's eventfd was signalled, and that gate never hides a kill: at every
// step of random sequences of out-of-memory events (the cell's own, and
// above it), kills (each after its event, as the kernel does; or a
// host-wide one, with no event) and reads of the eventfds by others (the
// release of a run, say), the gated check says what the check without the
// gate says.
func TestOOMGateHidesNoKill(t *testing.T) {
	for seed := range uint64(50) {
		c, setKills, signal := fakeV1Cell(t)
		g := &cgroups{free: []*cell{c}}
		if _, enforced, err := g.cell(0, 40<<20); err != nil || !enforced {
			t.Fatalf("cell() = %v, %v; want enforced", enforced, err)
		}
		gated := c.oomKilled()
		ungated := func() bool {
			kills, ok := c.oomKills()
			return ok && kills > c.events.oomKill && c.memEventsV1(kills).overLimit(c.events)
		}
		rng := rand.New(rand.NewPCG(seed, 7))
		kills := int64(0)
		var trace []string
		for step := range 30 {
			switch rng.IntN(6) {
			case 0: // the cell's own limit: its event, then the kill
				signal(c.ooms)
				kills++
				setKills(kills)
				trace = append(trace, "own kill")
			case 1: // an event without a kill
				signal(c.ooms)
				trace = append(trace, "own event")
			case 2: // a host-wide kill: no event
				kills++
				setKills(kills)
				trace = append(trace, "host kill")
			case 3: // above the cell: both eventfds are signalled
				signal(c.above)
				signal(c.ooms)
				trace = append(trace, "above")
			case 4: // another reader drains the eventfds
				c.ooms.count()
				c.above.count()
				trace = append(trace, "drained")
			default:
				trace = append(trace, "nothing")
			}
			want := ungated()
			if got := gated(); got != want {
				t.Fatalf("seed %d step %d (%s): gated check %v; without the gate %v", seed, step, strings.Join(trace, ", "), got, want)
			}
		}
	}
}

// A reused v1 cell starts a limited run from the oom_kill count that the
// release of its last limited run read once it was empty, without reading
// memory.oom_control again; a run without a limit in between, which reads
// nothing at its end, makes the next limited run read it.
func TestCellStartsFromReleasedKills(t *testing.T) {
	c, setKills, _ := fakeV1Cell(t)
	g := &cgroups{free: []*cell{c}}
	start := func(memory int64) {
		t.Helper()
		got, _, err := g.cell(0, memory)
		if err != nil || got != c {
			t.Fatalf("cell() = %p, %v; want %p", got, err, c)
		}
	}
	setKills(3)
	start(40 << 20)
	if c.events.oomKill != 3 {
		t.Fatalf("first run starts from %d kills; want 3 (read)", c.events.oomKill)
	}
	setKills(5) // two processes of the run killed
	if emptied, _ := g.release(c, true); !emptied {
		t.Fatal("release: the cell is not empty")
	}
	setKills(9) // cannot happen to an empty cell: shows what is read
	start(40 << 20)
	if c.events.oomKill != 5 {
		t.Errorf("the next run starts from %d kills; want 5 (as the release read them)", c.events.oomKill)
	}
	g.release(c, true) // reads 9
	start(0)           // no limit: its release reads nothing
	g.release(c, false)
	setKills(11)
	start(40 << 20)
	if c.events.oomKill != 11 {
		t.Errorf("a run after one without a limit starts from %d kills; want 11 (read)", c.events.oomKill)
	}
}

// A kill that finds the cell empty spares release a second read of
// cgroup.procs (nothing enters an empty cell); the next run of the cell
// reads it again.
func TestCellKillSeesEmpty(t *testing.T) {
	c, _, _ := fakeV1Cell(t)
	g := &cgroups{free: []*cell{c}}
	procs := filepath.Join(c.v2dir, "cgroup.procs")
	if _, _, err := g.cell(0, 0); err != nil {
		t.Fatal(err)
	}
	c.kill()
	if !c.seenEmpty {
		t.Fatal("a kill of an empty cell did not note it empty")
	}
	// Not possible in a real cell once empty: shows that release does not
	// read the file again.
	if err := os.WriteFile(procs, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if emptied, _ := g.release(c, false); !emptied {
		t.Error("release read cgroup.procs again after a kill found the cell empty")
	}
	if _, _, err := g.cell(0, 0); err != nil {
		t.Fatal(err)
	}
	if c.seenEmpty {
		t.Error("a cell handed out for a new run is still noted empty")
	}
}

// BenchmarkCellBookkeeping is the worker's own work for a cell per run of
// a task with a memory limit, without the process: the cell handed out
// with one core and 16 MB, the sampler's four checks of a one-second run
// for the kernel's out-of-memory kill (cgroup v1), the kill and the
// release. It is skipped where the kernel does not enforce memory limits.
func BenchmarkCellBookkeeping(b *testing.B) {
	w, _, _ := benchWarden(b)
	if w.cg == nil || w.cg.mem == nil {
		b.Skip("no memory cgroup here")
	}
	for b.Loop() {
		c, limited, err := w.cg.cell(1, 16<<20)
		if err != nil || !limited {
			b.Fatalf("cell() = %v, %v", limited, err)
		}
		if oom := c.oomKilled(); oom != nil {
			for range 4 {
				if oom() {
					b.Fatal("an empty cell was over its limit")
				}
			}
		}
		c.kill()
		if emptied, oom := w.cg.release(c, true); !emptied || oom {
			b.Fatalf("release() = %v, %v", emptied, oom)
		}
	}
}

// A run whose only check is for the kernel's out-of-memory kill in a v1
// cell whose eventfd is in the sampler's epoll set is not sampled until
// the eventfd counts an event in the run: then it is at once, and the kill
// is reported. A run added after such an event is sampled from the start.
func TestSamplerWaitsForOOMEvent(t *testing.T) {
	s := newSampler()
	t.Cleanup(func() { closeSamplerEvents(t, s) }) // last: after unwatchEvents
	c, setKills, signal := fakeV1Cell(t)
	if !s.watchEvents(c.ooms) {
		t.Skip("no epoll set here")
	}
	t.Cleanup(func() { s.unwatchEvents(c.ooms) })
	g := &cgroups{free: []*cell{c}}
	verdicts := make(chan verdict, 1)
	newWatch := func() *watch {
		t.Helper()
		if _, enforced, err := g.cell(0, 40<<20); err != nil || !enforced {
			t.Fatalf("cell() = %v, %v; want enforced", enforced, err)
		}
		w := &watch{base: 50 * time.Millisecond, oom: c.oomKilled(), oomMB: 40, over: func(v verdict) { verdicts <- v }}
		w.events, w.oomSeen = c.oomEvents()
		return w
	}
	samples := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.samples
	}

	w := newWatch()
	s.add(w, time.Now())
	s.mu.Lock()
	waits := s.waiting[c.ooms.fd] == w && w.q == nil
	s.mu.Unlock()
	if !waits {
		t.Fatal("a run with no out-of-memory event yet is in the sampler's heap; want it waiting for its event")
	}
	// The kernel signals the event, then kills; here the kill is counted
	// first, so that the one sample at the event sees it (else the next
	// sample, after the base interval, would).
	setKills(1)
	signal(c.ooms)
	select {
	case v := <-verdicts:
		if v.kind != MemoryExceeded {
			t.Errorf("verdict %v (%s); want %v", v.kind, v.message, MemoryExceeded)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no verdict 10 s after the cell's out-of-memory event and kill")
	}
	if n := samples(); n != 1 {
		t.Errorf("%d samples; want 1 (at the event)", n)
	}
	s.remove(w)
	if _, oom := g.release(c, true); !oom {
		t.Error("release: not over its limit")
	}

	// An event before the run is added: sampled from the start.
	w = newWatch()
	signal(c.ooms)
	s.add(w, time.Now())
	s.mu.Lock()
	inHeap := w.q != nil
	s.mu.Unlock()
	if !inHeap {
		t.Error("a run whose cell counted an event before it was added waits for another; want it in the heap")
	}
	s.remove(w)
	pollUntil(t, 10*time.Second, "the sampler's goroutine to end", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.running
	})
}

// closeSamplerEvents closes the epoll set and poking eventfd of a test's
// own sampler, once its goroutine has ended (under a waiting goroutine, a
// closed set would fail its every wait at once, a busy loop).
func closeSamplerEvents(t *testing.T, s *sampler) {
	t.Helper()
	ev := s.ev.Load()
	if ev == nil {
		return
	}
	s.mu.Lock()
	running := s.running
	s.mu.Unlock()
	if running {
		t.Log("the sampler's goroutine still runs: its epoll set is left open")
		return
	}
	if err := ev.f.Close(); err != nil {
		t.Errorf("close the epoll set: %v", err)
	}
	if err := unix.Close(ev.wake); err != nil {
		t.Errorf("close the poking eventfd: %v", err)
	}
}

// The kernel signals a v1 cell's out-of-memory event before it kills, so
// the sample at the event usually finds no kill yet: that sample is not
// steady, and the next comes after the base interval (not twice it), where
// the kill is reported. A sample with no new event backs off again.
func TestSamplerSamplesAgainSoonAfterOOMEvent(t *testing.T) {
	s := newSampler()
	c, setKills, signal := fakeV1Cell(t)
	g := &cgroups{free: []*cell{c}}
	if _, enforced, err := g.cell(0, 40<<20); err != nil || !enforced {
		t.Fatalf("cell() = %v, %v; want enforced", enforced, err)
	}
	const base = 50 * time.Millisecond
	var got []verdict
	w := &watch{base: base, interval: base, oom: c.oomKilled(), oomMB: 40, over: func(v verdict) { got = append(got, v) }}
	w.events, w.oomSeen = c.oomEvents()
	now := time.Unix(1000, 0)

	s.sample(w, now) // nothing yet: steady
	if want := now.Add(2 * base); !w.due.Equal(want) {
		t.Fatalf("a quiet sample: next due %v after it; want %v", w.due.Sub(now), want.Sub(now))
	}
	now = w.due
	signal(c.ooms) // the event; the kill comes after
	s.sample(w, now)
	if len(got) != 0 {
		t.Fatalf("verdicts %v before any kill; want none", got)
	}
	if want := now.Add(base); !w.due.Equal(want) {
		t.Errorf("the sample at an out-of-memory event without a kill: next due %v after it; want the base interval %v", w.due.Sub(now), base)
	}
	now = w.due
	setKills(1)
	s.sample(w, now)
	if len(got) != 1 || got[0].kind != MemoryExceeded {
		t.Errorf("verdicts %v at the sample after the kill; want one, %v", got, MemoryExceeded)
	}

	// An event that no kill follows: sampled once more after the base
	// interval, then backing off.
	w = &watch{base: base, interval: base, oom: func() bool { return false }, over: func(verdict) { t.Error("over its limit") }}
	w.events, w.oomSeen = c.ooms, c.ooms.count()
	signal(c.ooms)
	s.sample(w, now)
	s.sample(w, w.due)
	if w.interval != 2*base {
		t.Errorf("after a sample with no new event: interval %v; want %v (backing off)", w.interval, 2*base)
	}
}

// The warden's v1 cells put their eventfds into the one sampler's set: a
// limited run that never runs out of memory is never sampled.
func TestOOMWatchCostsNoSample(t *testing.T) {
	w := newWarden(t, WardenConfig{})
	if how := w.MemoryEnforcement(); how != kernelMemoryV1 {
		t.Skipf("no cgroup v1 memory limits here: %s", how)
	}
	samplers.mu.Lock()
	before := samplers.samples
	ev := samplers.ev.Load() != nil
	samplers.mu.Unlock()
	if !ev {
		t.Skip("no epoll set here")
	}
	res, err := Run(context.Background(), Spec{Dir: t.TempDir(), Command: "sleep 0.3", MemoryMB: 40, Warden: w})
	if err != nil || res.Kind != Success {
		t.Fatalf("Run = %v (%s), %v; want success", res.Kind, res.Message, err)
	}
	samplers.mu.Lock()
	n := samplers.samples - before
	samplers.mu.Unlock()
	if n != 0 {
		t.Errorf("%d samples of a run that never ran out of memory; want 0", n)
	}
}

// Many limited runs at once in v1 cells, some over their limit and some
// not, some whose process over the limit left the group: each gets its
// own verdict, while most wait for their cells' events in the sampler's
// epoll set.
func TestOOMVerdictsOfConcurrentRuns(t *testing.T) {
	w := newWarden(t, WardenConfig{})
	if how := w.MemoryEnforcement(); how != kernelMemoryV1 {
		t.Skipf("no cgroup v1 memory limits here: %s", how)
	}
	commands := []struct {
		command string
		want    Kind
	}{
		{"sleep 0.3", Success},
		{"head -c 300M /dev/zero | tail", MemoryExceeded},
		{"sleep 0.5; echo done", Success},
		// The rest of the run (sleep 20) is killed when the process over
		// the limit is.
		{"setsid sh -c 'head -c 300M /dev/zero | tail' & sleep 20", MemoryExceeded},
	}
	const runs = 24
	type outcome struct {
		i   int
		res Result
		err error
	}
	done := make(chan outcome, runs)
	for i := range runs {
		go func() { // exits when its run ends
			res, err := Run(context.Background(), Spec{Dir: t.TempDir(), Command: commands[i%len(commands)].command, MemoryMB: 40, Warden: w, WallTime: 15 * time.Second})
			done <- outcome{i, res, err}
		}()
	}
	for range runs {
		o := <-done
		c := commands[o.i%len(commands)]
		if o.err != nil || o.res.Kind != c.want {
			t.Errorf("run %d (%s): %v (%s), %v; want %v", o.i, c.command, o.res.Kind, o.res.Message, o.err, c.want)
		}
	}
}

// testShell returns a task's shell that runs script in dir, with
// /dev/null for its standard input and outputs.
func testShell(t *testing.T, dir, script string) *shell {
	t.Helper()
	null, err := syscall.Open(os.DevNull, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(null) })
	return &shell{script: script, dir: dir, env: environ(dir, nil), files: [3]int{null, null, null}}
}
