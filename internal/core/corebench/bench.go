// Package corebench measures the scheduler core alone, with no processes: how many
// placement decisions a second it makes and how much memory a queued task
// costs, at a size and at a tenth of its workers or tasks. `trellis bench core`
// prints its result.
package corebench

import (
	"math/rand/v2"
	"runtime"
	"time"

	"trellis/internal/core"
)

// Targets of the core benchmark at 1,000 workers and 1,000,000 queued tasks.
const (
	TargetDecisionsPerS      = 200_000
	TargetBytesPerQueuedTask = 2048
	// MaxGrowth bounds how much more a decision may cost with ten times the
	// workers, or ten times the queued tasks. Linear growth would be 10.
	MaxGrowth = 3
)

// MaxBenchDecisions caps the decisions timed at one size.
const MaxBenchDecisions = 1_000_000

// BenchResult is what BenchCore measured. The headline figures are for the
// size asked for; the scaling figures compare the cost of one decision with
// a tenth of the workers and a tenth of the tasks ("small"), with all the
// workers and a tenth of the tasks, and with a tenth of the workers and all
// the tasks.
type BenchResult struct {
	Bench              string  `json:"bench"`
	Workers            int     `json:"workers"`
	Tasks              int     `json:"tasks"`
	Decisions          int     `json:"decisions"`
	DecisionsPerS      float64 `json:"decisions_per_s"`
	NsPerDecision      float64 `json:"ns_per_decision"`
	BytesPerQueuedTask float64 `json:"bytes_per_queued_task"`

	NsPerDecisionSmall       float64 `json:"ns_per_decision_small"`        // workers/10, tasks/10
	NsPerDecisionManyWorkers float64 `json:"ns_per_decision_many_workers"` // workers, tasks/10
	NsPerDecisionManyTasks   float64 `json:"ns_per_decision_many_tasks"`   // workers/10, tasks
	WorkerGrowth             float64 `json:"worker_growth"`                // many workers / small: cost of 10x the workers
	TaskGrowth               float64 `json:"task_growth"`                  // many tasks / small: cost of 10x the queued tasks

	MeetsTargets bool         `json:"meets_targets"` // against the Target constants and MaxGrowth
	Points       []BenchPoint `json:"points"`        // every size measured, the headline first
}

// BenchPoint is the measurement at one size.
type BenchPoint struct {
	Workers            int     `json:"workers"`
	Tasks              int     `json:"tasks"`
	Queued             int     `json:"queued"` // tasks waiting for a worker once all were submitted
	SubmitS            float64 `json:"submit_s"`
	Decisions          int     `json:"decisions"`
	Finishes           int     `json:"finishes"` // TaskFinished steps it took
	DecisionsPerS      float64 `json:"decisions_per_s"`
	NsPerDecision      float64 `json:"ns_per_decision"`
	BytesPerQueuedTask float64 `json:"bytes_per_queued_task"`
}

// BenchCore measures the core with the given number of workers and tasks,
// and at a tenth of each to show how a decision's cost scales. See
// MeasureCore for the method.
func BenchCore(workers, tasks int) BenchResult {
	tenthW, tenthT := max(1, workers/10), max(1, tasks/10)
	head := MeasureCore(workers, tasks)
	small := MeasureCore(tenthW, tenthT)
	manyW := MeasureCore(workers, tenthT)
	manyT := MeasureCore(tenthW, tasks)
	r := BenchResult{
		Bench:                    "core",
		Workers:                  workers,
		Tasks:                    tasks,
		Decisions:                head.Decisions,
		DecisionsPerS:            head.DecisionsPerS,
		NsPerDecision:            head.NsPerDecision,
		BytesPerQueuedTask:       head.BytesPerQueuedTask,
		NsPerDecisionSmall:       small.NsPerDecision,
		NsPerDecisionManyWorkers: manyW.NsPerDecision,
		NsPerDecisionManyTasks:   manyT.NsPerDecision,
		Points:                   []BenchPoint{head, small, manyW, manyT},
	}
	if small.NsPerDecision > 0 {
		r.WorkerGrowth = manyW.NsPerDecision / small.NsPerDecision
		r.TaskGrowth = manyT.NsPerDecision / small.NsPerDecision
	}
	r.MeetsTargets = r.DecisionsPerS >= TargetDecisionsPerS && r.BytesPerQueuedTask <= TargetBytesPerQueuedTask &&
		r.WorkerGrowth < MaxGrowth && r.TaskGrowth < MaxGrowth
	return r
}

