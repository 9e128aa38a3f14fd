package factory

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Condor is a batch system whose jobs are HTCondor jobs: condor_submit
// submits them, condor_q tells which are idle, running or held,
// condor_rm removes them. A held job never runs until someone releases
// it: Alive removes it, logs its HoldReason and counts it ended (a failed
// start, to the factory).
type Condor struct {
	TimeLimit time.Duration // allowed_execute_duration; 0 none
	OutputDir string        // each job's output and error go to DIR/NAME.out and .err; "" the current directory
	Log       *slog.Logger  // held jobs are reported here; nil discards

	mu  sync.Mutex        // guards ids
	ids map[string]string // job name -> "CLUSTER.PROC", of jobs submitted and not seen ended
}

// description returns the submit description of job: request_cpus,
// request_memory, request_disk, request_gpus are its worker's resources.
func (c *Condor) description(job Job) string {
	name, command, w := job.Name, job.Command, job.Resources
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "%s = %s\n", k, v) }
	line("universe", "vanilla")
	line("executable", command[0])
	line("arguments", condorArgs(command[1:]))
	line("batch_name", name)
	line("getenv", "true")
	line("should_transfer_files", "NO") // the worker binary and secret are on a shared file system
	line("output", filepath.Join(c.OutputDir, name+".out"))
	line("error", filepath.Join(c.OutputDir, name+".err"))
	line("request_cpus", strconv.Itoa(max(1, int(w.Cores+0.999))))
	if w.MemoryMB > 0 {
		line("request_memory", strconv.FormatInt(w.MemoryMB, 10)) // MB
	}
	if w.DiskMB > 0 {
		line("request_disk", strconv.FormatInt(w.DiskMB*1024, 10)) // KiB
	}
	if w.GPUs > 0 {
		line("request_gpus", strconv.Itoa(w.GPUs))
	}
	if c.TimeLimit > 0 {
		line("allowed_execute_duration", strconv.Itoa(int(c.TimeLimit/time.Second)))
	}
	b.WriteString("queue 1\n")
	return b.String()
}

// condorArgs quotes args in condor_submit's new syntax: the whole in
// double quotes, each argument in single quotes, a single quote doubled,
// a double quote doubled.
func condorArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		a = strings.ReplaceAll(a, `"`, `""`)
		q[i] = "'" + strings.ReplaceAll(a, "'", "''") + "'"
	}
	return `"` + strings.Join(q, " ") + `"`
}

// Submit submits the job with condor_submit, its description on standard
// input.
func (c *Condor) Submit(ctx context.Context, job Job) error {
	name, command := job.Name, job.Command
	if len(command) == 0 {
		return fmt.Errorf("job %s: no command", name)
	}
	out, err := run(ctx, c.description(job), "condor_submit", "-terse", "-")
	if err != nil {
		return err
	}
	// -terse prints "FIRST - LAST", each CLUSTER.PROC; one job: both the same.
	first, _, _ := strings.Cut(strings.TrimSpace(out), " ")
	if !validJobID(first) {
		return fmt.Errorf("condor_submit -terse printed %q, not CLUSTER.PROC - CLUSTER.PROC", strings.TrimSpace(out))
	}
	c.mu.Lock()
	if c.ids == nil {
		c.ids = make(map[string]string)
	}
	c.ids[name] = first
	c.mu.Unlock()
	return nil
}

func validJobID(id string) bool {
	cluster, proc, ok := strings.Cut(id, ".")
	_, err1 := strconv.ParseUint(cluster, 10, 64)
	_, err2 := strconv.ParseUint(proc, 10, 64)
	return ok && err1 == nil && err2 == nil
}

// Cancel removes the job with condor_rm; one the schedd no longer knows
// is no error.
func (c *Condor) Cancel(ctx context.Context, name string) error {
	c.mu.Lock()
	id, ok := c.ids[name]
	c.mu.Unlock()
	if !ok {
		return nil
	}
	_, err := run(ctx, "", "condor_rm", id)
	if err != nil && (strings.Contains(err.Error(), "not found") || strings.Contains(err.Error(), "Couldn't find")) {
		return nil
	}
	return err
}

// HTCondor's JobStatus values.
const (
	condorIdle      = "1"
	condorRunning   = "2"
	condorRemoved   = "3"
	condorCompleted = "4"
	condorHeld      = "5"
)

// Alive asks condor_q which of the jobs submitted are idle, running,
// transferring output or suspended; held ones it removes.
func (c *Condor) Alive(ctx context.Context) (map[string]bool, error) {
	c.mu.Lock()
	byID := make(map[string]string, len(c.ids))
	for name, id := range c.ids {
		byID[id] = name
	}
	c.mu.Unlock()
	alive := make(map[string]bool)
	if len(byID) == 0 {
		return alive, nil
	}
	// -af:j prints "CLUSTER.PROC" then each attribute, space-separated;
	// HoldReason last, as it has spaces ("undefined" when not held).
	out, err := run(ctx, "", "condor_q", "-af:j", "JobStatus", "HoldReason")
	if err != nil {
		return nil, err
	}
	for line := range strings.Lines(out) {
		f := strings.SplitN(strings.TrimSpace(line), " ", 3)
		if len(f) == 1 && f[0] == "" {
			continue
		}
		if len(f) < 2 || !validJobID(f[0]) {
			return nil, fmt.Errorf("condor_q -af:j JobStatus HoldReason printed %q, not CLUSTER.PROC STATUS REASON", strings.TrimSpace(line))
		}
		name, ok := byID[f[0]]
		if !ok {
			continue
		}
		switch f[1] {
		case condorRemoved, condorCompleted:
		case condorHeld:
			reason := ""
			if len(f) == 3 {
				reason = f[2]
			}
			c.log().Warn("a worker job is held: removing it", "job", name, "condor_id", f[0], "hold_reason", reason)
			if _, err := run(ctx, "", "condor_rm", f[0]); err != nil {
				c.log().Warn("remove a held worker job", "job", name, "err", err)
				alive[name] = true // still there: try again next cycle
			}
		default: // idle, running, transferring output, suspended
			alive[name] = true
		}
	}
	c.mu.Lock()
	for _, name := range byID {
		if !alive[name] {
			delete(c.ids, name)
		}
	}
	c.mu.Unlock()
	return alive, nil
}

func (c *Condor) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}
