package metrics

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"trellis/internal/manager"
	pb "trellis/internal/proto/trellisv1"
)

type fixed struct {
	snap *manager.Snapshot
	err  error
}

func (f fixed) Snapshot(context.Context) (*manager.Snapshot, error) { return f.snap, f.err }

// What a snapshot holds reaches the metrics: workers by state and their
// resources summed, libraries' instances and slots, results by kind.
func TestCollect(t *testing.T) {
	snap := &manager.Snapshot{Version: 7, Status: &pb.StatusResponse{
		Calls:    &pb.TaskCounts{Ready: 4, Running: 2},
		Dataflow: &pb.TaskCounts{Waiting: 3, Staging: 1},
		Workers: []*pb.WorkerStatus{
			{Total: &pb.Resources{Cores: 4, MemoryMb: 2, DiskMb: 10, Gpus: 1}, Free: &pb.Resources{Cores: 1.5, MemoryMb: 1, DiskMb: 10, Gpus: 1}, CacheBytes: 100},
			{Draining: true, Total: &pb.Resources{Cores: 2}, Free: &pb.Resources{Cores: 2}, CacheBytes: 5},
		},
		Libraries: []*pb.LibraryStatus{{Name: "math", CallsWaiting: 4, CallsDone: 9, InstancesStarted: 3, Instances: []*pb.InstanceStatus{
			{Worker: "w1", Ready: true, Busy: 2, Slots: 2}, {Ready: false, Slots: 2}}}},
	}}
	snap.Ended[1][pb.ResultKind_RESULT_KIND_SUCCESS] = 9
	snap.Ended[1][pb.ResultKind_RESULT_KIND_WORKER_LOST] = 1
	snap.Ended[2][pb.ResultKind_RESULT_KIND_FAILED] = 4
	want := `
# HELP trellis_library_instances Instances of a library, by state: waiting for a place or set-up, or ready for calls.
# TYPE trellis_library_instances gauge
trellis_library_instances{library="math",state="ready"} 1
trellis_library_instances{library="math",state="waiting"} 1
# HELP trellis_library_slots Call slots of a library's instances, by use.
# TYPE trellis_library_slots gauge
trellis_library_slots{library="math",use="busy"} 2
trellis_library_slots{library="math",use="free"} 2
# HELP trellis_library_calls_done_total Calls of a library done.
# TYPE trellis_library_calls_done_total counter
trellis_library_calls_done_total{library="math"} 9
# HELP trellis_library_setups_total Set-ups of a library's instances that succeeded.
# TYPE trellis_library_setups_total counter
trellis_library_setups_total{library="math"} 3
# HELP trellis_workers Connected workers, by state.
# TYPE trellis_workers gauge
trellis_workers{state="active"} 1
trellis_workers{state="draining"} 1
# HELP trellis_worker_resources Resources of the connected workers, summed: their total and the part tasks and instances use.
# TYPE trellis_worker_resources gauge
trellis_worker_resources{resource="cores",use="total"} 6
trellis_worker_resources{resource="cores",use="used"} 2.5
trellis_worker_resources{resource="disk_bytes",use="total"} 1.048576e+07
trellis_worker_resources{resource="disk_bytes",use="used"} 0
trellis_worker_resources{resource="gpus",use="total"} 1
trellis_worker_resources{resource="gpus",use="used"} 0
trellis_worker_resources{resource="memory_bytes",use="total"} 2.097152e+06
trellis_worker_resources{resource="memory_bytes",use="used"} 1.048576e+06
# HELP trellis_worker_cache_bytes Bytes of files the connected workers hold in their caches, summed.
# TYPE trellis_worker_cache_bytes gauge
trellis_worker_cache_bytes 105
# HELP trellis_queue Tasks (plain and dataflow), calls and library instances now in each state.
# TYPE trellis_queue gauge
trellis_queue{modality="call",state="ready"} 4
trellis_queue{modality="call",state="running"} 2
trellis_queue{modality="call",state="staging"} 0
trellis_queue{modality="call",state="waiting"} 0
trellis_queue{modality="dataflow",state="ready"} 0
trellis_queue{modality="dataflow",state="running"} 0
trellis_queue{modality="dataflow",state="staging"} 1
trellis_queue{modality="dataflow",state="waiting"} 3
trellis_queue{modality="instance",state="ready"} 0
trellis_queue{modality="instance",state="running"} 0
trellis_queue{modality="instance",state="staging"} 0
trellis_queue{modality="instance",state="waiting"} 0
trellis_queue{modality="task",state="ready"} 0
trellis_queue{modality="task",state="running"} 0
trellis_queue{modality="task",state="staging"} 0
trellis_queue{modality="task",state="waiting"} 0
`
	c := NewCollector(fixed{snap: snap})
	names := []string{"trellis_library_instances", "trellis_library_slots", "trellis_library_calls_done_total",
		"trellis_library_setups_total", "trellis_workers", "trellis_worker_resources", "trellis_worker_cache_bytes", "trellis_queue"}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	ended := `
# HELP trellis_ended_total Tasks and calls ended since the manager started, by result kind.
# TYPE trellis_ended_total counter
trellis_ended_total{modality="call",result="cancelled"} 0
trellis_ended_total{modality="call",result="failed"} 0
trellis_ended_total{modality="call",result="input_missing"} 0
trellis_ended_total{modality="call",result="resource_exceeded"} 0
trellis_ended_total{modality="call",result="success"} 9
trellis_ended_total{modality="call",result="timed_out"} 0
trellis_ended_total{modality="call",result="worker_lost"} 1
trellis_ended_total{modality="dataflow",result="cancelled"} 0
trellis_ended_total{modality="dataflow",result="failed"} 4
trellis_ended_total{modality="dataflow",result="input_missing"} 0
trellis_ended_total{modality="dataflow",result="resource_exceeded"} 0
trellis_ended_total{modality="dataflow",result="success"} 0
trellis_ended_total{modality="dataflow",result="timed_out"} 0
trellis_ended_total{modality="dataflow",result="worker_lost"} 0
trellis_ended_total{modality="task",result="cancelled"} 0
trellis_ended_total{modality="task",result="failed"} 0
trellis_ended_total{modality="task",result="input_missing"} 0
trellis_ended_total{modality="task",result="resource_exceeded"} 0
trellis_ended_total{modality="task",result="success"} 0
trellis_ended_total{modality="task",result="timed_out"} 0
trellis_ended_total{modality="task",result="worker_lost"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(ended), "trellis_ended_total"); err != nil {
		t.Error(err)
	}
}

// A scrape that gets no snapshot answers 500 with the reason, not zeros.
func TestNoSnapshot(t *testing.T) {
	h := Handler(fixed{err: errors.New("manager: stopped")})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if body := rec.Body.String(); rec.Code != 500 || !strings.Contains(body, "manager: stopped") {
		t.Errorf("got HTTP %d %q, want 500 naming the error", rec.Code, body)
	}
}

// The loop's latency histograms reach /metrics as Prometheus histograms,
// their buckets cumulative.
func TestHistograms(t *testing.T) {
	snap := &manager.Snapshot{Status: &pb.StatusResponse{}, Latency: manager.Histograms{
		Calls:      manager.Histogram{Buckets: []float64{0.001, 0.01}, Counts: []uint64{3, 1, 2}, Sum: 0.5, Count: 6},
		ColdStarts: manager.Histogram{Buckets: []float64{1}, Counts: []uint64{0, 1}, Sum: 2.5, Count: 1},
	}}
	want := `
# HELP trellis_call_seconds Function calls that succeeded, by time from their placement on a worker to their result at the manager.
# TYPE trellis_call_seconds histogram
trellis_call_seconds_bucket{le="0.001"} 3
trellis_call_seconds_bucket{le="0.01"} 4
trellis_call_seconds_bucket{le="+Inf"} 6
trellis_call_seconds_sum 0.5
trellis_call_seconds_count 6
# HELP trellis_library_cold_start_seconds Library instances, by time from their start on a worker to the end of their set-up (ready for calls).
# TYPE trellis_library_cold_start_seconds histogram
trellis_library_cold_start_seconds_bucket{le="1"} 0
trellis_library_cold_start_seconds_bucket{le="+Inf"} 1
trellis_library_cold_start_seconds_sum 2.5
trellis_library_cold_start_seconds_count 1
`
	if err := testutil.CollectAndCompare(NewCollector(fixed{snap: snap}), strings.NewReader(want),
		"trellis_call_seconds", "trellis_library_cold_start_seconds"); err != nil {
		t.Error(err)
	}
}

// Dispatches and attempts by result kind, and the journal's size when
// there is one.
func TestAttempts(t *testing.T) {
	snap := &manager.Snapshot{Status: &pb.StatusResponse{Journal: &pb.JournalStatus{Durable: 42}}, Dispatched: [3]uint64{7, 2, 3}}
	snap.Attempts[0][pb.ResultKind_RESULT_KIND_SUCCESS] = 5
	snap.Attempts[0][pb.ResultKind_RESULT_KIND_WORKER_LOST] = 2
	snap.Attempts[1][pb.ResultKind_RESULT_KIND_SUCCESS] = 2
	snap.Attempts[2][pb.ResultKind_RESULT_KIND_SUCCESS] = 3
	want := `
# HELP trellis_dispatched_total Attempts of tasks and calls sent to workers.
# TYPE trellis_dispatched_total counter
trellis_dispatched_total{modality="call"} 2
trellis_dispatched_total{modality="dataflow"} 3
trellis_dispatched_total{modality="task"} 7
# HELP trellis_journal_records Records of the manager's journal on disk (with --state only).
# TYPE trellis_journal_records gauge
trellis_journal_records 42
`
	c := NewCollector(fixed{snap: snap})
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "trellis_dispatched_total", "trellis_journal_records"); err != nil {
		t.Error(err)
	}
	if got := testutil.CollectAndCount(c, "trellis_attempts_total"); got != 21 {
		t.Errorf("trellis_attempts_total has %d series, want 21 (7 result kinds by 3 modalities)", got)
	}
	want = `
# HELP trellis_attempts_total Attempts of tasks and calls ended, by result kind: those after which the task waited again (worker_lost, ...) and the last.
# TYPE trellis_attempts_total counter
trellis_attempts_total{modality="call",result="cancelled"} 0
trellis_attempts_total{modality="call",result="failed"} 0
trellis_attempts_total{modality="call",result="input_missing"} 0
trellis_attempts_total{modality="call",result="resource_exceeded"} 0
trellis_attempts_total{modality="call",result="success"} 2
trellis_attempts_total{modality="call",result="timed_out"} 0
trellis_attempts_total{modality="call",result="worker_lost"} 0
trellis_attempts_total{modality="dataflow",result="cancelled"} 0
trellis_attempts_total{modality="dataflow",result="failed"} 0
trellis_attempts_total{modality="dataflow",result="input_missing"} 0
trellis_attempts_total{modality="dataflow",result="resource_exceeded"} 0
trellis_attempts_total{modality="dataflow",result="success"} 3
trellis_attempts_total{modality="dataflow",result="timed_out"} 0
trellis_attempts_total{modality="dataflow",result="worker_lost"} 0
trellis_attempts_total{modality="task",result="cancelled"} 0
trellis_attempts_total{modality="task",result="failed"} 0
trellis_attempts_total{modality="task",result="input_missing"} 0
trellis_attempts_total{modality="task",result="resource_exceeded"} 0
trellis_attempts_total{modality="task",result="success"} 5
trellis_attempts_total{modality="task",result="timed_out"} 0
trellis_attempts_total{modality="task",result="worker_lost"} 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "trellis_attempts_total"); err != nil {
		t.Error(err)
	}
}
