package factory

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"

	"trellis/internal/sysmon"
)

// Local is a batch system of worker processes on this machine: a job is a
// process, cancelled with SIGTERM (the worker drains) and, after Grace,
// SIGKILL.
type Local struct {
	Output io.Writer     // where the workers' output goes; nil discards it
	Grace  time.Duration // default 30 s
	// HostCores is this machine's cores (0: runtime.NumCPU()), and Planned
	// the workers the factory may run on it at once (its --max; 0: those
	// running). A worker started where more than sysmon.CrowdedPerCore per
	// core are planned, or run with it, has the Go runtime's monitor at its
	// default (sysmon.WorkerEnv): on so crowded a host, all of them.
	HostCores int
	Planned   int

	mu   sync.Mutex // guards jobs
	jobs map[string]*localJob
}

type localJob struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been reaped
}

// Submit starts the worker process.
func (l *Local) Submit(ctx context.Context, job Job) error {
	name, command := job.Name, job.Command
	if len(command) == 0 {
		return fmt.Errorf("job %s: no command", name)
	}
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdout, cmd.Stderr = l.Output, l.Output
	running, _ := l.Alive(ctx)
	cmd.Env = sysmon.WorkerEnv(os.Environ(), max(len(running)+1, l.Planned), cmp.Or(l.HostCores, runtime.NumCPU()))
	if err := cmd.Start(); err != nil {
		return err
	}
	j := &localJob{cmd: cmd, done: make(chan struct{})}
	go func() { // exits when the process has ended
		cmd.Wait()
		close(j.done)
	}()
	l.mu.Lock()
	if l.jobs == nil {
		l.jobs = make(map[string]*localJob)
	}
	l.jobs[name] = j
	l.mu.Unlock()
	return nil
}

// Cancel asks the worker to drain (SIGTERM) and kills it after Grace.
func (l *Local) Cancel(_ context.Context, name string) error {
	l.mu.Lock()
	j := l.jobs[name]
	l.mu.Unlock()
	if j == nil {
		return nil
	}
	select {
	case <-j.done:
		return nil
	default:
	}
	j.cmd.Process.Signal(syscall.SIGTERM)
	grace := l.Grace
	if grace <= 0 {
		grace = 30 * time.Second
	}
	go func() { // exits when the process has ended, killed after grace if need be
		select {
		case <-j.done:
		case <-time.After(grace):
			j.cmd.Process.Kill()
		}
	}()
	return nil
}

// Alive returns the jobs whose processes run.
func (l *Local) Alive(context.Context) (map[string]bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	alive := make(map[string]bool)
	for name, j := range l.jobs {
		select {
		case <-j.done:
			delete(l.jobs, name)
		default:
			alive[name] = true
		}
	}
	return alive, nil
}
