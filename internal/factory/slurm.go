package factory

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"trellis"
)

// Slurm is a batch system whose jobs are Slurm jobs, each asking for its
// worker's resources (--cpus-per-task, --mem, --gres=gpu:N): sbatch submits them,
// squeue tells which still pend or run, scancel cancels them. It only
// carries commands; what to submit or cancel is the factory's.
type Slurm struct {
	TimeLimit time.Duration // --time; 0 leaves the partition's default
	Partition string        // --partition; "" the default partition
	OutputDir string        // each job's output goes to DIR/NAME-JOBID.out; "" the current directory
	Extra     []string      // more sbatch options, as given

	mu  sync.Mutex        // guards ids
	ids map[string]string // job name -> Slurm job id, of jobs submitted and not seen ended
}

// sbatchArgs returns sbatch's arguments for job name; the job script comes
// on standard input.
func (s *Slurm) sbatchArgs(name string, w trellis.Resources) []string {
	out := filepath.Join(s.OutputDir, name+"-%j.out")
	args := []string{"--parsable", "--job-name", name, "--output", out,
		"--nodes", "1", "--ntasks", "1", "--cpus-per-task", strconv.Itoa(max(1, int(w.Cores+0.999)))}
	if w.MemoryMB > 0 {
		args = append(args, "--mem", strconv.FormatInt(w.MemoryMB, 10)) // in MB, sbatch's default unit
	}
	if w.GPUs > 0 {
		args = append(args, "--gres", "gpu:"+strconv.Itoa(w.GPUs))
	}
	if s.TimeLimit > 0 {
		args = append(args, "--time", strconv.Itoa(max(1, int((s.TimeLimit+time.Minute-1)/time.Minute)))) // minutes
	}
	if s.Partition != "" {
		args = append(args, "--partition", s.Partition)
	}
	return append(args, s.Extra...)
}

// script is a job script that runs command.
func script(command []string) string {
	q := make([]string, len(command))
	for i, a := range command {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return "#!/bin/sh\nexec " + strings.Join(q, " ") + "\n"
}

// Submit submits the job with sbatch.
func (s *Slurm) Submit(ctx context.Context, job Job) error {
	name, command := job.Name, job.Command
	if len(command) == 0 {
		return fmt.Errorf("job %s: no command", name)
	}
	out, err := run(ctx, script(command), "sbatch", s.sbatchArgs(name, job.Resources)...)
	if err != nil {
		return err
	}
	// --parsable prints "JOBID" or "JOBID;CLUSTER".
	id, _, _ := strings.Cut(strings.TrimSpace(out), ";")
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return fmt.Errorf("sbatch printed %q, not a job id", strings.TrimSpace(out))
	}
	s.mu.Lock()
	if s.ids == nil {
		s.ids = make(map[string]string)
	}
	s.ids[name] = id
	s.mu.Unlock()
	return nil
}

// Cancel cancels the job with scancel; scancel of a job already ended
// succeeds (or says the id is invalid once Slurm forgot it).
func (s *Slurm) Cancel(ctx context.Context, name string) error {
	s.mu.Lock()
	id, ok := s.ids[name]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	_, err := run(ctx, "", "scancel", id)
	if err != nil && strings.Contains(err.Error(), "Invalid job id") {
		return nil
	}
	return err
}

// Alive asks squeue which of the jobs submitted still pend or run.
func (s *Slurm) Alive(ctx context.Context) (map[string]bool, error) {
	s.mu.Lock()
	byID := make(map[string]string, len(s.ids))
	for name, id := range s.ids {
		byID[id] = name
	}
	s.mu.Unlock()
	alive := make(map[string]bool)
	if len(byID) == 0 {
		return alive, nil
	}
	// Every job of this user, not --jobs: squeue fails on a list of ids
	// it has all forgotten.
	out, err := run(ctx, "", "squeue", "--noheader", "--me", "--format", "%i|%T")
	if err != nil {
		return nil, err
	}
	states, err := parseSqueue(out)
	if err != nil {
		return nil, err
	}
	for id, state := range states {
		if name, ok := byID[id]; ok && slurmAlive(state) {
			alive[name] = true
		}
	}
	s.mu.Lock()
	for _, name := range byID {
		if !alive[name] {
			delete(s.ids, name)
		}
	}
	s.mu.Unlock()
	return alive, nil
}

// parseSqueue reads lines "JOBID|STATE" (squeue --format '%i|%T').
func parseSqueue(out string) (map[string]string, error) {
	states := make(map[string]string)
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		id, state, ok := strings.Cut(line, "|")
		if !ok {
			return nil, fmt.Errorf("squeue printed %q, not JOBID|STATE", line)
		}
		states[id] = state
	}
	return states, nil
}

// slurmAlive tells whether a job in state (squeue's %T) may still run or
// hold its resources.
func slurmAlive(state string) bool {
	switch state {
	case "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD":
		return true
	}
	return false // BOOT_FAIL, CANCELLED, COMPLETED, DEADLINE, FAILED, NODE_FAIL, OUT_OF_MEMORY, PREEMPTED, TIMEOUT...
}

// run runs a batch system's command with stdin and returns its standard
// output; its error names the command and carries what it printed.
func run(ctx context.Context, stdin, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = strings.TrimSpace(out.String())
		}
		return "", fmt.Errorf("%s: %w: %s", name, err, msg)
	}
	return out.String(), nil
}
