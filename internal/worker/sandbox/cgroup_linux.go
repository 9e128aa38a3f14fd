package sandbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// defaultPeriod is the CPU quota period, in µs, that a new cgroup has.
const defaultPeriod = 100000

// maxCores bounds the cores of a quota, as proto validation does.
const maxCores = 1e6

// settleWait bounds how long a cell's release waits for killed processes
// to leave it before the cell is given up (Close removes it).
const settleWait = 50 * time.Millisecond

// wardens numbers the wardens of this process, which name their cgroups.
var wardens atomic.Uint64

// cgroups is a warden's share of the machine's cgroups: a cgroup of its own
// in cgroup v2 (which kills a tree with one write) and, where the cpu
// controller is not in v2, one in the v1 hierarchy of the cpu controller;
// and below them a cell per running process tree. Cells are kept for reuse
// once empty: making and removing a cgroup costs more than a task's
// bookkeeping.
type cgroups struct {
	v2  *hierarchy // nil when cgroup v2 is not used
	v1  *hierarchy // nil when cgroup v1 is not used
	cpu *hierarchy // where quotas are set (v2 or v1); nil when not enforced
	// mem is where memory limits are set: v2 (memory.max) or the v1
	// memory hierarchy (memory.limit_in_bytes, which the task's shell
	// enters itself: joinText); nil where they are sampled.
	mem *hierarchy
	// memWhy says why memory is sampled although the memory controller
	// could be enabled; "" otherwise.
	memWhy string

	mu   sync.Mutex // guards free, next
	free []*cell    // empty cells for reuse
	next int        // the number of the next new cell
}

// hierarchy is the warden's own cgroup in one hierarchy.
type hierarchy struct {
	v2   bool
	base string // the worker's cgroup, where the warden made dir
	dir  string // the warden's cgroup, base/trellis-PID-START-SEQ
	// home is base's tasks file (v1 only): a cell's launcher thread goes
	// back there before it ends, so that the cell can be removed at once.
	home *os.File
	// ooms (v1 memory only) hears of the out-of-memory events of dir and
	// of the cgroups above it (a container's limit, say), which the kernel
	// signals to every cell below too; nil elsewhere.
	ooms *oomNotes
}

// cell is the cgroup of one process tree, in each hierarchy used.
type cell struct {
	v2dir string   // "" when v2 is not used
	v2fd  int      // v2dir opened, for clone into it; -1 when not used
	v1dir string   // "" when v1 is not used
	v1    *os.File // v1dir's tasks file, for its launcher; nil until opened
	// procs is the cgroup.procs file of v2dir (else of v1dir), kept open
	// for the cell's life: it is read twice or more per task (empty,
	// and each memory sample), and opening a cgroup file costs more
	// than reading it. -1 when it could not be opened.
	procs int
	home  *os.File // the v1 hierarchy's home
	quota int64    // the CPU quota set, µs per period; 0 for none
	// launcher forks the cell's processes from inside v1dir; nil until
	// the first start that needs it (a start that is not a shell: a
	// shell joins the cell itself, joinV1). The cell's one user owns it.
	launcher *launcher
	// joinV1 is the shell text that moves the shell running it into v1dir
	// (joinText); "" when v1 is not used.
	joinV1 string
	// memdir is where the cell's memory.* files limit it: v2dir, or its
	// cgroup in the v1 memory hierarchy (memV1); "" when memory is
	// sampled instead.
	memdir string
	memV1  bool
	// joinM1 is the shell text that enters memdir where memV1 (joinText).
	joinM1   string
	memLimit int64 // the memory limit set, bytes; 0 for none, -1 unknown
	// oomFD is memory.events (v2) or memory.oom_control (v1), open for
	// the cell's life, whose counters say whether a run went over its
	// limit; -1 when memory is sampled. In v1, ooms hears of the cell's
	// out-of-memory events (those of its own limit, and those of the
	// cgroups above it, which above hears of too: the memory hierarchy's
	// ooms). events is what they were when the current limited run
	// started (eventsOK: they could be read then).
	oomFD    int
	ooms     *oomNotes
	above    *oomNotes
	events   memEvents
	eventsOK bool
	// kills is the v1 cell's oom_kill count as the release of its last
	// run read it, with no process left in it; killsKnown says it holds
	// (startEvents). Both belong to the cell's one user.
	kills      int64
	killsKnown bool
	// seenEmpty: kill found the cell empty since its current run started
	// (the run's processes are gone, and nothing enters an empty cell), so
	// release need not read cgroup.procs again. Set by kill under the
	// Child's lock, which Wait takes before release.
	seenEmpty bool
	// cpuStat is v2dir's cpu.stat, opened by the first quotaGate that
	// reads it (cpuStatOpen) and kept for the cell's life: a check is
	// then one pread.
	cpuStat     int
	cpuStatOpen bool
	// spent is set once cgroup.kill was written to v2dir: the kernel
	// (6.18 at least) kills at birth a process cloned into a cgroup killed
	// more often than its parent's, so the cell is not reused.
	spent bool
}

// processCgroups reads this process's cgroups and mounts once, before any
// warden of the process has a launcher thread. In cgroup v1 each thread
// has cgroups of its own, and /proc/self/cgroup shows the main thread's:
// read later, it may show a cell that a launcher on the main thread
// entered, and a second warden would make its cgroups inside that cell.
var processCgroupFiles = sync.OnceValue(func() (f struct{ cgroup, mountinfo []byte }) {
	f.cgroup, _ = os.ReadFile("/proc/self/cgroup")
	f.mountinfo, _ = os.ReadFile("/proc/self/mountinfo")
	return f
})

