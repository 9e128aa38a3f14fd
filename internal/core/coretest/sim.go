package coretest

import (
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"trellis/internal/core"
)

// Config describes one simulated run. Rates are chances per step of the
// event loop while faults are on; zero turns a fault off.
type Config struct {
	Seed    int64
	Workers int // workers at the start; lost and drained ones are replaced
	Tasks   int // tasks submitted over the run

	LossRate   float64 // a random worker is lost with what it runs
	DrainRate  float64 // a random worker drains: it returns or finishes its attempts, then leaves
	CancelRate float64 // the client cancels a random submitted task
	FailRate   float64 // chance that a finished attempt did not succeed (kept after faults stop)
	StaleRate  float64 // a stale or duplicate report, or another event the core must ignore
	TickRate   float64 // a Tick

	DepFraction   float64 // fraction of tasks that read outputs of earlier tasks
	AfterFraction float64 // fraction of tasks that run after earlier tasks (core.Task.After) not yet forgotten
	BadFraction   float64 // fraction of tasks that read their own output or claim another task's output
	GPUFraction   float64 // fraction of workers with GPUs; with zero, no task needs a GPU
	// UnplaceableFraction: fraction of tasks with an UnplaceableTimeout of
	// one to four ticks; each Tick moves the clock one second.
	UnplaceableFraction float64

	// Data. With all four fractions zero, every file is at the manager and
	// small enough to travel inline, so nothing is staged (the other data
	// fields then do nothing).
	TempFraction     float64 // fraction of task outputs declared temp files: kept on the worker, staged to consumers
	ExternalFraction float64 // fraction of tasks that read a file the client uploaded to the manager (External)
	OriginFraction   float64 // fraction of tasks that read a URL (Origin)
	DerivedFraction  float64 // fraction of tasks that read an unpacked archive (Derived, of a URL or of an output)
	MaxReplicas      int     // a third of the temp files ask for 2..MaxReplicas replicas; below 2, one
	ManagerFraction  float64 // chance that a temp output is also reported at the manager's store
	BadURLFraction   float64 // fraction of URLs whose origin always fails
	ReplicaLossRate  float64 // a random worker drops one or two random files it holds (FilesDropped)
	TransferFailRate float64 // chance that a fetch whose source has the file fails anyway (source or destination fault)
	RejoinFraction   float64 // chance that a lost worker comes back, under a new ID, with some of its files
	// LevelFraction: fraction of declared files given a task or workflow
	// level, which the core unlinks; the others get a worker or forever
	// level, or none. With it zero, files have no level and no session.
	LevelFraction  float64
	SessionEndRate float64 // a random client session ends (SessionEnded); declarations come from the live ones
	// CacheFullRate: chance that an attempt that ends is handed back for
	// a full cache instead (TaskReturned.CacheFull): the task must wait,
	// then run again, never be lost nor counted as failed.
	CacheFullRate float64
	// MaxDepth: task-level temp files are pruned with a depth drawn from
	// 0 to MaxDepth (FileSpec.Depth); Unlink must respect it.
	MaxDepth int32
	// BoundedCaches: each fake worker's cache holds its disk
	// (Resources.DiskMB, of 4 to 100 GB) of fetched files (outputs are
	// not counted). A fetch of known size reserves it when the core emits
	// it, evicting files the core released (Release), which the core
	// hears of only with the worker's next report, as from real workers;
	// one that cannot fit fails with CacheFull. A task must never be
	// dispatched with an evicted input. Without it, data runs give their
	// workers disks a thousand times larger, which no run fills.
	BoundedCaches bool
	// EvictRate: a random worker evicts a random copy the core released,
	// and reports it only with its next report (with BoundedCaches, as it
	// would to make room for a fetch the core does not see).
	EvictRate float64
	// KeepFraction: fraction of tasks given a random Keep (lineage,
	// replicas, a sync or async checkpoint), some of them nondeterministic
	// or with effects; the harness answers the checkpoints the core asks
	// for (see ckpt.go). Data runs only.
	KeepFraction float64

	// AtMostOnceFraction: fraction of tasks (and calls) that are
	// at-most-once (core.Task.AtMostOnce), writing no outputs. A lost
	// attempt leaves one unknown; the harness reconciles unknown tasks now
	// and then (done, failed or rerun), and every one at the end. The model
	// checks that none is dispatched again without a reconcile to rerun or
	// an attempt that failed before its command started.
	AtMostOnceFraction float64

	// Libraries. With Libraries zero, no library is installed and no call
	// made (the other library fields then do nothing).
	Libraries        int     // libraries installed: half at the start, the rest as tasks are submitted
	CallFraction     float64 // fraction of tasks that are calls of an installed library
	LibInputFraction float64 // fraction of the libraries installed later that read a file a task produces
	BrokenLibraries  int     // libraries whose instances always fail to start (every other one, from the second)
	SetupFailRate    float64 // chance that an instance of a working library fails to start (while faults are on)
	CrashRate        float64 // a random ready instance crashes (fails, or exceeds its memory) with its calls
	// LeaseRate: a lease step (a lease asked for or released, or a direct
	// call's end reported; see leases.go) while faults are on.
	LeaseRate float64

	BatchSize int // largest TasksSubmitted batch; 0 means 32
	MaxSteps  int // fail after this many steps; 0 means 50 per task plus 10,000

	// StrictPlacement makes the run fail when the incremental placement
	// misses a task: when a ready task fits an open worker after a step
	// (checked every few steps), or when a Tick dispatches anything. The
	// harness returns tasks only from draining workers, the one case the
	// core handles without a Tick.
	StrictPlacement bool

	// Ahead: tasks a worker may hold beyond its free resources
	// (core.SetAhead). The fake workers hold them as real ones do, in
	// order, start the first when it fits, and hand them back when they
	// drain; the model checks each held dispatch (ahead.go).
	Ahead int

	// Trace, if set, receives every step: its event and its actions.
	Trace io.Writer
	// Check, when set, is called with the core after every step, for
	// checks of its internals that only its package's tests can reach
	// (an export_test.go); a non-nil error fails the run.
	Check func(*core.Core) error
}

