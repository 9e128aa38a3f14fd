// Package factory keeps a manager supplied with workers from a batch
// system: each cycle it reads the manager's demand by resource shape,
// decides with Plan how many worker jobs to submit or cancel, and does it.
// Its workers retire themselves when idle (trellis worker --idle-exit);
// when the factory stops, it cancels every job it submitted and waits for
// them to go.
//
// Contract of Run: decisions are pure (Plan); Run only reads the status,
// talks to the batch system and logs each decision that differs from the
// last, with its reason. A worker is the factory's if its name is one the
// factory gave a job. A job that ends without its worker ever connecting
// counts as a failed start; after MaxFailedStarts of them in a row the
// factory submits no more and says why, and goes on cancelling and
// reporting.
package factory

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"trellis"
)

// Batch is a batch system that runs worker jobs.
type Batch interface {
	// Submit submits one job.
	Submit(ctx context.Context, job Job) error
	// Cancel cancels the job name; one already gone is not an error.
	Cancel(ctx context.Context, name string) error
	// Alive returns the names of the jobs submitted that have not ended.
	Alive(ctx context.Context) (map[string]bool, error)
}

// Job is a worker job.
type Job struct {
	Name      string            // names the job and its worker
	Command   []string          // the worker command (argv)
	Resources trellis.Resources // what the worker offers: to ask of the batch system
}

// Config configures a factory.
type Config struct {
	Limits
	Name     string        // prefix of its jobs' and workers' names
	Batch    string        // the batch system's name, for the manager's status
	Worker   []string      // the worker command, to which the factory adds --name and resources
	Interval time.Duration // between cycles; default 5 s
	// StartTimeout cancels a job whose worker has not connected this long
	// after its submission (it may wait in the batch system's queue), and
	// submits another in its place; 0 waits for ever.
	StartTimeout time.Duration
	// Reload, if set, is called each cycle: new settings replace Limits
	// and StartTimeout (nil: unchanged); an error keeps the last ones.
	Reload func() (*Settings, error)
	Log    *slog.Logger
}

// MaxFailedStarts is how many jobs in a row may end without their worker
// connecting before the factory stops submitting.
const MaxFailedStarts = 3

// StatusReader is the part of a client the factory uses: each cycle it
// tells the manager what it is doing (which `trellis status` shows) and
// reads the demand from the status it gets back.
type StatusReader interface {
	ReportFactory(ctx context.Context, r trellis.FactoryReport) (*trellis.Status, error)
}

// maxNamedJobs bounds the jobs named in a report (the manager's limit).
const maxNamedJobs = 1000