// processCgroups returns what processCgroupFiles read; an error if either
// could not be read.
func processCgroups() (cgroup, mountinfo []byte, err error) {
	f := processCgroupFiles()
	if f.cgroup == nil || f.mountinfo == nil {
		return nil, nil, errors.New("cannot read /proc/self/cgroup and /proc/self/mountinfo")
	}
	return f.cgroup, f.mountinfo, nil
}

// openCgroups finds the cgroups this process may create and prepares its
// own in them, removing what dead wardens left. It returns nil when none is
// usable, and says in cpu how CPU quotas are enforced, or why they are not.
func openCgroups() (g *cgroups, cpu string) {
	self, mi, err := processCgroups()
	if err != nil {
		return nil, "not enforced (cannot read this process's cgroups: " + err.Error() + ")"
	}
	return openCgroupsIn(self, mi)
}

// openCgroupsIn is openCgroups given this process's /proc/self/cgroup and
// /proc/self/mountinfo.
func openCgroupsIn(self, mi []byte) (g *cgroups, cpu string) {
	var err1 error
	start, ok := startTime(os.Getpid())
	if !ok {
		return nil, "not enforced (cannot read this process's start time)"
	}
	name := fmt.Sprintf("trellis-%d-%d-%d", os.Getpid(), start, wardens.Add(1))
	v2base, v1base, v1mem := cgroupBases(self, mi)
	g = &cgroups{}
	var why []string
	if v2base == "" {
		why = append(why, "no cgroup v2")
	} else {
		sweep(v2base, true)
		var cpuErr error
		if g.v2, cpuErr, err1 = openV2(v2base, name); err1 != nil {
			why = append(why, err1.Error())
		} else if cpuErr != nil {
			why = append(why, cpuErr.Error())
		} else {
			g.cpu = g.v2
		}
	}
	if g.cpu == nil && v1base != "" {
		sweep(v1base, false)
		if g.v1, err1 = openV1(v1base, name); err1 != nil {
			why = append(why, err1.Error())
		} else {
			g.cpu = g.v1
		}
	} else if g.cpu == nil {
		why = append(why, "no cgroup v1 cpu controller")
	}
	if g.v2 == nil && g.v1 == nil {
		// No cells to put a memory cgroup beside: none is made.
		return nil, "not enforced (" + strings.Join(why, "; ") + ")"
	}
	g.openMemory(v1mem, name)
	switch {
	case g.cpu == g.v2:
		return g, "cgroup v2 cpu.max"
	case g.cpu == g.v1:
		return g, "cgroup v1 quota"
	}
	return g, "not enforced (" + strings.Join(why, "; ") + ")"
}

// openMemory enables the memory controller for the cells where cgroup v2
// has it, so that the kernel enforces their memory limits (memory.max);
// else, where the v1 memory hierarchy is mounted at v1base and writable,
// it makes the warden's cgroup named name there (memory.limit_in_bytes).
// Elsewhere g.mem stays nil and memory is sampled.
//
// In v1 a cell is entered by the task's shell itself, never by a thread
// of the worker (joinText): a worker thread in a cell got the worker's own
// memory charged there, where the cell's out-of-memory killer could pick
// the worker (docs/benchmarks.md, capacity, sixth part).
//
// Where the kernel keeps no swap account per cgroup (no memory.swap.max in
// v2, no memory.memsw.* in v1), memory is sampled too: on a host with
// swap, the memory limit alone would move what a task uses over it to swap
// rather than end the task.
func (g *cgroups) openMemory(v1base, name string) {
	if g.v2 != nil && enableController(g.v2.base, g.v2.dir, "memory") == nil {
		if _, err := os.Stat(filepath.Join(g.v2.dir, "memory.swap.max")); err != nil {
			g.memWhy = "sampled (cgroup v2 has no memory.swap.max, so memory.max alone would let a task swap instead)"
			return
		}
		g.mem = g.v2
		return
	}
	if v1base == "" {
		return
	}
	sweep(v1base, false)
	h, err := openV1Memory(v1base, name)
	if err != nil {
		g.memWhy = "sampled (" + err.Error() + ")"
		return
	}
	g.mem = h
}