// Stats counts what happened in a run.
type Stats struct {
	Steps          int
	Dispatches     int
	Held           int // of Dispatches, those sent ahead (Config.Ahead)
	TickHeld       int // of Held, those a Tick made
	Revokes        int // held tasks revoked for a worker with room (ahead.go)
	HandedBackHeld int // of Revokes, those the holder handed back before it started them
	Requeues       int
	Kills          int
	StaleResults   int
	TickDispatches int // dispatches only a Tick made: the incremental placement missed them
	WorkersJoined  int
	WorkersLost    int // crashed
	WorkersDrained int
	Done           map[core.Kind]int
	Unknown        int // at-most-once attempts lost: their task waited for a Reconcile

	// Data.
	BytesPeer       int64 // brought to workers from peers (core.Stats.Moved)
	BytesManager    int64 // brought to workers from the manager
	Fetches         int
	FetchesForTasks int // naming the task they are for (checked: it can be staging)
	FetchFailures   int // answered with a failure (injected, or the source lacked the file)
	Dropped         int // replicas dropped by FilesDropped
	Rejoined        int // workers that came back with cached files
	Reruns          int
	Recreated       int
	FilesLost       int // distinct files with a FileLost
	Probes          int // tasks submitted after the run to read files no worker holds
	ProbesRecreated int // of which succeeded: the file was made again
	ProbesLost      int // of which failed with the file's FileLost reason
	Unlinked        int // replicas named by Unlink actions
	HandedBack      int // attempts handed back for a full cache
	SessionsEnded   int
	Released        int // copies named by Release actions
	Evicted         int // copies a worker evicted to make room (BoundedCaches), reported later
	EvictedForSpace int // copies the core unlinked to break a deadlock of full caches

	// Libraries.
	Libraries        int
	Reinstalls       int // a library installed again with the same spec
	Calls            int // calls submitted
	CallDispatches   int
	InstancesStarted int // dispatched
	InstancesReady   int
	SetupFailures    int // instances that failed to start
	InstanceCrashes  int
	Stops            int
	LibrariesBroken  int // LibraryBroken actions
	CallsBroken      int // calls of a library that never starts, failed with its reason
	Leases           int // LeaseGranted actions
	LeasesEnded      int
	LeasesYielded    int // of those, ended idle while calls of their library waited
	DirectCalls      int // direct calls' ends reported (DirectCallEnded, and those DirectCallsCounted counts)

	// Unplaceable tasks.
	Unplaceable         int // tasks told a reason by an Unplaceable
	UnplaceableCleared  int // tasks told none
	UnplaceableActions  int // Unplaceable actions: one tells many tasks
	UnplaceableTimedOut int // tasks a Tick ended after their UnplaceableTimeout

	// Checkpoints (Config.KeepFraction).
	Checkpoints        int // commits that counted
	CheckpointFailures int // answered with a failure
	SyncCheckpoints    int // tasks done with their outputs checkpointed with the report
	Barred             int // Barred actions: a task with effects waits for a checkpoint
}

