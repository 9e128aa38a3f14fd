package core_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"testing"
	"time"

	"trellis/internal/core"
	"trellis/internal/core/corebench"
)

// BenchmarkDecision times one placement decision in the steady state: every
// worker is full, a queue of the given size waits, and each op finishes a
// running attempt so that the core dispatches the next task. ns/op is the
// cost of one decision (a Dispatch action). The queue is topped up, with
// the timer stopped, whenever it falls to half its size.
func BenchmarkDecision(b *testing.B) {
	for _, size := range []struct{ workers, tasks int }{
		{100, 100_000},
		{1000, 100_000},
		{100, 1_000_000},
		{1000, 1_000_000},
	} {
		b.Run(fmt.Sprintf("workers=%d/tasks=%d", size.workers, size.tasks), func(b *testing.B) {
			s := corebench.NewSteady(size.workers, 1)
			s.Submit(size.tasks)
			b.ReportAllocs()
			b.ResetTimer()
			for decisions := 0; decisions < b.N; {
				if q := s.Queued(); q < size.tasks/2 {
					b.StopTimer()
					s.Submit(size.tasks - q)
					b.StartTimer()
				}
				decisions += s.Next()
			}
		})
	}
}

var (
	benchWorkers = flag.Int("benchcore.workers", 100, "workers for TestBenchCore")
	benchTasks   = flag.Int("benchcore.tasks", 20_000, "tasks for TestBenchCore")
)

// TestBenchCore runs the core benchmark, small by default, and prints its
// result with -v. At the size:
//
//	go test ./internal/core -run TestBenchCore -v -benchcore.workers 1000 -benchcore.tasks 1000000
func TestBenchCore(t *testing.T) {
	r := corebench.BenchCore(*benchWorkers, *benchTasks)
	out, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatalf("json.Marshal(BenchCore) = %v", err)
	}
	t.Logf("%s", out)
	if r.Decisions == 0 || r.DecisionsPerS <= 0 || r.BytesPerQueuedTask <= 0 || len(r.Points) != 4 {
		t.Errorf("BenchCore(%d, %d) = %s, want decisions, a rate, bytes per task and four points", *benchWorkers, *benchTasks, out)
	}
	for _, p := range r.Points {
		if p.Decisions == 0 || p.Queued == 0 {
			t.Errorf("BenchCore(%d, %d): point %+v made no decisions or queued nothing", *benchWorkers, *benchTasks, p)
		}
	}
}

// BenchmarkTickUnplaceable times a Tick with a million tasks queued and no
// worker connected, so that every task is unplaceable, once a first Tick
// has stamped them: with no timeout, and with one (an hour: none ends).
// ns/op is one Tick.
func BenchmarkTickUnplaceable(b *testing.B) {
	for _, limit := range []time.Duration{0, time.Hour} {
		b.Run(fmt.Sprintf("timeout=%s", limit), func(b *testing.B) {
			const n = 1_000_000
			c := core.New()
			tasks := make([]core.Task, n)
			for i := range tasks {
				tasks[i] = core.Task{ID: core.TaskID(i + 1), Resources: core.Resources{MilliCores: 1000}, UnplaceableTimeout: limit}
			}
			c.Step(core.TasksSubmitted{Tasks: tasks})
			c.Step(core.Tick{Now: time.Second})
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.Step(core.Tick{Now: time.Duration(i+2) * time.Second})
			}
		})
	}
}