// openV1Memory makes the warden's cgroup in the v1 memory hierarchy and
// checks that a shell can enter a cell below it and that the cells can
// keep a task from swapping (memory.memsw.limit_in_bytes).
func openV1Memory(base, name string) (*hierarchy, error) {
	dir := filepath.Join(base, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup v1 memory %s not writable: %w", base, err)
	}
	h := &hierarchy{base: base, dir: dir}
	if _, err := os.Stat(filepath.Join(dir, "memory.memsw.limit_in_bytes")); err != nil {
		h.remove()
		return nil, errors.New("cgroup v1 memory has no memory.memsw.limit_in_bytes (swap accounting is off), so memory.limit_in_bytes alone would let a task swap instead")
	}
	oom, err := syscall.Open(filepath.Join(dir, "memory.oom_control"), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err == nil {
		h.ooms, err = registerOOM(dir, oom)
		syscall.Close(oom)
	}
	if err != nil {
		h.remove()
		return nil, fmt.Errorf("cgroup v1 memory: cannot hear of the out-of-memory events of %s (memory.oom_control, cgroup.event_control): %w", dir, err)
	}
	c, err := newCell(nil, nil, h, "probe")
	if err == nil && c.memdir == "" {
		err = errors.New("cannot open its memory.oom_control or hear of its out-of-memory events (cgroup.event_control)")
	}
	if err == nil {
		if _, ok := c.oomKills(); !ok {
			c.remove()
			h.remove()
			return nil, errors.New("cgroup v1 memory.oom_control has no oom_kill count (Linux 4.13 or later needed), so a task's out-of-memory kill could not be seen")
		}
	}
	if err == nil {
		err = exec.Command("/bin/sh", "-c", c.joinM1+"exit 0").Run()
	}
	if c != nil {
		c.remove()
	}
	if err != nil {
		h.remove()
		return nil, fmt.Errorf("cgroup v1 memory: a shell cannot enter a cgroup below %s: %w", dir, err)
	}
	return h, nil
}

// openV2 makes the warden's cgroup v2 and checks that a process can be
// started in a cgroup below it. cpuErr says why the cpu controller cannot
// be used there; err why the hierarchy cannot be used at all.
func openV2(base, name string) (h *hierarchy, cpuErr, err error) {
	dir := filepath.Join(base, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("cgroup v2 %s not writable: %w", base, err)
	}
	h = &hierarchy{v2: true, base: base, dir: dir}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err != nil {
		h.remove()
		return nil, nil, errors.New("cgroup v2 without cgroup.kill (Linux 5.14 or later needed)")
	}
	cpuErr = enableController(base, dir, "cpu")
	c, err := newCell(h, nil, nil, "probe")
	if err == nil {
		cmd := exec.Command("/bin/sh", "-c", "exit 0")
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: c.v2fd}
		err = cmd.Run()
		c.remove()
	}
	if err != nil {
		h.remove()
		return nil, nil, fmt.Errorf("cgroup v2: a process started in a new cgroup (clone3 with CLONE_INTO_CGROUP) did not run: %w", err)
	}
	return h, cpuErr, nil
}

// enableController makes the controller ctrl ("cpu", "memory") available
// to the cells below dir: base lists it in cgroup.subtree_control, and so
// does dir.
func enableController(base, dir, ctrl string) error {
	b, err := os.ReadFile(filepath.Join(base, "cgroup.controllers"))
	if err != nil || !slices.Contains(strings.Fields(string(b)), ctrl) {
		return fmt.Errorf("cgroup v2 %s has no %s controller", base, ctrl)
	}
	b, _ = os.ReadFile(filepath.Join(base, "cgroup.subtree_control"))
	if !slices.Contains(strings.Fields(string(b)), ctrl) {
		if err := writeControl(filepath.Join(base, "cgroup.subtree_control"), []byte("+"+ctrl)); err != nil {
			return fmt.Errorf("cgroup v2: enable the %s controller below %s (a cgroup that holds processes cannot): %w", ctrl, base, err)
		}
	}
	if err := writeControl(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+ctrl)); err != nil {
		return fmt.Errorf("cgroup v2: enable the %s controller below %s: %w", ctrl, dir, err)
	}
	return nil
}

// openV1 makes the warden's cgroup in the v1 cpu hierarchy and checks that
// a thread can go into a cgroup below it.
func openV1(base, name string) (*hierarchy, error) {
	dir := filepath.Join(base, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup v1 cpu %s not writable: %w", base, err)
	}
	h := &hierarchy{base: base, dir: dir}
	home, err := os.OpenFile(filepath.Join(base, "tasks"), os.O_WRONLY, 0)
	if err != nil {
		h.remove()
		return nil, fmt.Errorf("cgroup v1 cpu %s: %w", base, err)
	}
	h.home = home
	c, err := newCell(nil, h, nil, "probe")
	if err == nil {
		var l *launcher
		if l, err = startLauncher(c); err == nil {
			l.stop()
		}
		c.remove()
	}
	if err != nil {
		h.remove()
		return nil, fmt.Errorf("cgroup v1 cpu: cannot move a thread into a cgroup: %w", err)
	}
	return h, nil
}

// newCell makes a cell named name below the warden's cgroups: v2 and v1
// (cpu) where not nil; its v2 cgroup limits memory where mem is not nil.
func newCell(v2, v1, mem *hierarchy, name string) (*cell, error) {
	c := &cell{v2fd: -1, procs: -1, oomFD: -1}
	if v2 != nil {
		c.v2dir = filepath.Join(v2.dir, name)
		if err := os.Mkdir(c.v2dir, 0o755); err != nil {
			return nil, err
		}
		fd, err := syscall.Open(c.v2dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			c.remove()
			return nil, &os.PathError{Op: "open", Path: c.v2dir, Err: err}
		}
		c.v2fd = fd
	}
	if v1 != nil {
		c.v1dir, c.home = filepath.Join(v1.dir, name), v1.home
		if err := os.Mkdir(c.v1dir, 0o755); err != nil {
			c.remove()
			return nil, err
		}
		c.joinV1 = joinText(c.v1dir)
	}
	dir := c.v2dir
	if dir == "" {
		dir = c.v1dir
	}
	if fd, err := syscall.Open(dir+"/cgroup.procs", syscall.O_RDONLY|syscall.O_CLOEXEC, 0); err == nil {
		c.procs = fd // else empty opens it each time
	}
	switch {
	case mem != nil && mem.v2 && c.v2dir != "":
		c.openMemory() // else its runs' memory is sampled
	case mem != nil && !mem.v2:
		if err := c.openMemoryV1(filepath.Join(mem.dir, name), mem.ooms); err != nil {
			c.remove()
			return nil, err
		}
	}
	return c, nil
}

