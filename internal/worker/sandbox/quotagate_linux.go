package sandbox

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// A task's CPU quota in cgroup v1 is applied at its first overrun.
//
// Where quotas live in cgroup v1 (the cpu controller is not in v2: the
// hybrid layout), a process enters its v1 cell only by a migration, which
// a task's shell made itself at every start (joinText). That cost each
// trivial task some 40 µs of CPU, now and then 8–20 ms (a v1 migration
// takes the kernel's cgroup_threadgroup_rwsem for writing, which waits for
// an RCU grace period when no migration came shortly before), and some
// 30 µs more while it ran in a cpu cgroup of its own: one worker running
// `true` tasks one at a time reached 0.70 of the spawn ceiling with it and
// 0.86–0.90 without (docs/benchmarks.md). So where the cell's v2 cgroup
// holds the process from its clone and counts its CPU time (cpu.stat,
// which v2 keeps with or without the cpu controller), the shell starts
// outside the v1 cell, and a quotaGate moves the cell's processes into it
// at the first check that finds them using more than the task's cores.
// A task that keeps to its cores never pays a migration; one that does not
// runs over its quota until the next check at most: the checks come at
// gateChecks after the start, then every gateEvery.
//
// quotaFromStart turns the gate off: every shell joins its v1 cell at its
// start, as where no v2 cgroup holds it (tests of the join set it).
var quotaFromStart bool

// gateChecks are when a quotaGate checks, from the start of the run (where
// it reads the usage that the first check compares with: no wake-up of its
// own). Early, so that a task that overruns from its start does so for
// tens of milliseconds, not a second; then rarer, so that hundreds of long
// tasks cost little. Each check is a wake-up of the worker, which 500
// one-core workers on two cores, their tasks each waiting some 150 ms for
// a core, paid at 1% of their throughput for each (docs/benchmarks.md).
var gateChecks = []time.Duration{25 * time.Millisecond, time.Second}

// gateEvery is the interval of a quotaGate's checks after gateChecks.
const gateEvery = time.Second

// gatesQuota reports whether the quotas of g's cells are in v1 beside v2
// cells, so that a shell in a cell that has one starts outside it where a
// guard kills the cells (deferQuota).
func (g *cgroups) gatesQuota() bool {
	return !quotaFromStart && g != nil && g.cpu != nil && g.cpu == g.v1 && g.v2 != nil
}

// deferQuota reports whether a shell started in c may start outside c's v1
// cpu cell, its quota applied by a quotaGate: c has a quota in v1 and a v2
// cgroup that it is cloned into.
func (c *cell) deferQuota() bool {
	return !quotaFromStart && c != nil && c.v1dir != "" && c.quota != 0 && c.v2dir != "" && c.v2fd >= 0
}

// overrun reports whether processes that used used of CPU time in elapsed
// used more than cores. The slack (a tenth more, and 10 ms) covers the kernel's
// accounting of a running process, which may lag by a tick: a task that
// keeps to its cores is seldom taken for one that does not, and costs only
// the migration it would have made at its start if it is.
func overrun(used, elapsed time.Duration, cores float64) bool {
	return used > time.Duration(1.1*cores*float64(elapsed))+10*time.Millisecond
}

// quotaGate watches the CPU time of a run started outside its v1 cpu cell
// and moves the cell's processes into it at the first check that finds an
// overrun; from then on each check moves those that were not moved yet
// (forked by a process before it moved). Its checks run on timers: a run
// shorter than the first check, most runs, costs a read of cpu.stat (its
// usage at the start) and a timer set and stopped.
type quotaGate struct {
	cell  *cell
	cores float64
	log   *slog.Logger
	start time.Time

	mu      sync.Mutex // guards the rest; held by a check, so stop waits for one under way
	timer   *time.Timer
	stopped bool
	checks  int           // checks made
	last    time.Duration // the cell's CPU time at the start, then at the last check
	lastAt  time.Time
	known   bool // last could be read at the start
	entered bool // the processes were moved into the v1 cell
}