// MeasureCore joins workers workers (16 cores, 64 GB each) to a new core and
// submits tasks tasks of three shapes (1 core and 4 GB, 2 cores and 8 GB,
// half a core and 2 GB) and three priorities, in batches of 1,000. The live
// heap before and after the submissions, divided by the tasks left queued,
// gives the bytes per queued task (the tasks that run are counted in the
// heap but not in the divisor, so the figure errs high). Then it times the
// steady state: it finishes a random running attempt and lets the core
// dispatch the next, counting Dispatch actions as decisions, until half the
// queue has been dispatched or MaxBenchDecisions were made.
func MeasureCore(workers, tasks int) BenchPoint {
	p := BenchPoint{Workers: workers, Tasks: tasks}
	s := NewSteady(workers, 1)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	s.Submit(tasks)
	p.SubmitS = time.Since(start).Seconds()
	runtime.GC()
	runtime.ReadMemStats(&after)
	p.Queued = s.Queued()
	if p.Queued > 0 {
		p.BytesPerQueuedTask = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(p.Queued)
	}

	target := max(1, min(p.Queued/2, MaxBenchDecisions))
	start = time.Now()
	for p.Decisions < target && s.Running() > 0 {
		p.Decisions += s.Next()
		p.Finishes++
	}
	elapsed := time.Since(start)
	runtime.KeepAlive(s)
	if p.Decisions > 0 {
		p.NsPerDecision = float64(elapsed.Nanoseconds()) / float64(p.Decisions)
		p.DecisionsPerS = float64(p.Decisions) / elapsed.Seconds()
	}
	return p
}

// benchShapes are the resource shapes of the benchmark's tasks.
var benchShapes = [...]core.Resources{
	{MilliCores: 1000, MemoryMB: 4096},
	{MilliCores: 2000, MemoryMB: 8192},
	{MilliCores: 500, MemoryMB: 2048},
}

const benchBatch = 1000

// Steady holds a core in the benchmark's steady state: full workers, a
// queue of tasks, and the attempts it dispatched, so that each finished
// attempt makes room for the next decision. It is deterministic for a seed.
type Steady struct {
	c       *core.Core
	rng     *rand.Rand
	running []attemptRef
	nextID  core.TaskID
	batch   []core.Task
}

// NewSteady returns a core with workers idle workers of 16 cores and 64 GB.
func NewSteady(workers int, seed uint64) *Steady {
	s := &Steady{
		c:     core.New(),
		rng:   rand.New(rand.NewPCG(seed, 0xbe4c)),
		batch: make([]core.Task, 0, benchBatch),
	}
	for i := range workers {
		s.record(s.c.Step(core.WorkerJoined{
			Worker:    core.WorkerID(i + 1),
			Resources: core.Resources{MilliCores: 16000, MemoryMB: 65536, DiskMB: 100_000},
		}))
	}
	return s
}

// Core returns the core under test.
func (s *Steady) Core() *core.Core { return s.c }

// Submit submits n more tasks, in batches.
func (s *Steady) Submit(n int) {
	for n > 0 {
		k := min(n, benchBatch)
		s.batch = s.batch[:0]
		for range k {
			s.nextID++
			s.batch = append(s.batch, core.Task{
				ID:        s.nextID,
				Resources: benchShapes[s.rng.IntN(len(benchShapes))],
				Priority:  int32(s.rng.IntN(3)),
			})
		}
		s.record(s.c.Step(core.TasksSubmitted{Tasks: s.batch}))
		n -= k
	}
}

// Next finishes a random running attempt with success and returns how many
// tasks the core dispatched in response.
func (s *Steady) Next() int {
	n := len(s.running)
	if n == 0 {
		return 0
	}
	i := s.rng.IntN(n)
	r := s.running[i]
	s.running[i] = s.running[n-1]
	s.running = s.running[:n-1]
	return s.record(s.c.Step(core.TaskFinished{Task: r.task, Attempt: r.attempt, Worker: r.worker, Outcome: core.Outcome{Kind: core.Success}}))
}

// Queued returns how many tasks wait for a worker.
func (s *Steady) Queued() int {
	waiting, ready, _, _ := s.c.Counts()
	return waiting + ready
}

// Running returns how many attempts run.
func (s *Steady) Running() int { return len(s.running) }

// record keeps the attempts acts dispatched and returns how many there were.
func (s *Steady) record(acts []core.Action) int {
	n := 0
	for _, a := range acts {
		if d, ok := a.(core.Dispatch); ok {
			s.running = append(s.running, attemptRef{d.Task, d.Attempt, d.Worker})
			n++
		}
	}
	return n
}

// attemptRef names one running attempt.
type attemptRef struct {
	task    core.TaskID
	attempt uint32
	worker  core.WorkerID
}