// openMemoryV1 makes the cell's cgroup dir in the v1 memory hierarchy,
// opens the file that counts its out-of-memory kills and registers for its
// out-of-memory events; above hears of those of the cgroups above it. Where
// that cannot be done, the cell's memory stays sampled (memdir ""); an
// error only where dir cannot be made.
func (c *cell) openMemoryV1(dir string, above *oomNotes) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	oom, err := syscall.Open(filepath.Join(dir, "memory.oom_control"), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return syscall.Rmdir(dir)
	}
	ooms, err := registerOOM(dir, oom)
	if err != nil || above == nil {
		ooms.close()
		syscall.Close(oom)
		return syscall.Rmdir(dir)
	}
	c.memdir, c.memV1, c.joinM1, c.oomFD, c.ooms, c.above = dir, true, joinText(dir), oom, ooms, above
	ooms.inSampler = samplers.watchEvents(ooms)
	return nil
}

// oomNotes is an eventfd registered with a v1 memory cgroup's
// cgroup.event_control for its memory.oom_control: the kernel signals it
// when the cgroup, or one above it, runs out of memory under its limit,
// but not for a shortage of the whole host. n counts what was read from it.
type oomNotes struct {
	fd int
	mu sync.Mutex // a read and its sum together: concurrent counts never see an old sum after another drained the eventfd
	n  int64
	// inSampler: fd is in the one sampler's epoll set (watchEvents) until
	// close. Set once, before the notes are shared.
	inSampler bool
}

// registerOOM hears of the out-of-memory events of the v1 memory cgroup
// dir, whose memory.oom_control is open as oomFD (the kernel holds the
// registration, not the file: it may be closed after).
func registerOOM(dir string, oomFD int) (*oomNotes, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := writeControl(filepath.Join(dir, "cgroup.event_control"), []byte(strconv.Itoa(efd)+" "+strconv.Itoa(oomFD))); err != nil {
		syscall.Close(efd)
		return nil, err
	}
	return &oomNotes{fd: efd}, nil
}

// count returns how many out-of-memory events were signalled so far. It
// reads what came since the last read without blocking; safe for
// concurrent use.
func (o *oomNotes) count() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	var b [8]byte
	if n, err := syscall.Read(o.fd, b[:]); err == nil && n == len(b) {
		o.n += int64(binary.NativeEndian.Uint64(b[:]))
	}
	return o.n
}

// close closes the eventfd (nil: nothing); the kernel then drops the
// registration.
func (o *oomNotes) close() {
	if o != nil {
		if o.inSampler {
			samplers.unwatchEvents(o)
		}
		syscall.Close(o.fd)
	}
}

