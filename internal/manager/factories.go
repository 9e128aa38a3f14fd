package manager

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	goproto "google.golang.org/protobuf/proto"

	pb "trellis/internal/proto/trellisv1"
)

// Factories report themselves with each status request (StatusRequest.
// factory); the manager keeps the last report of each and shows it in its
// status. The reports are for people: they never reach the loop or the
// journal, and a factory that stops reporting is forgotten.
const (
	// maxFactories bounds the factories remembered at once.
	maxFactories = 64
	// maxFactoryJobsNamed bounds each list of job names in a report.
	maxFactoryJobsNamed = 1000
	// factoryStaleIntervals: a factory not heard for this many of its
	// intervals is shown as stale; for factoryForgetIntervals, forgotten.
	factoryStaleIntervals  = 3
	factoryForgetIntervals = 20
	// minFactoryInterval is assumed of a report that gives none shorter.
	minFactoryInterval = time.Second
)

// factories holds the last report of each factory. Its methods are safe
// for concurrent use (the Status handlers call them).
type factories struct {
	mu      sync.Mutex              // guards reports
	reports map[string]factoryEntry // by factory name
}

type factoryEntry struct {
	report *pb.FactoryReport
	at     time.Time
}

// checkFactoryReport says what is wrong with a report, if anything.
func checkFactoryReport(r *pb.FactoryReport) error {
	switch {
	case r.Name == "" || len(r.Name) > 200 || strings.ContainsAny(r.Name, "\x00\n"):
		return fmt.Errorf("factory report: the name %q must have 1 to 200 characters, without newlines", r.Name)
	case len(r.Pending) > maxFactoryJobsNamed || len(r.Started) > maxFactoryJobsNamed:
		return fmt.Errorf("factory report of %s: at most %d jobs may be named in each list (got %d pending, %d started)",
			r.Name, maxFactoryJobsNamed, len(r.Pending), len(r.Started))
	}
	return nil
}

// report keeps r as its factory's latest.
func (f *factories) report(r *pb.FactoryReport, now time.Time) error {
	if err := checkFactoryReport(r); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forget(now)
	if _, ok := f.reports[r.Name]; !ok && len(f.reports) >= maxFactories {
		return errors.New("factory report: this manager already hears from 64 factories; stop one, or give this one the name of a stopped one")
	}
	if f.reports == nil {
		f.reports = make(map[string]factoryEntry)
	}
	f.reports[r.Name] = factoryEntry{report: goproto.CloneOf(r), at: now}
	return nil
}

// forget drops the reports of factories not heard for long. f.mu is held.
func (f *factories) forget(now time.Time) {
	for name, e := range f.reports {
		if now.Sub(e.at) > factoryForgetIntervals*interval(e.report) {
			delete(f.reports, name)
		}
	}
}

func interval(r *pb.FactoryReport) time.Duration {
	return max(time.Duration(r.IntervalMs)*time.Millisecond, minFactoryInterval)
}

// annotate adds the factories to st, a status of its own, and marks each
// worker with the factory whose job it is.
func (f *factories) annotate(st *pb.StatusResponse, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forget(now)
	if len(f.reports) == 0 {
		return
	}
	owner := make(map[string]*pb.FactoryStatus)
	for _, e := range f.reports {
		fs := &pb.FactoryStatus{Report: e.report, ReportedUnixMs: e.at.UnixMilli(),
			Stale: now.Sub(e.at) > factoryStaleIntervals*interval(e.report)}
		st.Factories = append(st.Factories, fs)
		for _, name := range e.report.Started {
			owner[name] = fs
		}
		for _, name := range e.report.Pending {
			owner[name] = fs
		}
	}
	slices.SortFunc(st.Factories, func(a, b *pb.FactoryStatus) int { return strings.Compare(a.Report.Name, b.Report.Name) })
	for _, w := range st.Workers {
		if fs := owner[w.Name]; fs != nil {
			w.Factory = fs.Report.Name
			fs.WorkersConnected++
		}
	}
}
