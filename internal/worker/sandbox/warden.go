package sandbox

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// WardenConfig configures a Warden.
type WardenConfig struct {
	// Guard is the command that runs the guard process: a program whose
	// main calls ServeGuard (the trellis binary with a hidden argument).
	// Nil runs no guard.
	Guard []string
	// Logger receives the warden's warnings; nil discards them.
	Logger *slog.Logger
	// SampleMemory samples the memory of limited runs even where the
	// kernel could enforce the limit in a memory cgroup: for tests and
	// measurements.
	SampleMemory bool
	// Dir is the directory the runs' sandboxes are in. Where it is on
	// tmpfs, memory limits are sampled rather than set in the cells'
	// memory cgroups: the files a task writes there are memory, and the
	// kernel would charge them to the task's limit. "" checks nothing.
	Dir string
}

// A Warden makes the processes a worker starts die with it, and enforces
// their CPU quotas. One serves a worker for its life; its methods are safe
// for concurrent use. A nil *Warden is valid: its processes are contained
// by process group and parent-death signal only. See the package doc.
type Warden struct {
	log   *slog.Logger
	cg    *cgroups // nil: no usable cgroup
	guard *guard   // nil: no guard process
	cpu   string   // how CPU quotas are enforced, or why not
	// sampleMemory: memory limits are sampled, never set in a cgroup.
	sampleMemory bool
	// memHow, where set, is what MemoryEnforcement says (why memory is
	// sampled although the kernel could limit it).
	memHow string
}

// NewWarden prepares the worker's cgroups where it may create them, removes
// those left by a dead earlier worker, and starts the guard process. Having
// no usable cgroup is not an error (Enforcement says so); failing to start
// the guard is.
func NewWarden(cfg WardenConfig) (*Warden, error) {
	w := &Warden{log: cfg.Logger, sampleMemory: cfg.SampleMemory}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.cg, w.cpu = openCgroups()
	if cfg.Dir != "" {
		w.sandboxesIn(cfg.Dir, onTmpfs(cfg.Dir))
	}
	if len(cfg.Guard) > 0 {
		var v2 string
		var v1 []string
		if w.cg != nil {
			v2, v1 = w.cg.dirs()
		}
		g, err := startGuard(cfg.Guard, v2, v1, w.log)
		if err != nil {
			if w.cg != nil {
				w.cg.close()
			}
			return nil, fmt.Errorf("sandbox: start the guard process %s: %w", strings.Join(cfg.Guard, " "), err)
		}
		w.guard = g
	}
	return w, nil
}

// Enforcement says how CPU quotas are enforced ("cgroup v2 cpu.max",
// "cgroup v1 quota", "cgroup v1 quota, from a task's first overrun" or
// "not enforced (why)"), and what makes the
// processes die with the worker.
func (w *Warden) Enforcement() (cpu, processes string) {
	if w == nil {
		return "not enforced (no warden)", "process groups, parent-death signal"
	}
	parts := []string{"process groups", "parent-death signal"}
	if w.cg != nil && w.guard != nil {
		// Tasks in their cells need none: the guard kills the cells.
		parts[1] = "parent-death signal where no cgroup holds a process from its start"
	}
	if w.cg != nil {
		v2, v1 := w.cg.dirs()
		if v2 != "" {
			parts = append(parts, "cgroup v2 "+v2)
		}
		for _, d := range v1 {
			parts = append(parts, "cgroup v1 "+d)
		}
	}
	if w.guard != nil {
		parts = append(parts, fmt.Sprintf("guard pid %d", w.guard.cmd.Process.Pid))
	} else {
		parts = append(parts, "no guard")
	}
	cpu = w.cpu
	if w.guard != nil && w.cg.gatesQuota() {
		cpu += ", from a task's first overrun" // quotaGate
	}
	return cpu, strings.Join(parts, ", ")
}

// MemoryEnforcement says how the memory limits of runs are enforced:
// "cgroup v2 memory.max" or "cgroup v1 memory.limit_in_bytes" where the
// kernel does it, else "sampled" (resident memory, summed over the run's
// processes, every PollInterval or so), with why where the kernel could
// have.
func (w *Warden) MemoryEnforcement() string {
	switch {
	case w == nil || w.cg == nil:
		return "sampled"
	case w.memHow != "":
		return w.memHow
	case w.sampleMemory:
		return "sampled"
	}
	return w.cg.memoryEnforcement()
}

// kernelMemory and kernelMemoryV1 are what MemoryEnforcement says where
// the kernel limits the runs' memory.
const (
	kernelMemory   = "cgroup v2 memory.max"
	kernelMemoryV1 = "cgroup v1 memory.limit_in_bytes"
)

// sandboxesIn tells the warden that the runs' sandboxes are in dir, on
// tmpfs or not: on tmpfs, memory that the kernel would limit is sampled
// instead, as the files a task writes would be charged to its memory.
func (w *Warden) sandboxesIn(dir string, tmpfs bool) {
	if how := w.MemoryEnforcement(); tmpfs && (how == kernelMemory || how == kernelMemoryV1) {
		w.sampleMemory = true
		w.memHow = "sampled (the sandboxes in " + dir + " are on tmpfs, whose files would count against a task's memory limit in its cgroup)"
	}
}

// Contained reports whether every process that Run starts runs in a
// cgroup cell of its own, which Run empties before it returns: then nothing
// a task started, not even a process that left its group, outlives its
// Run, unless Run says so (Result.Lingering: a process the kernel did not
// let go within a moment). Without cells, a process that leaves its group
// survives the group kill.
func (w *Warden) Contained() bool {
	return w != nil && w.cg != nil
}

// Close kills whatever still runs in the warden's cgroups, removes them,
// and stops the guard. Call it once every process it started has been
// waited for.
func (w *Warden) Close() error {
	if w == nil {
		return nil
	}
	var err error
	if w.cg != nil {
		err = w.cg.close()
	}
	if w.guard != nil {
		err = errors.Join(err, w.guard.close())
	}
	if err != nil {
		return fmt.Errorf("sandbox: close warden: %w", err)
	}
	return nil
}