// openMemory makes the cell's v2 cgroup limit its memory: the kernel
// kills its processes together when one goes over the limit
// (memory.oom.group, Linux 4.19), they may not swap (memory.swap.max 0:
// with swap, memory.max alone moves what is over it to swap instead of
// ending the run), and memory.events counts the kills. Where any of these
// is missing or cannot be set, the cell's memory stays sampled (memdir "").
func (c *cell) openMemory() {
	if writeControl(filepath.Join(c.v2dir, "memory.oom.group"), []byte("1")) != nil {
		return
	}
	if writeControl(filepath.Join(c.v2dir, "memory.swap.max"), []byte("0")) != nil {
		return
	}
	fd, err := syscall.Open(c.v2dir+"/memory.events", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	c.memdir, c.oomFD = c.v2dir, fd
}

// setMemory sets the cell's memory limit to limit bytes (0 for none).
func (c *cell) setMemory(limit int64) error {
	if c.memdir == "" || limit == c.memLimit {
		return nil
	}
	if c.memV1 {
		return c.setMemoryV1(limit)
	}
	file, val := filepath.Join(c.memdir, "memory.max"), "max"
	if limit > 0 {
		val = strconv.FormatInt(limit, 10)
	}
	if err := writeControl(file, []byte(val)); err != nil {
		return err
	}
	c.memLimit = limit
	return nil
}

// setMemoryV1 sets the v1 cell's memory.limit_in_bytes, and its
// memory.memsw.limit_in_bytes (memory and swap together) to the same, so
// that a task cannot swap. The kernel keeps memsw at least as high as the
// memory limit, so a rise sets memsw first, a fall the memory limit.
func (c *cell) setMemoryV1(limit int64) error {
	val := "-1"
	if limit > 0 {
		val = strconv.FormatInt(limit, 10)
	}
	files := []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"}
	if limit == 0 || c.memLimit > 0 && limit > c.memLimit {
		files[0], files[1] = files[1], files[0]
	}
	for _, f := range files {
		if err := writeControl(filepath.Join(c.memdir, f), []byte(val)); err != nil {
			c.memLimit = -1 // half set, maybe
			return err
		}
	}
	c.memLimit = limit
	return nil
}

// memEvents are the counters of a cell's memory.events that tell a run
// killed for going over its own limit: oom counts the times the cell hit
// its own memory.max with nothing left to reclaim, oom_kill the processes
// of the cell that an out-of-memory killer ended, for any reason (one run
// for a shortage of the whole host too). In v1, oom counts the cell's
// out-of-memory events, which include those of the cgroups above it:
// above counts those alone (0 in v2, where oom counts the cell's own).
type memEvents struct{ oom, oomKill, above int64 }

// parseMemoryEvents reads the oom and oom_kill counters of a memory.events
// file's text; false unless both are there.
func parseMemoryEvents(b []byte) (memEvents, bool) {
	var e memEvents
	var found uint8 // bit 0: oom, bit 1: oom_kill
	for line := range strings.SplitSeq(string(b), "\n") {
		key, v, _ := strings.Cut(line, " ")
		var dst *int64
		switch key {
		case "oom":
			dst, found = &e.oom, found|1
		case "oom_kill":
			dst, found = &e.oomKill, found|2
		default:
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return memEvents{}, false
		}
		*dst = n
	}
	if found != 3 {
		return memEvents{}, false
	}
	return e, true
}

// overLimit reports whether, between before and e, the kernel killed a
// process of the cell because the cell went over its own limit: both an
// out-of-memory kill and the cell's own limit hit, and no cgroup above it
// ran out of memory meanwhile. A kill for a shortage of the whole host
// raises oom_kill only; one for the limit of a cgroup above the cell (in
// v1) raises above too. (Where the cell's own limit and one above were hit
// in the same run, the run is not said to be over its limit.)
func (e memEvents) overLimit(before memEvents) bool {
	return e.oom > before.oom && e.oomKill > before.oomKill && e.above == before.above
}

// memEvents reads the cell's memory.events; false when it cannot. In v1
// it reads oom_kill from memory.oom_control, and the out-of-memory events
// that the kernel signalled to the cell and to the cgroups above it
// (oomNotes): v1 has no count of the times the cell hit its own limit, and
// the most the cell held says nothing, since v1 charges the page cache of
// the files a task writes to its cell, which then sits at its limit.
func (c *cell) memEvents() (memEvents, bool) {
	if c.oomFD < 0 {
		return memEvents{}, false
	}
	if c.memV1 {
		kills, ok := c.oomKills()
		if !ok {
			return memEvents{}, false
		}
		return c.memEventsV1(kills), true
	}
	var buf [512]byte
	n, err := syscall.Pread(c.oomFD, buf[:], 0)
	if err != nil || n <= 0 {
		return memEvents{}, false
	}
	return parseMemoryEvents(buf[:n])
}

// startEvents is memEvents at the start of a limited run; known says that
// c.kills holds the cell's oom_kill count as its last run's release read
// it, once the cell was empty. In v1 that count is then not read again:
// oom_kill counts the processes of the cell that an out-of-memory killer
// ended, and the kernel counts a kill while its victim is still in the
// cell, so with no process in the cell from that read until this run's
// shell enters it, the count cannot have changed (whatever the cause: the
// cell's limit, a cgroup above it, or the whole host). The out-of-memory
// events (the eventfds) can change meanwhile, for the cgroups above the
// cell, and are read now: two non-blocking reads, where memory.oom_control
// is a pread and a parse. A cell handed out to a run without a limit, or
// whose release did not read the count, reads it here.
func (c *cell) startEvents(known bool) (memEvents, bool) {
	if known && c.memV1 && c.oomFD >= 0 {
		return c.memEventsV1(c.kills), true
	}
	return c.memEvents()
}

// memEventsV1 is the v1 cell's memEvents given its oom_kill count, read
// first: the kernel signals an out-of-memory event before it kills.
func (c *cell) memEventsV1(kills int64) memEvents {
	return memEvents{oom: c.ooms.count(), oomKill: kills, above: c.above.count()}
}

// oomKills reads the oom_kill count of the v1 cell's memory.oom_control.
func (c *cell) oomKills() (int64, bool) {
	var buf [128]byte
	n, err := syscall.Pread(c.oomFD, buf[:], 0)
	if err != nil || n <= 0 {
		return 0, false
	}
	return parseOOMControl(buf[:n])
}

// parseOOMControl reads the oom_kill counter of a v1 memory.oom_control
// file's text; false when it is not there.
func parseOOMControl(b []byte) (int64, bool) {
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// oomKilled reports whether a process of the cell's limited run was killed
// for going over the run's limit so far: in v1, where the kernel kills one
// process, not the cell's all, the one sampler asks it every interval
// (reading memory.oom_control alone until its oom_kill rises) and ends
// the run. Nil where the kernel kills the cell whole (v2, memory.oom.group)
// or does not limit the run.
//
// The cell's own eventfd gates the read of memory.oom_control: a run is
// over its limit only where the cell's out-of-memory events rose since
// the run started (memEvents.overLimit), and the count of those is one
// non-blocking read of the eventfd, where memory.oom_control is a pread
// and a parse. The gate never hides a kill for good: the count only
// grows (oomNotes keeps what every reader drained), so once the check
// without the gate would say killed, every later one passes the gate and
// decides as it would. (The kernel signals the event before it kills; a
// sample that finds the event but not yet the kill is followed by another
// after the base interval, sampler.sample.)
func (c *cell) oomKilled() func() bool {
	if c == nil || !c.memV1 || !c.eventsOK {
		return nil
	}
	return func() bool {
		if c.ooms.count() <= c.events.oom {
			return false // no out-of-memory event for the cell in this run
		}
		kills, ok := c.oomKills()
		return ok && kills > c.events.oomKill && c.memEventsV1(kills).overLimit(c.events)
	}
}

// oomEvents returns, for a run whose oomKilled is not nil, the cell's
// out-of-memory notifications and what they counted when the run started:
// while they count no more, oomKilled says false (its gate), so the one
// sampler need not ask it (sampler.add).
func (c *cell) oomEvents() (events *oomNotes, atStart int64) {
	return c.ooms, c.events.oom
}

// cell returns an empty cell with a quota of cores (none for 0) and, where
// the kernel enforces memory (g.mem), a limit of memory bytes (none for
// 0); memEnforced says it does for this cell.
func (g *cgroups) cell(cores float64, memory int64) (c *cell, memEnforced bool, err error) {
	g.mu.Lock()
	next := -1
	if n := len(g.free); n > 0 {
		c, g.free = g.free[n-1], g.free[:n-1]
	} else {
		next = g.next
		g.next++
	}
	g.mu.Unlock()
	if c == nil {
		if c, err = newCell(g.v2, g.v1, g.mem, "c"+strconv.Itoa(next)); err != nil {
			return nil, false, fmt.Errorf("create cgroup: %w", err)
		}
	}
	known := c.killsKnown
	c.killsKnown = false // this run may change them; release reads them again
	c.seenEmpty = false
	if err := c.setQuota(g.cpu, quota(cores)); err != nil {
		c.remove()
		return nil, false, fmt.Errorf("set the CPU quota of %g cores: %w", cores, err)
	}
	if c.memdir == "" {
		return c, false, nil
	}
	if err := c.setMemory(memory); err != nil {
		// Sampled instead, but never under an earlier run's limit.
		if c.setMemory(0) != nil {
			c.remove()
			return nil, false, fmt.Errorf("set the memory limit of %d bytes: %w", memory, err)
		}
		return c, false, nil
	}
	if memory > 0 {
		c.events, c.eventsOK = c.startEvents(known)
		if c.memV1 && !c.eventsOK {
			// Without the counts at the start, v1's kill of one process
			// would never be seen, nor the rest of the run killed:
			// sampled instead.
			if err := c.setMemory(0); err != nil {
				c.remove()
				return nil, false, fmt.Errorf("remove the memory limit of a cgroup whose memory.oom_control cannot be read: %w", err)
			}
			return c, false, nil
		}
	}
	return c, memory > 0, nil
}

// release takes back a cell whose process tree was killed: once the killed
// processes have left, it is kept for reuse, or removed if it is spent; a
// cell they do not leave in settleWait is given up and removed by close,
// and release reports false. oom reports that the kernel killed a process
// of the run for its memory limit (limited: the run had one).
func (g *cgroups) release(c *cell, limited bool) (emptied, oom bool) {
	deadline := time.Now().Add(settleWait)
	for !c.seenEmpty && !c.empty() {
		if time.Now().After(deadline) {
			oom = limited && c.overLimit()
			c.closeFiles() // close removes the cgroups
			return false, oom
		}
		c.kill()
		time.Sleep(100 * time.Microsecond)
	}
	if limited {
		now, ok := c.memEvents()
		oom = ok && c.eventsOK && now.overLimit(c.events)
		if ok && c.memV1 {
			// Read once the cell is empty: the next run starts from
			// these kills (startEvents).
			c.kills, c.killsKnown = now.oomKill, true
		}
	}
	if c.spent {
		c.remove()
		return true, oom
	}
	g.mu.Lock()
	g.free = append(g.free, c)
	g.mu.Unlock()
	return true, oom
}

// overLimit reports whether the kernel killed a process of the cell's run
// for going over the run's memory limit since the run started (cell).
func (c *cell) overLimit() bool {
	if !c.eventsOK {
		return false
	}
	now, ok := c.memEvents()
	return ok && now.overLimit(c.events)
}

// close kills what still runs in the warden's cgroups and removes them.
func (g *cgroups) close() error {
	g.mu.Lock()
	free := g.free
	g.free = nil
	g.mu.Unlock()
	for _, c := range free {
		c.closeFiles()
	}
	var err error
	if g.v2 != nil {
		err = g.v2.remove()
	}
	if g.v1 != nil {
		err = errors.Join(err, g.v1.remove())
		g.v1.home.Close()
	}
	if g.mem != nil && !g.mem.v2 {
		err = errors.Join(err, g.mem.remove())
	}
	return err
}

// tmpfsMagic is the file system type statfs gives for tmpfs (TMPFS_MAGIC).
const tmpfsMagic = 0x01021994

// onTmpfs reports whether dir is on tmpfs; false when statfs fails.
func onTmpfs(dir string) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return false
	}
	return int64(st.Type) == tmpfsMagic
}