func (s Stats) String() string {
	kinds := make([]string, 0, len(s.Done))
	for k := core.Success; k <= core.Cancelled; k++ {
		if n := s.Done[k]; n > 0 {
			kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
		}
	}
	out := fmt.Sprintf("steps=%d dispatches=%d requeues=%d kills=%d stale=%d tick-dispatches=%d workers joined=%d lost=%d drained=%d done[%s]",
		s.Steps, s.Dispatches, s.Requeues, s.Kills, s.StaleResults, s.TickDispatches,
		s.WorkersJoined, s.WorkersLost, s.WorkersDrained, strings.Join(kinds, " "))
	if s.Unknown > 0 {
		out += fmt.Sprintf(" unknown=%d", s.Unknown)
	}
	if s.Fetches > 0 || s.Dropped > 0 {
		out += fmt.Sprintf(" moved peer=%dMiB manager=%dMiB", s.BytesPeer>>20, s.BytesManager>>20)
		out += fmt.Sprintf(" fetches=%d failed=%d dropped=%d rejoined=%d reruns=%d recreated=%d lost=%d probes=%d (recreated %d, lost %d)",
			s.Fetches, s.FetchFailures, s.Dropped, s.Rejoined, s.Reruns, s.Recreated, s.FilesLost, s.Probes, s.ProbesRecreated, s.ProbesLost)
		if s.SessionsEnded > 0 || s.Unlinked > 0 {
			out += fmt.Sprintf(" sessions ended=%d unlinked=%d", s.SessionsEnded, s.Unlinked)
		}
		if s.Released > 0 || s.Evicted > 0 {
			out += fmt.Sprintf(" released=%d evicted=%d evicted-for-space=%d", s.Released, s.Evicted, s.EvictedForSpace)
		}
	}
	if s.Checkpoints > 0 || s.SyncCheckpoints > 0 {
		out += fmt.Sprintf(" checkpoints=%d failed=%d sync=%d barred=%d", s.Checkpoints, s.CheckpointFailures, s.SyncCheckpoints, s.Barred)
	}
	if s.Unplaceable > 0 {
		out += fmt.Sprintf(" unplaceable=%d cleared=%d timed-out=%d (in %d actions)", s.Unplaceable, s.UnplaceableCleared, s.UnplaceableTimedOut, s.UnplaceableActions)
	}
	if s.Calls > 0 {
		out += fmt.Sprintf(" libraries=%d reinstalls=%d calls=%d call-dispatches=%d instances started=%d ready=%d set-up failures=%d crashes=%d stops=%d broken=%d calls failed broken=%d",
			s.Libraries, s.Reinstalls, s.Calls, s.CallDispatches, s.InstancesStarted, s.InstancesReady, s.SetupFailures, s.InstanceCrashes, s.Stops, s.LibrariesBroken, s.CallsBroken)
	}
	if s.Leases > 0 {
		out += fmt.Sprintf(" leases=%d ended=%d yielded=%d direct-calls=%d", s.Leases, s.LeasesEnded, s.LeasesYielded, s.DirectCalls)
	}
	return out
}

// Run plays the scenario cfg describes against a new core, checks the
// model's invariants after every step, and fails tb with the seed and the
// step at the first violation. It returns what happened.
func Run(tb testing.TB, cfg Config) Stats {
	tb.Helper()
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 32
	}
	if cfg.MaxSteps <= 0 {
		cfg.MaxSteps = 50*cfg.Tasks + 10_000
	}
	s := &sim{
		tb:      tb,
		cfg:     cfg,
		rng:     rand.New(rand.NewPCG(uint64(cfg.Seed), 0x7e11)),
		c:       core.New(),
		files:   make(map[core.FileID]*fileInfo),
		workers: make(map[core.WorkerID]*simWorker),
		fates:   make(map[core.TaskID]*fate),
		history: make([]attemptRef, 0, historySize),
		d:       newDataState(),
		l:       newLibState(),
		stuck:   make(map[*simTask]bool),
	}
	s.stats.Done = make(map[core.Kind]int)
	s.c.SetAhead(cfg.Ahead)
	for range cfg.Workers {
		s.join(s.randomWorker())
	}
	for range (cfg.Libraries + 1) / 2 {
		s.installLib()
	}
	// Faults on: submit everything, then keep going for as many steps again.
	for s.next < cfg.Tasks {
		s.faultStep()
	}
	for range cfg.Tasks {
		if s.liveTasks == 0 {
			break
		}
		s.faultStep()
	}
	s.quiesce()
	if cfg.KeepFraction > 0 {
		s.ckptEnd()
	}
	s.checkEnd()
	if cfg.libsOn() {
		s.checkLibEnd()
	}
	if cfg.dataOn() {
		s.endSessions()
		s.quiesce()
		s.checkDataEnd(false)
		s.probe()
		s.checkEnd()
		s.checkDataEnd(true)
	}
	moved := s.c.Stats().Moved
	s.stats.BytesPeer, s.stats.BytesManager = moved[core.FromPeer], moved[core.FromManager]
	s.stats.EvictedForSpace = int(s.c.Stats().EvictedForSpace)
	return s.stats
}

// historySize bounds the ended attempts kept for duplicate reports.
const historySize = 256

// externalFiles is where the IDs of files no task produces start.
const externalFiles core.FileID = 1 << 40

type attemptRef struct {
	task    core.TaskID
	attempt uint32
	worker  core.WorkerID
}

type sim struct {
	tb    testing.TB
	cfg   Config
	rng   *rand.Rand
	c     *core.Core
	stats Stats

	step int
	ev   core.Event
	prev core.Action // the action of this step before the one applied; nil for the first

	tasks         []*simTask // tasks[i] has ID i+1; generated as they are submitted
	next          int        // tasks[:next] were submitted
	liveTasks     int        // submitted, accepted and not done
	doneCount     int
	flow          flowCounts                // of dataflow tasks
	files         map[core.FileID]*fileInfo // files whose claim the core accepted
	pickable      []core.FileID             // outputs of generated tasks, for consumers to read
	pickSubmitted int                       // pickable[:pickSubmitted] come from earlier batches
	nextFile      core.FileID

	workers      map[core.WorkerID]*simWorker // connected
	live         []*simWorker                 // connected, for random picks
	open         int                          // connected and not draining
	nextWorker   core.WorkerID
	pendingJoins int          // workers to add, replacing lost and drained ones
	leaving      []*simWorker // drained and idle: leave next

	running   []*simTask
	heldN     int          // tasks held ahead on their workers (ahead.go), not in running
	heldKills []attemptRef // held tasks killed: their workers ended them, the reports are on their way (ahead.go)
	revokes   []revokeRef  // Revokes on their way to the workers that hold the tasks (ahead.go)
	unknown   []*simTask   // at-most-once tasks in unknown, oldest first (some cancelled since)
	history   []attemptRef // ended attempts, a ring
	histPos   int

	// Expectations for the current step.
	fates      map[core.TaskID]*fate
	mustFinish []*simTask
	mustForget []*simTask // ended in this step, so that the core must forget them in it
	forgotten  []*simTask // forgotten in this step
	exact      bool       // the step must return exactly want
	want       []core.Action

	d  dataState  // files, holdings and transfers; see data.go
	l  libState   // libraries and instances; see libs.go
	k  ckptState  // checkpoints; see ckpt.go
	ls leaseState // leases; see leases.go

	now     time.Duration     // the clock of the last Tick
	stuck   map[*simTask]bool // told unplaceable; see unplaceable.go
	expired []*simTask        // run again, and ended by the current Tick
}

