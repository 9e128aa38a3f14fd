package worker

import (
	"context"
	"syscall"
	"testing"

	pb "trellis/internal/proto/trellisv1"
)

// BenchmarkSessionRuns runs `true` tasks through a whole worker (session,
// attempt, sandbox in the warden's cells) from a fake manager in this
// process, four at a time on the worker's four cores, each new Run sent
// as a report comes back, as the manager does. allocs/op and B/op are
// per task, the fake manager's included; self-cpu-ns/op is this process's
// CPU time per task (not the commands').
func BenchmarkSessionRuns(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(b, ctx, nil)
	m, _ := h.connect(b, 60_000)
	const slots = 4
	next := uint64(1)
	send := func() {
		m.send(b, run(next, "true"))
		next++
	}
	for range slots {
		send()
	}
	var start syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &start)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if d := m.next(b).GetDone(); d == nil || d.Outcome.Kind != pb.ResultKind_RESULT_KIND_SUCCESS {
			b.Fatalf("want a successful run's report, got %v", d)
		}
		send()
	}
	b.StopTimer()
	var end syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &end)
	ns := syscall.TimevalToNsec(end.Utime) - syscall.TimevalToNsec(start.Utime) +
		syscall.TimevalToNsec(end.Stime) - syscall.TimevalToNsec(start.Stime)
	b.ReportMetric(float64(ns)/float64(b.N), "self-cpu-ns/op")
	for range slots {
		m.next(b)
	}
	cancel()
}