// memoryEnforcement says where the cells' memory limits are set.
func (g *cgroups) memoryEnforcement() string {
	switch {
	case g.mem != nil && g.mem.v2:
		return kernelMemory
	case g.mem != nil:
		return kernelMemoryV1
	case g.memWhy != "":
		return g.memWhy
	}
	return "sampled"
}

// dirs returns the warden's own cgroups, for the guard: in v2, and in v1
// (cpu, then memory; none where not used).
func (g *cgroups) dirs() (v2 string, v1 []string) {
	if g.v2 != nil {
		v2 = g.v2.dir
	}
	if g.v1 != nil {
		v1 = append(v1, g.v1.dir)
	}
	if g.mem != nil && !g.mem.v2 {
		v1 = append(v1, g.mem.dir)
	}
	return v2, v1
}

// memV1 reports whether memory limits are set in the v1 memory hierarchy,
// which only a shell enters (cell.join).
func (g *cgroups) memV1() bool { return g != nil && g.mem != nil && !g.mem.v2 }

// remove kills what runs in the hierarchy's cgroup and removes it.
func (h *hierarchy) remove() error {
	h.ooms.close()
	h.ooms = nil
	return removeCgroup(h.dir, h.v2, os.Getpid(), 2*time.Second)
}

// quota converts cores to a CPU quota in µs per defaultPeriod: 0 (none)
// for no cores, and at least the kernel's least, 1 ms.
func quota(cores float64) int64 {
	if cores <= 0 || math.IsNaN(cores) {
		return 0
	}
	return max(1000, int64(math.Ceil(min(cores, maxCores)*defaultPeriod)))
}