func (s *sim) failf(format string, args ...any) {
	s.tb.Helper()
	s.tb.Fatalf("seed %d step %d: %s\n\tevent: %s", s.cfg.Seed, s.step, fmt.Sprintf(format, args...), describe(s.ev))
}

func describe(ev core.Event) string {
	if b, ok := ev.(core.TasksSubmitted); ok {
		ids := make([]core.TaskID, len(b.Tasks))
		for i, t := range b.Tasks {
			ids[i] = t.ID
		}
		return fmt.Sprintf("TasksSubmitted%v", ids)
	}
	return fmt.Sprintf("%T%+v", ev, ev)
}

// do steps the core with ev, after recording what the model expects, and
// checks every action and the state after the step.
func (s *sim) do(ev core.Event) []core.Action {
	s.tb.Helper()
	s.step++
	s.stats.Steps = s.step
	if s.step > s.cfg.MaxSteps {
		s.failf("no end after %d steps: %d tasks live, %d running: %s", s.cfg.MaxSteps, s.liveTasks, len(s.running), s.describeLive(10))
	}
	s.ev = ev
	clear(s.fates)
	s.mustFinish = s.mustFinish[:0]
	s.mustForget, s.forgotten = s.mustForget[:0], s.forgotten[:0]
	s.exact, s.want = false, s.want[:0]

	s.expect(ev)
	acts := s.c.Step(ev)
	if s.cfg.Trace != nil {
		fmt.Fprintf(s.cfg.Trace, "step %d: %s\n", s.step, describe(ev))
		for _, a := range acts {
			fmt.Fprintf(s.cfg.Trace, "\t%T%+v\n", a, a)
		}
	}
	if s.exact && !equalActions(s.want, withoutLeaseEnds(withoutUnplaceable(s.withoutDeploys(acts)))) {
		s.failf("got actions %+v, want exactly %+v", acts, s.want)
	}
	for i, a := range acts {
		s.prev = nil
		if i > 0 {
			s.prev = acts[i-1]
		}
		s.apply(a)
	}
	s.afterStep(acts)
	if s.cfg.Check != nil {
		if err := s.cfg.Check(s.c); err != nil {
			s.failf("%v", err)
		}
	}
	return acts
}

// Event generation.

var (
	workerCores  = []int64{1500, 2000, 4000, 8000, 16000}
	workerMemory = []int64{4096, 8192, 16384, 65536}
	workerDisk   = []int64{10_000, 100_000}
	taskCores    = []int64{250, 500, 1000, 2000, 4000}
	taskMemory   = []int64{256, 1024, 4096, 16384}
	taskDisk     = []int64{0, 1000, 20_000}
)

// standardWorker fits every task the harness makes.
func (s *sim) standardWorker() core.WorkerJoined {
	s.nextWorker++
	ev := core.WorkerJoined{
		Worker:     s.nextWorker,
		Resources:  core.Resources{MilliCores: 16000, MemoryMB: 65536, DiskMB: 100_000, GPUs: 4},
		GPUs:       []int32{0, 1, 2, 3},
		HoldsAhead: true,
	}
	if s.cfg.dataOn() && !s.cfg.BoundedCaches {
		ev.Resources.DiskMB *= 1000 // see BoundedCaches
	}
	return ev
}