// Run runs the factory until ctx ends, then cancels its jobs and waits
// (up to a minute) for them to end.
func Run(ctx context.Context, cfg Config, manager StatusReader, batch Batch) error {
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := newFactory(cfg, log, batch)
	defer f.stop()
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for {
		if err := f.cycle(ctx, manager); err != nil && ctx.Err() == nil {
			log.Warn("factory cycle", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func newFactory(cfg Config, log *slog.Logger, batch Batch) *factory {
	return &factory{cfg: cfg, log: log, batch: batch, mine: make(map[string]bool), seen: make(map[string]bool),
		since: make(map[string]time.Time), cancelled: make(map[string]bool), now: time.Now}
}

type factory struct {
	cfg    Config
	log    *slog.Logger
	batch  Batch
	next   int
	mine   map[string]bool // jobs submitted and not seen ended
	order  []string        // those jobs, oldest first
	seen   map[string]bool // jobs whose worker connected once
	failed int             // jobs in a row that ended before their worker connected
	last   Decision
	// decision is the last cycle's decision in words, for the report.
	decision string

	since     map[string]time.Time // when each job was submitted
	cancelled map[string]bool      // jobs the factory cancelled: their end is no failed start
	refused   int                  // submissions refused in a row
	holdUntil time.Time            // no submission before, after a refusal
	now       func() time.Time
}

func (f *factory) cycle(ctx context.Context, manager StatusReader) error {
	if f.cfg.Reload != nil {
		switch s, err := f.cfg.Reload(); {
		case err != nil:
			f.log.Warn("keeping the last settings", "err", err)
		case s != nil && (s.Limits != f.cfg.Limits || s.StartTimeout != f.cfg.StartTimeout):
			f.cfg.Limits, f.cfg.StartTimeout = s.Limits, s.StartTimeout
			w := s.Worker
			f.log.Info("factory settings", "min", s.Min, "max", s.Max, "per_cycle", s.PerCycle, "cores", w.Cores, "memory", w.MemoryMB, "disk", w.DiskMB, "gpus", w.GPUs, "start_timeout", s.StartTimeout)
		}
	}
	st, err := manager.ReportFactory(ctx, f.report())
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	alive, err := f.batch.Alive(ctx)
	if err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	connected := 0
	for _, w := range st.Workers {
		if f.mine[w.Name] {
			connected++
			f.seen[w.Name] = true
			f.failed = 0
		}
	}
	var pending []string
	kept := f.order[:0]
	for _, name := range f.order {
		if !alive[name] {
			if !f.seen[name] && !f.cancelled[name] {
				f.failed++
				f.log.Warn("a worker job ended before its worker connected", "job", name, "in_a_row", f.failed)
			}
			delete(f.mine, name)
			delete(f.seen, name)
			delete(f.since, name)
			delete(f.cancelled, name)
			continue
		}
		kept = append(kept, name)
		if f.seen[name] || f.cancelled[name] {
			continue
		}
		pending = append(pending, name)
	}
	f.order = kept
	now := f.now()
	if late := Overdue(pending, f.since, now, f.cfg.StartTimeout); len(late) > 0 {
		f.log.Warn("cancelling worker jobs that have not started; submitting others in their place", "jobs", late, "start_timeout", f.cfg.StartTimeout)
		for _, name := range late {
			if err := f.cancel(ctx, name); err != nil {
				return err
			}
		}
		pending = slices.DeleteFunc(pending, func(n string) bool { return f.cancelled[n] })
	}
	d := Plan(View{Demand: st.Demand, Connected: connected, Pending: len(pending)}, f.cfg.Limits)
	if f.failed >= MaxFailedStarts && d.Submit > 0 {
		d.Why += fmt.Sprintf("; submitting no more: %d jobs in a row ended before their worker connected (see the batch system's logs)", f.failed)
		d.Submit = 0
	}
	if d.Submit > 0 && now.Before(f.holdUntil) {
		d.Why += fmt.Sprintf("; the batch system refused the last submission: the next in %s", f.holdUntil.Sub(now).Round(time.Second))
		d.Submit = 0
	}
	if d.Submit != f.last.Submit || d.Cancel != f.last.Cancel || d.Why != f.last.Why {
		f.log.Info("factory", "submit", d.Submit, "cancel", d.Cancel, "connected", connected, "pending", len(pending), "why", d.Why)
	}
	f.last = d
	f.decision = fmt.Sprintf("submit %d, cancel %d: %s", d.Submit, d.Cancel, d.Why)
	for i := 0; i < d.Cancel && i < len(pending); i++ {
		name := pending[len(pending)-1-i] // the newest first
		if err := f.cancel(ctx, name); err != nil {
			return err
		}
	}
	for range d.Submit {
		f.next++
		name := f.cfg.Name + "-" + strconv.Itoa(f.next)
		if err := f.batch.Submit(ctx, Job{Name: name, Command: f.command(name), Resources: f.cfg.Limits.Worker}); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Back off, doubling up to 64 intervals, and keep serving:
			// cancelling and reporting go on.
			f.refused++
			wait := f.cfg.Interval << min(f.refused, 6)
			f.holdUntil = now.Add(wait)
			f.log.Warn("the batch system refused a worker job; submitting again later", "job", name, "refused_in_a_row", f.refused, "retry_in", wait, "err", err)
			return nil
		}
		f.refused = 0
		f.mine[name] = true
		f.since[name] = now
		f.order = append(f.order, name)
	}
	return nil
}

// report is what the factory tells the manager at the start of a cycle:
// its jobs as the last cycle left them, and its last decision.
func (f *factory) report() trellis.FactoryReport {
	r := trellis.FactoryReport{Name: f.cfg.Name, Batch: f.cfg.Batch, Min: f.cfg.Min, Max: f.cfg.Max,
		Decision: f.decision, Interval: f.cfg.Interval}
	for _, name := range f.order {
		switch {
		case f.cancelled[name]:
		case f.seen[name]:
			r.StartedCount++
			if len(r.Started) < maxNamedJobs {
				r.Started = append(r.Started, name)
			}
		default:
			r.PendingCount++
			if len(r.Pending) < maxNamedJobs {
				r.Pending = append(r.Pending, name)
			}
			if t := f.since[name]; r.OldestPending.IsZero() || t.Before(r.OldestPending) {
				r.OldestPending = t
			}
		}
	}
	return r
}

// cancel cancels job name, which then counts neither as pending nor, when
// it ends, as a failed start.
func (f *factory) cancel(ctx context.Context, name string) error {
	if err := f.batch.Cancel(ctx, name); err != nil {
		return fmt.Errorf("cancel %s: %w", name, err)
	}
	f.cancelled[name] = true
	return nil
}

// command is the worker command of job name.
func (f *factory) command(name string) []string {
	w := f.cfg.Limits.Worker
	cmd := append([]string(nil), f.cfg.Worker...)
	cmd = append(cmd, "--name", name, "--cores", strconv.FormatFloat(w.Cores, 'g', -1, 64), "--gpus", strconv.Itoa(w.GPUs))
	if w.MemoryMB > 0 {
		cmd = append(cmd, "--memory", strconv.FormatInt(w.MemoryMB, 10))
	}
	if w.DiskMB > 0 {
		cmd = append(cmd, "--disk", strconv.FormatInt(w.DiskMB, 10))
	}
	return cmd
}

// stop cancels every job the factory submitted and waits for them to end.
func (f *factory) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for name := range f.mine {
		if err := f.batch.Cancel(ctx, name); err != nil {
			f.log.Warn("cancel a worker job", "job", name, "err", err)
		}
	}
	for ctx.Err() == nil {
		alive, err := f.batch.Alive(ctx)
		if err != nil || len(alive) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.log.Info("factory stopped: its worker jobs are cancelled", "jobs", len(f.mine))
}