// startQuotaGate starts the gate of a run of cores in c, started now.
func startQuotaGate(c *cell, cores float64, log *slog.Logger) *quotaGate {
	g := &quotaGate{cell: c, cores: cores, log: log, start: time.Now()}
	g.last, g.known = c.cpuTime()
	g.lastAt = g.start
	g.mu.Lock()
	g.timer = time.AfterFunc(gateChecks[0], g.check)
	g.mu.Unlock()
	return g
}

// stop ends the gate's checks, waiting for one under way: the cell may be
// reused once it returns. A nil gate has nothing to stop.
func (g *quotaGate) stop() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopped = true
	g.timer.Stop()
}

// check is one check, on the timer's goroutine.
func (g *quotaGate) check() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return
	}
	now := time.Now()
	if g.entered {
		g.enter() // those forked before their parent moved
	} else if used, ok := g.cell.cpuTime(); !ok || !g.known {
		g.enter() // its usage cannot be read: the quota holds from now
	} else if overrun(used-g.last, now.Sub(g.lastAt), g.cores) {
		g.enter()
	} else {
		g.last, g.lastAt = used, now
	}
	g.checks++
	next := gateEvery
	if g.checks < len(gateChecks) {
		next = gateChecks[g.checks] - now.Sub(g.start)
	}
	g.timer.Reset(max(next, time.Millisecond))
}

// enter moves the processes of the cell's v2 cgroup into its v1 cpu cell,
// but those there already (each move takes a lock that forks wait for).
// It reads the list again after each move until it finds none to move
// (a process that forked before it moved left its child behind; one
// forked after, the child followed), a few rounds at most: the next check
// moves the rest.
func (g *quotaGate) enter() {
	first := !g.entered
	g.entered = true
	procs := filepath.Join(g.cell.v1dir, "cgroup.procs")
	moved := map[int]bool{}
	if in, err := procsOf(g.cell.v1dir); err == nil {
		for _, pid := range in {
			moved[pid] = true
		}
	}
	for range 4 {
		pids, err := procsOf(g.cell.v2dir)
		if err != nil {
			return // the cell is gone with its processes, or will be
		}
		n := 0
		for _, pid := range pids {
			if moved[pid] || pid == 0 {
				continue
			}
			moved[pid] = true
			err := writeControl(procs, []byte(strconv.Itoa(pid)))
			switch {
			case err == nil:
				n++
			case errors.Is(err, syscall.ESRCH):
				// Gone already.
			default:
				g.log.Warn("cannot move a task's process into its cgroup v1 cpu cell: its CPU quota does not hold for it",
					"pid", pid, "cell", g.cell.v1dir, "err", err)
			}
		}
		if n == 0 {
			break
		}
	}
	if first {
		g.log.Debug("a task used more than its cores: its CPU quota holds from now", "cores", g.cores, "cell", g.cell.v1dir,
			"after", time.Since(g.start).Round(time.Millisecond))
	}
}

// cpuTime returns the CPU time of the cell's processes so far, from its
// v2 cgroup's cpu.stat; false where it cannot be read.
func (c *cell) cpuTime() (time.Duration, bool) {
	if !c.cpuStatOpen {
		fd, err := syscall.Open(filepath.Join(c.v2dir, "cpu.stat"), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return 0, false
		}
		c.cpuStat, c.cpuStatOpen = fd, true
	}
	var buf [512]byte
	n, err := syscall.Pread(c.cpuStat, buf[:], 0)
	if err != nil {
		return 0, false
	}
	const key = "usage_usec "
	b := buf[:n]
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	line, _, _ := bytes.Cut(b[i+len(key):], []byte("\n"))
	us, ok := atoi(line)
	return time.Duration(us) * time.Microsecond, ok
}