// setQuota writes the quota q (0 for none) into the cell's cgroup in h.
func (c *cell) setQuota(h *hierarchy, q int64) error {
	if h == nil || q == c.quota {
		return nil
	}
	var file, val string
	switch {
	case h.v2 && q == 0:
		file, val = filepath.Join(c.v2dir, "cpu.max"), "max "+strconv.Itoa(defaultPeriod)
	case h.v2:
		file, val = filepath.Join(c.v2dir, "cpu.max"), strconv.FormatInt(q, 10)+" "+strconv.Itoa(defaultPeriod)
	case q == 0:
		file, val = filepath.Join(c.v1dir, "cpu.cfs_quota_us"), "-1"
	default:
		// The period of a v1 cgroup is defaultPeriod unless someone set
		// another; set it too, so that the quota means what it says.
		if err := writeControl(filepath.Join(c.v1dir, "cpu.cfs_period_us"), []byte(strconv.Itoa(defaultPeriod))); err != nil {
			return err
		}
		file, val = filepath.Join(c.v1dir, "cpu.cfs_quota_us"), strconv.FormatInt(q, 10)
	}
	err := writeControl(file, []byte(val))
	if errors.Is(err, syscall.EINVAL) && q != 0 && !h.v2 {
		// cgroup v1 refuses a quota over the worker's own: that one
		// limits the cell already.
		return c.setQuota(h, 0)
	}
	if err != nil {
		return err
	}
	c.quota = q
	return nil
}

// needsV1 reports whether the cell's processes must be in its v1 cgroup:
// for its quota, or because it has no v2 cgroup to hold them. (A v2 cgroup
// is entered at the clone, procAttr.)
func (c *cell) needsV1() bool {
	return c != nil && c.v1dir != "" && (c.quota != 0 || c.v2dir == "")
}

// join returns the shell text that moves the shell running it into the
// cell's v1 cgroups where it must be there (cpu, where cpu is set:
// needsV1; memory: a limit set in v1), to be put before the user's command
// on its first line; "" when none is needed.
func (c *cell) join(cpu bool) string {
	if c == nil {
		return ""
	}
	j := ""
	if cpu && c.needsV1() {
		j = c.joinV1
	}
	if c.memV1 && c.memLimit > 0 {
		j += c.joinM1
	}
	return j
}

// joinText is the shell text that moves the shell running it into the v1
// cgroup dir before anything else on its line runs: it writes its own pid
// ($$) into dir's cgroup.procs, so that the worker's threads never enter
// the cell (a v1 cgroup is entered by a thread, and the worker's memory
// must not be charged to a cell) and no thread is kept per cell to fork
// from inside. Where the write fails, the shell says so on its standard
// error and exits with joinFailed, having run nothing of the task's.
//
// The text has no newline and ends in ";", so the user's command keeps its
// line numbers ("sh: 1: …"); a syntax error on the user's first line stops
// the shell before anything on that line runs, the join included.
func joinText(dir string) string {
	procs := shellQuote(filepath.Join(dir, "cgroup.procs"))
	return "{ echo $$ >" + procs + ";} 2>/dev/null||{ echo " + shellQuote(joinFailedText+dir) + " >&2;exit " + strconv.Itoa(joinFailed) + ";};"
}

// shellQuote quotes s for sh, in single quotes.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// start runs fork, which forks the cell's process (Warden.start), in the
// cell (nil for none). Where the cell's processes must be in its v1 cpu
// cgroup and the process is not placed there otherwise (placed: a shell
// running join's text for cpu, or one whose quotaGate moves it there if
// need be), fork runs on the cell's launcher
// thread, which lives in that cgroup; else from the process's fork
// thread, or, where contained is set, from the calling thread. Either
// locked thread outlives what it forks, whose parent-death signal comes
// when that thread ends; contained says that no parent-death signal is
// needed (procAttr): the cell holds the process from its clone (v2) or
// from before it runs anything of the user's (joined), and the guard
// kills what is in the cell when the worker dies.
func (c *cell) start(fork func() error, placed, contained bool) error {
	if contained {
		return fork()
	}
	if !c.needsV1() || placed {
		var err error
		forkThread().run(func() { err = fork() })
		return err
	}
	if c.launcher == nil {
		l, err := startLauncher(c)
		if err != nil {
			return err
		}
		c.launcher = l
	}
	var err error
	c.launcher.run(func() { err = fork() })
	return err
}

// launcher is an OS thread that lives in one v1 cgroup, so that what it
// forks starts there: in cgroup v1 a thread has cgroups of its own. Moving
// the starting thread in and out for each task instead costs two cgroup
// migrations, some 65 µs, a tenth of a trivial task. Its end sends the
// processes it forked their parent-death signal, so it ends only when its
// cell is removed, once they are gone (or with the worker).
type launcher struct {
	jobs chan func()
	done chan struct{}
}

