package manager

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	pb "trellis/internal/proto/trellisv1"
)

// A factory's report shows in the status with its workers marked; one not
// heard for three intervals is stale, for twenty forgotten.
func TestFactoryReportsInStatus(t *testing.T) {
	var f factories
	t0 := time.Unix(1700000000, 0)
	rep := &pb.FactoryReport{Name: "fw", Batch: "slurm", Max: 4, Pending: []string{"fw-2"}, Started: []string{"fw-1"},
		PendingCount: 1, StartedCount: 1, IntervalMs: 1000, Decision: "submit 1"}
	if err := f.report(rep, t0); err != nil {
		t.Fatal(err)
	}
	statusAt := func(at time.Time) *pb.StatusResponse {
		st := &pb.StatusResponse{Workers: []*pb.WorkerStatus{{Name: "fw-1"}, {Name: "other"}}}
		f.annotate(st, at)
		return st
	}
	want := &pb.StatusResponse{
		Workers:   []*pb.WorkerStatus{{Name: "fw-1", Factory: "fw"}, {Name: "other"}},
		Factories: []*pb.FactoryStatus{{Report: rep, ReportedUnixMs: t0.UnixMilli(), WorkersConnected: 1}},
	}
	if d := cmp.Diff(want, statusAt(t0.Add(time.Second)), protocmp.Transform()); d != "" {
		t.Errorf("status a second later (-want +got):\n%s", d)
	}
	want.Factories[0].Stale = true
	if d := cmp.Diff(want, statusAt(t0.Add(4*time.Second)), protocmp.Transform()); d != "" {
		t.Errorf("status four intervals later (-want +got):\n%s", d)
	}
	if st := statusAt(t0.Add(21 * time.Second)); len(st.Factories) != 0 || st.Workers[0].Factory != "" {
		t.Errorf("status 21 intervals later: %v; want the factory forgotten", st)
	}
}

func TestFactoryReportsRefused(t *testing.T) {
	var f factories
	now := time.Unix(1700000000, 0)
	for _, c := range []struct {
		r    *pb.FactoryReport
		want string
	}{
		{&pb.FactoryReport{}, "must have 1 to 200 characters"},
		{&pb.FactoryReport{Name: "a\nb"}, "without newlines"},
		{&pb.FactoryReport{Name: "big", Pending: make([]string, maxFactoryJobsNamed+1)}, "at most 1000 jobs"},
	} {
		if err := f.report(c.r, now); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("report %v: %v; want an error with %q", c.r, err, c.want)
		}
	}
	for i := range maxFactories {
		if err := f.report(&pb.FactoryReport{Name: "f" + string(rune('A'+i))}, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.report(&pb.FactoryReport{Name: "one-more"}, now); err == nil || !strings.Contains(err.Error(), "64 factories") {
		t.Errorf("the 65th factory: %v; want refused", err)
	}
	if err := f.report(&pb.FactoryReport{Name: "fA", Decision: "again"}, now); err != nil {
		t.Errorf("a known factory reporting again: %v", err)
	}
}
