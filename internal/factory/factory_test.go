package factory

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"trellis"
)

// fakeBatch records jobs; a job ends when the test says so.
type fakeBatch struct {
	mu        sync.Mutex
	refuse    error // Submit fails with it while set
	alive     map[string]bool
	submitted []string
	cancelled []string
}

func (b *fakeBatch) Submit(_ context.Context, job Job) error {
	name := job.Name
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.refuse != nil {
		return b.refuse
	}
	b.alive[name] = true
	b.submitted = append(b.submitted, name)
	return nil
}

func (b *fakeBatch) Cancel(_ context.Context, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.alive, name)
	b.cancelled = append(b.cancelled, name)
	return nil
}

func (b *fakeBatch) Alive(context.Context) (map[string]bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]bool)
	for k := range b.alive {
		out[k] = true
	}
	return out, nil
}

func (b *fakeBatch) end(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.alive, name)
}

type fixedStatus struct{ s *trellis.Status }

func (f fixedStatus) ReportFactory(context.Context, trellis.FactoryReport) (*trellis.Status, error) {
	return f.s, nil
}

// Jobs whose workers never connect stop the submissions after
// MaxFailedStarts in a row; stopping cancels what is left.
func TestFailedStartsStopSubmitting(t *testing.T) {
	b := &fakeBatch{alive: make(map[string]bool)}
	st := fixedStatus{&trellis.Status{Demand: []trellis.ShapeDemand{{Shape: trellis.Resources{Cores: 1}, Waiting: 1}}}}
	f := newFactory(Config{Limits: Limits{Worker: trellis.Resources{Cores: 1}, Max: 5}, Name: "w"}, discard(), b)
	ctx := context.Background()
	for range MaxFailedStarts {
		if err := f.cycle(ctx, st); err != nil {
			t.Fatal(err)
		}
		b.end(b.submitted[len(b.submitted)-1]) // dies at start
	}
	if err := f.cycle(ctx, st); err != nil {
		t.Fatal(err)
	}
	if len(b.submitted) != MaxFailedStarts {
		t.Errorf("submitted %v; want %d jobs, then none after %d failed starts", b.submitted, MaxFailedStarts, MaxFailedStarts)
	}
	f.failed = 0 // an operator fixed it: the next cycle submits again
	if err := f.cycle(ctx, st); err != nil {
		t.Fatal(err)
	}
	f.stop()
	if len(b.cancelled) != 1 || b.cancelled[0] != b.submitted[len(b.submitted)-1] {
		t.Errorf("cancelled %v at stop; want the one live job of %v", b.cancelled, b.submitted)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// A refused submission is no error of the cycle: the factory backs off
// (doubling), submits nothing until then, and keeps cancelling.
func TestRefusedSubmissionBacksOff(t *testing.T) {
	b := &fakeBatch{alive: make(map[string]bool), refuse: errors.New("sbatch: error: Batch job submission failed: Job violates accounting/QOS policy")}
	st := fixedStatus{&trellis.Status{Demand: []trellis.ShapeDemand{{Shape: trellis.Resources{Cores: 1}, Waiting: 1}}}}
	f := newFactory(Config{Limits: Limits{Worker: trellis.Resources{Cores: 1}, Max: 5}, Name: "w", Interval: time.Second}, discard(), b)
	now := time.Unix(1000, 0)
	f.now = func() time.Time { return now }
	ctx := context.Background()
	if err := f.cycle(ctx, st); err != nil {
		t.Fatalf("a refused submission stopped the cycle: %v", err)
	}
	b.refuse = nil
	now = now.Add(time.Second) // within the back-off of 2 intervals
	if err := f.cycle(ctx, st); err != nil {
		t.Fatal(err)
	}
	if len(b.submitted) != 0 {
		t.Fatalf("submitted %v during the back-off", b.submitted)
	}
	now = now.Add(time.Second)
	if err := f.cycle(ctx, st); err != nil {
		t.Fatal(err)
	}
	if len(b.submitted) != 1 {
		t.Fatalf("submitted %v after the back-off; want one job", b.submitted)
	}
}

// A job whose worker has not connected StartTimeout after its submission
// is cancelled and another submitted in its place; its end is no failed
// start.
func TestStartTimeoutReplacesJob(t *testing.T) {
	b := &fakeBatch{alive: make(map[string]bool)}
	st := fixedStatus{&trellis.Status{Demand: []trellis.ShapeDemand{{Shape: trellis.Resources{Cores: 1}, Waiting: 1}}}}
	f := newFactory(Config{Limits: Limits{Worker: trellis.Resources{Cores: 1}, Max: 5}, Name: "w", StartTimeout: time.Minute}, discard(), b)
	now := time.Unix(1000, 0)
	f.now = func() time.Time { return now }
	ctx := context.Background()
	for _, step := range []time.Duration{0, 30 * time.Second, 30 * time.Second, time.Second} {
		now = now.Add(step)
		if err := f.cycle(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"w-1", "w-2"}; !slices.Equal(b.submitted, want) || !slices.Equal(b.cancelled, []string{"w-1"}) {
		t.Fatalf("submitted %v, cancelled %v; want %v submitted and w-1 cancelled after a minute", b.submitted, b.cancelled, want)
	}
	if f.failed != 0 {
		t.Errorf("%d failed starts; a job cancelled for its start timeout is none", f.failed)
	}
}

// reportingStatus records the reports and answers with a status whose
// connected workers the test sets.
type reportingStatus struct {
	demand  []trellis.ShapeDemand
	workers []string
	reports []trellis.FactoryReport
}

func (r *reportingStatus) ReportFactory(_ context.Context, rep trellis.FactoryReport) (*trellis.Status, error) {
	r.reports = append(r.reports, rep)
	st := &trellis.Status{Demand: r.demand}
	for _, w := range r.workers {
		st.Workers = append(st.Workers, trellis.WorkerStatus{Name: w})
	}
	return st, nil
}

// Each cycle reports the jobs as the last cycle left them: pending until
// their worker connects, started after; cancelled ones not at all.
func TestCycleReportsJobs(t *testing.T) {
	b := &fakeBatch{alive: make(map[string]bool)}
	m := &reportingStatus{demand: []trellis.ShapeDemand{{Shape: trellis.Resources{Cores: 1}, Waiting: 2}}}
	f := newFactory(Config{Limits: Limits{Worker: trellis.Resources{Cores: 1}, Min: 1, Max: 5, PerCycle: 5},
		Name: "fw", Batch: "slurm", Interval: 2 * time.Second}, discard(), b)
	t0 := time.Unix(1700000000, 0)
	f.now = func() time.Time { return t0 }
	ctx := context.Background()
	for range 4 {
		if err := f.cycle(ctx, m); err != nil {
			t.Fatal(err)
		}
		if len(m.reports) == 2 {
			m.workers = []string{"fw-1"} // the third cycle sees fw-1's worker; the fourth reports it
		}
	}
	if first := m.reports[0]; first.Name != "fw" || first.Batch != "slurm" || first.Min != 1 || first.Max != 5 ||
		first.Interval != 2*time.Second || first.PendingCount != 0 || first.Decision != "" {
		t.Errorf("first report %+v; want fw, slurm, min 1, max 5, 2s, no job, no decision yet", first)
	}
	second := m.reports[1]
	if !slices.Equal(second.Pending, []string{"fw-1", "fw-2"}) || second.PendingCount != 2 || second.StartedCount != 0 ||
		!second.OldestPending.Equal(t0) || !strings.HasPrefix(second.Decision, "submit 2, cancel 0: ") {
		t.Errorf("second report %+v; want fw-1 and fw-2 pending since %v, decision submit 2", second, t0)
	}
	fourth := m.reports[3]
	// The demand still waits for two workers: the third cycle added fw-3.
	if !slices.Equal(fourth.Started, []string{"fw-1"}) || !slices.Equal(fourth.Pending, []string{"fw-2", "fw-3"}) ||
		fourth.StartedCount != 1 || fourth.PendingCount != 2 {
		t.Errorf("fourth report %+v; want fw-1 started, fw-2 and fw-3 pending", fourth)
	}
}