func (s *sim) randomWorker() core.WorkerJoined {
	s.nextWorker++
	r := s.rng
	ev := core.WorkerJoined{
		Worker:     s.nextWorker,
		HoldsAhead: s.nextWorker%4 != 0, // one in four an older worker, which holds none
		Resources: core.Resources{
			MilliCores: pick(r, workerCores),
			MemoryMB:   pick(r, workerMemory),
			DiskMB:     pick(r, workerDisk),
		},
	}
	switch {
	case s.cfg.BoundedCaches:
		ev.Resources.DiskMB = pick(r, []int64{4_000, 10_000})
	case s.cfg.dataOn():
		ev.Resources.DiskMB *= 1000 // caches no run fills (see BoundedCaches)
	}
	if r.Float64() < s.cfg.GPUFraction {
		n := 1 + r.IntN(4)
		devs := r.Perm(8)[:n] // distinct device indexes, in random order
		for _, d := range devs {
			ev.GPUs = append(ev.GPUs, int32(d))
		}
		ev.Resources.GPUs = int64(n)
	}
	return ev
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func (s *sim) join(ev core.WorkerJoined) { s.do(ev) }

// genTask makes the next task. Its inputs are outputs of earlier tasks (so
// the graph has no cycles), plus now and then a file no task produces.
func (s *sim) genTask() *simTask {
	r := s.rng
	spec := core.Task{
		ID: core.TaskID(len(s.tasks) + 1),
		Resources: core.Resources{
			MilliCores: pick(r, taskCores),
			MemoryMB:   pick(r, taskMemory),
			DiskMB:     pick(r, taskDisk),
		},
		Priority:     int32(r.IntN(3)),
		Retries:      int32(r.IntN(4)),
		RetryOnError: r.IntN(2) == 0,
	}
	spec.UnplaceableTimeout = s.unplaceableLimit()
	if s.cfg.libsOn() && r.Float64() < s.cfg.CallFraction {
		s.genCall(&spec)
	}
	if s.cfg.GPUFraction > 0 {
		switch r.IntN(20) {
		case 0:
			spec.Resources.GPUs = 2
		case 1, 2:
			spec.Resources.GPUs = 1
		}
	}
	spec.AtMostOnce = s.cfg.AtMostOnceFraction > 0 && r.Float64() < s.cfg.AtMostOnceFraction
	for range r.IntN(3) {
		if spec.AtMostOnce {
			break // its outputs could not be made again
		}
		s.nextFile++
		spec.Outputs = append(spec.Outputs, s.nextFile)
	}
	if n := len(s.pickable); n > 0 && r.Float64() < s.cfg.DepFraction {
		for range 1 + r.IntN(3) {
			if r.IntN(10) < 7 {
				spec.Inputs = append(spec.Inputs, s.pickable[n-1-r.IntN(min(n, 64))]) // recent: likely pending
			} else {
				spec.Inputs = append(spec.Inputs, s.pickable[r.IntN(n)])
			}
		}
	}
	if r.IntN(10) == 0 {
		spec.Inputs = append(spec.Inputs, externalFiles+core.FileID(r.IntN(1000)))
	}
	if n := len(s.tasks); n > 0 && s.cfg.AfterFraction > 0 && r.Float64() < s.cfg.AfterFraction {
		// Earlier tasks only, so that orderings form no cycle; of this
		// batch (not submitted yet), or of earlier ones the core still knows.
		for range 1 + r.IntN(2) {
			if p := s.tasks[n-1-r.IntN(min(n, 48))]; !p.forgotten {
				spec.After = append(spec.After, p.spec.ID)
			}
		}
	}
	t := &simTask{runPos: -1, mayRun: 1}
	conflict := false
	if r.Float64() < s.cfg.BadFraction {
		if r.IntN(2) == 0 && s.pickSubmitted > 0 {
			// Claim a file an earlier batch claimed: rejected at submission.
			spec.Outputs = []core.FileID{s.pickable[r.IntN(s.pickSubmitted)]}
			conflict = true
		} else {
			if len(spec.Outputs) == 0 {
				s.nextFile++
				spec.Outputs = append(spec.Outputs, s.nextFile)
			}
			spec.Inputs = append(spec.Inputs, spec.Outputs[r.IntN(len(spec.Outputs))])
			t.selfRead = true
		}
	}
	if s.cfg.dataOn() {
		if !conflict {
			s.genOutputs(spec.Outputs)
		}
		if r.Float64() < s.cfg.ExternalFraction {
			spec.Inputs = append(spec.Inputs, s.pickExternal())
		}
		if r.Float64() < s.cfg.OriginFraction {
			spec.Inputs = append(spec.Inputs, s.pickURL())
		}
		if r.Float64() < s.cfg.DerivedFraction {
			spec.Inputs = append(spec.Inputs, s.pickDerived())
		}
		s.genKeep(&spec)
		s.keptOutputs(spec)
	}
	if !conflict {
		s.pickable = append(s.pickable, spec.Outputs...)
	}
	t.spec = spec
	t.deps = s.depsOf(spec.Inputs)
	s.tasks = append(s.tasks, t)
	if spec.Role == core.Call {
		if l := s.lib(spec.Lib); l != nil {
			l.calls = append(l.calls, t)
		}
		s.stats.Calls++
	}
	return t
}

// addTask adds a task made outside genTask (a probe) to the model.
func (s *sim) addTask(spec core.Task) *simTask {
	t := &simTask{spec: spec, runPos: -1, deps: s.depsOf(spec.Inputs), mayRun: 1}
	s.tasks = append(s.tasks, t)
	return t
}

func (s *sim) submitBatch() {
	n := min(1+s.rng.IntN(s.cfg.BatchSize), s.cfg.Tasks-s.next)
	batch := make([]core.Task, n)
	for i := range batch {
		batch[i] = s.genTask().spec
	}
	if s.rng.IntN(4) == 0 {
		// Consumers may come before their producers within a batch.
		s.rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
	}
	if len(s.d.specs) > 0 {
		s.declare()
	}
	s.next += n
	s.do(core.TasksSubmitted{Tasks: batch})
	s.pickSubmitted = len(s.pickable)
	if len(s.l.libs) < s.cfg.Libraries && s.rng.IntN(4) == 0 {
		s.installLib()
	}
}

// workerFetchFailed is the message of the InputMissing a fake worker
// reports at random (outcome): no file is lost for it. The core's own
// fetch failures say "fetch from <source>: …".
const workerFetchFailed = "fetch failed"

// outcome returns how a fake worker reports an attempt ended: success, or
// at FailRate a failure of a random kind.
func (s *sim) outcome() core.Outcome {
	r := s.rng
	if r.Float64() >= s.cfg.FailRate {
		return core.Outcome{Kind: core.Success}
	}
	switch n := r.IntN(10); n {
	case 5:
		return core.Outcome{Kind: core.TimedOut, Message: "timed out"}
	case 6:
		return core.Outcome{Kind: core.ResourceExceeded, Message: "memory"}
	case 7:
		return core.Outcome{Kind: core.InputMissing, Message: workerFetchFailed}
	case 8:
		return core.Outcome{Kind: core.WorkerLost, Message: "gave up"}
	case 9:
		return core.Outcome{Kind: core.Cancelled, Message: "cancelled by the worker"}
	default:
		return core.Outcome{Kind: core.Failed, ExitCode: int32(1 + n), Message: "exit"}
	}
}

// faultStep makes one random step while faults are on.
func (s *sim) faultStep() {
	if len(s.unknown) > 0 && s.rng.IntN(16) == 0 {
		s.reconcile()
		return
	}
	u, c := s.rng.Float64(), s.cfg
	switch {
	case u < c.LossRate:
		s.loseWorker()
	case u < c.LossRate+c.DrainRate:
		s.drainWorker()
	case u < c.LossRate+c.DrainRate+c.CancelRate:
		if s.next > 0 {
			s.do(core.CancelTask{Task: core.TaskID(1 + s.rng.IntN(s.next))})
		}
	case u < c.LossRate+c.DrainRate+c.CancelRate+c.StaleRate:
		s.staleStep()
	case u < c.LossRate+c.DrainRate+c.CancelRate+c.StaleRate+c.TickRate:
		s.tick()
	case u < c.LossRate+c.DrainRate+c.CancelRate+c.StaleRate+c.TickRate+c.ReplicaLossRate:
		s.dropReplica()
	case u < c.LossRate+c.DrainRate+c.CancelRate+c.StaleRate+c.TickRate+c.ReplicaLossRate+c.CrashRate:
		s.crashInstance()
	case u < c.LossRate+c.DrainRate+c.CancelRate+c.StaleRate+c.TickRate+c.ReplicaLossRate+c.CrashRate+c.SessionEndRate:
		s.endSession()
	case u < c.LossRate+c.DrainRate+c.CancelRate+c.StaleRate+c.TickRate+c.ReplicaLossRate+c.CrashRate+c.SessionEndRate+c.EvictRate:
		s.evictReleased()
	case u < c.LossRate+c.DrainRate+c.CancelRate+c.StaleRate+c.TickRate+c.ReplicaLossRate+c.CrashRate+c.SessionEndRate+c.EvictRate+c.LeaseRate:
		s.leaseStep()
	default:
		s.progress()
	}
}

// progress moves the run forward: workers join and leave, batches are
// submitted and attempts end.
func (s *sim) progress() {
	r := s.rng
	switch {
	case len(s.heldKills) > 0:
		s.reportHeldKill()
	case len(s.revokes) > 0 && r.IntN(2) == 0:
		s.answerRevoke()
	case len(s.leaving) > 0:
		w := s.leaving[0]
		s.leaving = s.leaving[1:]
		if !w.gone && len(w.running) == 0 {
			s.do(core.WorkerLeft{Worker: w.id, Reason: "drained"})
		}
	case s.pendingJoins > 0 && (s.open == 0 || r.IntN(4) == 0):
		s.pendingJoins--
		if len(s.d.rejoins) > 0 {
			ev := s.d.rejoins[0]
			s.d.rejoins = s.d.rejoins[1:]
			// Not the files lost since: a FileLost is for good.
			ev.Cached = slices.DeleteFunc(ev.Cached, func(cf core.CachedFile) bool { return len(s.d.decl[cf.File].lost) > 0 })
			s.stats.Rejoined++
			s.join(ev)
		} else {
			s.join(s.randomWorker())
		}
	case s.next < s.cfg.Tasks && (len(s.running) == 0 || r.IntN(4) == 0):
		s.submitBatch()
	case len(s.d.fetches) > 0 && (len(s.running) == 0 || r.IntN(2) == 0):
		s.answerFetch(true)
	case len(s.l.pending) > 0 && (len(s.running) == 0 || r.IntN(3) == 0):
		s.answerInstance(true)
	case len(s.k.pending) > 0 && (len(s.running) == 0 || r.IntN(3) == 0):
		s.answerCheckpoint(true)
	case len(s.running) > 0:
		s.endAttempt()
	case s.next < s.cfg.Tasks:
		s.submitBatch()
	case s.liveTasks+s.d.rerunning > 0:
		// Nothing runs: what is queued fits no worker, or waits for a
		// source to have room (a peer backed off). Tick, or add a worker.
		if s.cfg.dataOn() && r.IntN(3) != 0 {
			s.tick()
		} else if r.IntN(2) == 0 {
			s.join(s.standardWorker())
		} else {
			s.join(s.randomWorker())
		}
	default:
		s.tick()
	}
}

// endAttempt ends a random running attempt: a draining worker may hand it
// back, otherwise it finishes with a random outcome.
func (s *sim) endAttempt() {
	t := s.running[s.rng.IntN(len(s.running))]
	if s.reportEvicted(t.worker) {
		return // (which may have ended t)
	}
	if t.worker.draining && s.rng.IntN(2) == 0 {
		s.do(core.TaskReturned{Task: t.spec.ID, Attempt: t.attempt, Worker: t.worker.id})
		return
	}
	if s.rng.Float64() < s.cfg.CacheFullRate {
		s.stats.HandedBack++
		s.do(core.TaskReturned{Task: t.spec.ID, Attempt: t.attempt, Worker: t.worker.id, CacheFull: true})
		return
	}
	ev := core.TaskFinished{Task: t.spec.ID, Attempt: t.attempt, Worker: t.worker.id, Outcome: s.outcome()}
	if ev.Outcome.Kind == core.Success && !t.cancelled {
		ev.Outputs = s.outputs(t)
	}
	s.do(ev)
}

// outputs makes the report of t's outputs on success, and puts them where
// the report says: temp files in the worker's cache (and now and then at
// the manager too, or only there); other outputs at the manager, small
// ones (inline) or not.
func (s *sim) outputs(t *simTask) []core.OutputInfo {
	var outs []core.OutputInfo
	for _, f := range t.spec.Outputs {
		df := s.d.decl[f]
		if df == nil {
			// No data in this run: small, at the manager, never staged.
			outs = append(outs, core.OutputInfo{File: f, Manager: true, Inline: true})
			continue
		}
		if !df.temp {
			df.manager = true
			outs = append(outs, core.OutputInfo{File: f, Size: df.size, Manager: true, Inline: df.inline})
			continue
		}
		o := core.OutputInfo{File: f, Size: df.size, Kept: true}
		if s.rng.Float64() < s.cfg.ManagerFraction {
			o.Manager, o.Kept = true, s.rng.IntN(2) == 0
			o.Inline = df.size < 1<<16
			df.manager, df.inline = true, o.Inline
		}
		if t.spec.Keep == core.KeepCheckpointSync {
			s.syncOutput(t, &o, df)
		}
		if o.Kept {
			s.hold(t.worker, f)
			t.worker.loose.remove(f) // an output: never evicted by its worker
			t.worker.fetched.remove(f)
			t.worker.evicted.remove(f) // here again: its eviction is not reported
		}
		outs = append(outs, o)
	}
	return outs
}

func (s *sim) loseWorker() {
	if len(s.live) == 0 {
		return
	}
	w := s.live[s.rng.IntN(len(s.live))]
	s.stats.WorkersLost++
	s.pendingJoins++
	if s.cfg.RejoinFraction > 0 && s.rng.Float64() < s.cfg.RejoinFraction {
		s.rejoin(w)
	}
	s.do(core.WorkerLeft{Worker: w.id, Reason: "lost"})
}

func (s *sim) drainWorker() {
	if s.open == 0 {
		return
	}
	for {
		w := s.live[s.rng.IntN(len(s.live))]
		if !w.draining {
			s.pendingJoins++
			s.do(core.WorkerDraining{Worker: w.id})
			for len(w.held) > 0 && !w.gone { // as a real worker does at once (held runs never started)
				t := w.held[0]
				if t.killed { // ended before the drain: its report comes first
					s.reportHeldKill()
					continue
				}
				s.do(core.TaskReturned{Task: t.spec.ID, Attempt: t.attempt, Worker: w.id})
			}
			return
		}
	}
}

// staleStep sends a report or event the core must ignore, or answer with
// StaleResult alone.
func (s *sim) staleStep() {
	r := s.rng
	unknown := core.TaskID(len(s.tasks) + 1_000_000)
	n := 8
	if s.cfg.dataOn() {
		n = 11
	}
	if s.cfg.libsOn() && r.IntN(3) == 0 && s.staleLibStep() {
		return
	}
	switch r.IntN(n) {
	case 0, 1: // a duplicate report of an ended attempt
		if len(s.history) > 0 {
			h := s.history[r.IntN(len(s.history))]
			if r.IntN(3) == 0 {
				s.do(core.TaskReturned{Task: h.task, Attempt: h.attempt, Worker: h.worker})
			} else {
				s.do(core.TaskFinished{Task: h.task, Attempt: h.attempt, Worker: h.worker, Outcome: s.outcome()})
			}
			return
		}
	case 2: // the running attempt, from the wrong worker
		if len(s.running) > 0 {
			t := s.running[r.IntN(len(s.running))]
			s.do(core.TaskFinished{Task: t.spec.ID, Attempt: t.attempt, Worker: t.worker.id + 1, Outcome: s.outcome()})
			return
		}
	case 3: // an attempt that was never dispatched
		if len(s.running) > 0 {
			t := s.running[r.IntN(len(s.running))]
			s.do(core.TaskFinished{Task: t.spec.ID, Attempt: t.attempt + 1, Worker: t.worker.id, Outcome: s.outcome()})
			return
		}
	case 4: // a live task submitted again
		if s.liveTasks > 0 {
			for {
				t := s.tasks[r.IntN(s.next)]
				if !t.done && !t.rejected {
					s.do(core.TasksSubmitted{Tasks: []core.Task{t.spec}})
					return
				}
			}
		}
	case 5: // a worker joins twice
		if len(s.live) > 0 {
			w := s.live[r.IntN(len(s.live))]
			s.do(core.WorkerJoined{Worker: w.id, Resources: core.Resources{MilliCores: 64000, MemoryMB: 1 << 20}})
			return
		}
	case 8: // a report of a transfer the core no longer knows
		if len(s.d.answered) > 0 {
			s.do(core.TransferDone{Transfer: s.d.answered[r.IntN(len(s.d.answered))], OK: r.IntN(2) == 0, Size: 1})
			return
		}
	case 9: // a worker drops a file it does not hold
		if len(s.live) > 0 && len(s.d.temps) > 0 {
			w := s.live[r.IntN(len(s.live))]
			f := s.d.temps[r.IntN(len(s.d.temps))]
			if !s.believed(w, f) {
				s.d.noop = true
				s.do(core.FilesDropped{Worker: w.id, Files: []core.FileID{f}})
				s.d.noop = false
				return
			}
		}
	case 10: // files declared again, as another client of the workflow would
		if len(s.d.urls) > 0 {
			f := s.d.urls[r.IntN(len(s.d.urls))]
			s.do(core.FilesDeclared{Files: []core.FileSpec{{ID: f, Kind: core.Origin}}})
			return
		}
	case 6: // a departed or unknown worker drains or leaves
		id := core.WorkerID(r.IntN(int(s.nextWorker) + 1))
		if s.workers[id] == nil {
			if r.IntN(2) == 0 {
				s.do(core.WorkerDraining{Worker: id})
			} else {
				s.do(core.WorkerLeft{Worker: id, Reason: "unknown"})
			}
			return
		}
	}
	s.do(core.TaskFinished{Task: unknown, Attempt: 1, Worker: 1, Outcome: core.Outcome{Kind: core.Success}})
}

// quiesce stops the faults, adds workers that fit every task, and runs
// until every task has its Done. A Tick is sent only when nothing runs and
// no fetch is pending; if it places nothing either (with data: if no Tick
// does anything for longer than a peer is backed off), some task waits
// forever.
func (s *sim) quiesce() {
	for range max(1, s.cfg.Workers/4) {
		s.join(s.standardWorker())
	}
	idle := 0
	for s.liveTasks+s.d.rerunning > 0 || len(s.running) > 0 || len(s.leaving) > 0 || len(s.d.fetches) > 0 || len(s.l.pending) > 0 || len(s.k.pending) > 0 {
		switch {
		case len(s.unknown) > 0:
			idle = 0
			s.reconcile()
		case len(s.leaving) > 0:
			w := s.leaving[0]
			s.leaving = s.leaving[1:]
			if !w.gone && len(w.running) == 0 {
				s.do(core.WorkerLeft{Worker: w.id, Reason: "drained"})
			}
		case len(s.d.fetches) > 0 && (len(s.running) == 0 || s.rng.IntN(2) == 0):
			idle = 0
			s.answerFetch(false)
		case len(s.l.pending) > 0 && (len(s.running) == 0 || s.rng.IntN(3) == 0):
			idle = 0
			s.answerInstance(false)
		case len(s.k.pending) > 0 && (len(s.running) == 0 || s.rng.IntN(3) == 0):
			idle = 0
			s.answerCheckpoint(false)
		case len(s.running) > 0:
			idle = 0
			s.endAttempt()
		default:
			before, owed := len(s.running), len(s.l.pending)
			acts := s.tick()
			if !s.cfg.dataOn() {
				if len(s.running) > before || len(s.l.pending) > owed { // dispatched, or stopped an instance
					idle = 0
					continue
				}
				// Idle instances make room for waiting tasks after IdleTicks.
				if idle++; !s.cfg.libsOn() || idle > core.IdleTicks {
					s.failf("%d tasks wait forever: %s%s", s.liveTasks, s.describeLive(10), s.describeLibs())
				}
				continue
			}
			if len(acts) > 0 {
				idle = 0
			} else if idle++; idle > core.BackoffTicks+1 {
				s.failf("%d tasks (and %d run again) wait forever: %s%s%s", s.liveTasks, s.d.rerunning, s.describeLive(10), s.describeData(), s.describeLibs())
			}
		}
	}
}

// describeLive lists up to n live tasks and what they wait for.
func (s *sim) describeLive(n int) string {
	var b strings.Builder
	for _, t := range s.tasks {
		if n == 0 {
			break
		}
		if !t.submitted || t.done && !t.rerunning || t.rejected {
			continue
		}
		n--
		state, attempt, _ := s.c.TaskState(t.spec.ID)
		fmt.Fprintf(&b, "\n\ttask %d (%s, attempt %d, run again %v, needs %v, inputs %v, deps %v, role %d of library %d)", t.spec.ID, state, attempt, t.rerunning, t.spec.Resources, t.spec.Inputs, t.deps, t.spec.Role, t.spec.Lib)
	}
	return b.String()
}

// reconcile gives a random verdict on the oldest task in unknown that is
// still there (one cancelled meanwhile is skipped).
func (s *sim) reconcile() {
	t := s.unknown[0]
	s.unknown = s.unknown[1:]
	if !t.unknown {
		return
	}
	verdict := []core.Verdict{core.VerdictDone, core.VerdictFailed, core.VerdictRerun}[s.rng.IntN(3)]
	s.do(core.Reconcile{Task: t.spec.ID, Verdict: verdict})
}
