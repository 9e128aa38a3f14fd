package worker

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"testing"

	pb "trellis/internal/proto/trellisv1"
)

// BenchmarkSessionRuns runs `true` tasks through a whole worker (session,
// attempt, sandbox in the warden's cells) from a fake manager in this
// process, four at a time on the worker's four cores, each new Run sent
// as a report comes back, as the manager does. allocs/op and B/op are
// per task, the fake manager's included; self-cpu-ns/op is this process's
// CPU time per task (not the commands'), gcs/op its garbage collections
// per task: with Go's default (GOGC unset), and with the worker's
// headroom (TuneGC, as trellis worker sets by default).
func BenchmarkSessionRuns(b *testing.B) {
	b.Setenv("GOGC", "")
	for _, headroom := range []int64{0, DefaultGCHeadroom} {
		b.Run(fmt.Sprintf("gc-headroom=%dMB", headroom>>20), func(b *testing.B) {
			TuneGC(headroom)
			defer TuneGC(0)
			benchSessionRuns(b)
		})
	}
}

func benchSessionRuns(b *testing.B) {
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
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	gcs := mem.NumGC
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
	runtime.ReadMemStats(&mem)
	b.ReportMetric(float64(mem.NumGC-gcs)/float64(b.N), "gcs/op")
	for range slots {
		m.next(b)
	}
	cancel()
}