// startLauncher starts a launcher in c's v1 cgroup.
func startLauncher(c *cell) (*launcher, error) {
	if c.v1 == nil {
		f, err := os.OpenFile(filepath.Join(c.v1dir, "tasks"), os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		c.v1 = f
	}
	l := &launcher{jobs: make(chan func()), done: make(chan struct{})}
	entered := make(chan error, 1)
	go func() { // exits when stop closes jobs, or at once if it cannot enter
		defer close(l.done)
		runtime.LockOSThread()
		tid := strconv.Itoa(syscall.Gettid())
		_, err := c.v1.WriteString(tid)
		entered <- err
		if err != nil {
			runtime.UnlockOSThread()
			return
		}
		for job := range l.jobs {
			job()
		}
		// Back home, so that the cell can be removed at once; if it cannot
		// go, it stays locked and the runtime ends the thread.
		if _, err := c.home.WriteString(tid); err == nil {
			runtime.UnlockOSThread()
		}
	}()
	if err := <-entered; err != nil {
		<-l.done
		return nil, err
	}
	return l, nil
}

// forkThread is the thread that forks the processes that no cell's
// launcher forks. It is locked to its goroutine for the life of the
// process, so the parent-death signal of what it forks comes only with
// the worker's end. (Before, each process was forked from a thread locked
// until that process exited, which kept a thread blocked per running
// task; one thread serves them all, as forks are serialized by
// syscall.ForkLock anyway.)
var forkThread = sync.OnceValue(func() *launcher {
	l := &launcher{jobs: make(chan func()), done: make(chan struct{})}
	go func() { // exits only with the process: its thread must outlive every process it forks
		runtime.LockOSThread()
		for job := range l.jobs {
			job()
		}
	}()
	return l
})

// run runs job on the launcher's thread and waits for it.
func (l *launcher) run(job func()) {
	ran := make(chan struct{})
	l.jobs <- func() { job(); close(ran) }
	<-ran
}

// stop ends the launcher; its thread leaves the cgroup first.
func (l *launcher) stop() {
	close(l.jobs)
	<-l.done
}

// kill sends SIGKILL to every process in the cell, if there is one.
func (c *cell) kill() {
	switch {
	case c == nil:
	case c.seenEmpty || c.empty():
		// Nothing can enter an empty cell but a process forked inside:
		// it stays empty, and release need not look again.
		c.seenEmpty = true
	case c.v2dir != "":
		killCgroup(c.v2dir, true, 0)
		c.spent = true
	default:
		killCgroup(c.v1dir, false, selfPID())
	}
}

// empty reports whether no process is left in the cell (the worker's own,
// whose launcher thread lives in a v1 cell, does not count). It is asked
// twice per task, so it reads with plain system calls, not through os.File
// and the poller, which registers each cgroup file.
func (c *cell) empty() bool {
	fd := c.procs
	if fd < 0 {
		dir := c.v2dir
		if dir == "" {
			dir = c.v1dir
		}
		var err error
		if fd, err = syscall.Open(dir+"/cgroup.procs", syscall.O_RDONLY|syscall.O_CLOEXEC, 0); err != nil {
			return false
		}
		defer syscall.Close(fd)
	}
	var buf [64]byte
	n, err := syscall.Pread(fd, buf[:], 0)
	if err != nil || n == len(buf) {
		return false // a full buffer holds more than the worker's own pid
	}
	if n == 0 {
		return true // the common case: nothing to parse
	}
	self := selfPID()
	for f := range bytes.FieldsSeq(buf[:n]) {
		if pid, ok := atoi(f); !ok || pid != int64(self) {
			return false
		}
	}
	return true
}

// selfPID is os.Getpid, asked once: it is a system call each time.
var selfPID = sync.OnceValue(os.Getpid)

// remove kills what runs in the cell and removes its cgroups.
func (c *cell) remove() {
	c.closeFiles()
	if c.v2dir != "" {
		removeCgroup(c.v2dir, true, 0, settleWait)
	}
	if c.v1dir != "" {
		removeCgroup(c.v1dir, false, os.Getpid(), settleWait)
	}
	if c.memV1 {
		removeCgroup(c.memdir, false, os.Getpid(), settleWait)
	}
}

func (c *cell) closeFiles() {
	if c.launcher != nil {
		c.launcher.stop()
		c.launcher = nil
	}
	if c.v2fd >= 0 {
		syscall.Close(c.v2fd)
		c.v2fd = -1
	}
	if c.procs >= 0 {
		syscall.Close(c.procs)
		c.procs = -1
	}
	if c.v1 != nil {
		c.v1.Close()
		c.v1 = nil
	}
	if c.oomFD >= 0 {
		syscall.Close(c.oomFD)
		c.oomFD = -1
	}
	if c.cpuStatOpen {
		syscall.Close(c.cpuStat)
		c.cpuStatOpen = false
	}
	c.ooms.close()
	c.ooms = nil
}

// procsFD is procsFile open, the cell's own descriptor; -1 when there
// is none.
func (c *cell) procsFD() int {
	if c == nil || c.v2dir == "" {
		return -1
	}
	return c.procs
}

// procsFile is the cgroup.procs file of c's v2 cgroup, which lists every
// process in the cell; "" when there is none (no cell, or no v2).
func (c *cell) procsFile() string {
	if c == nil || c.v2dir == "" {
		return ""
	}
	return filepath.Join(c.v2dir, "cgroup.procs")
}

// procAttr returns the attributes of a process started in cell c (nil for
// none): a process group of its own, SIGKILL when the thread that started
// it ends (unless contained: cell.start), and the cell's v2 cgroup from
// the start.
func procAttr(c *cell, contained bool) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	if !contained {
		a.Pdeathsig = syscall.SIGKILL
	}
	if c != nil && c.v2fd >= 0 {
		a.UseCgroupFD, a.CgroupFD = true, c.v2fd
	}
	return a
}
