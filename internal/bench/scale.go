package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"trellis"
	"trellis/internal/sysmon"
)

// ScaleConfig says what `trellis bench scale` and `trellis bench capacity`
// measure.
type ScaleConfig struct {
	// Manager is the command that runs a manager process, such as
	// {"/usr/bin/trellis", "manager"}; Scale adds --listen and --secret-file
	// and reads the address from its first line ("... listening on ADDR").
	Manager []string
	// Worker, when set, is the command of a worker process, such as
	// {"/usr/bin/trellis", "worker"}: the workers are then processes, not
	// fakes in this process. Scale adds --cores, --secret-file and the
	// manager's address, and --simulate N when Simulate is set.
	Worker []string
	// Simulate runs the workers as one process of simulated workers
	// (trellis worker --simulate): the real worker session code, running
	// nothing. Without it, Worker runs one real worker process per worker.
	Simulate bool
	Workers  int           // workers
	Cores    float64       // cores each worker offers: one-core tasks it runs at once
	Tasks    int           // one-core tasks submitted
	Idle     time.Duration // how long the idle manager is measured, connected to every worker
	// Command is each task's command; "" means true.
	Command string
	// TaskMemoryMB is each task's memory limit; 0 means none.
	TaskMemoryMB int64
	// PlainLoop, with real workers, also runs the tasks' command as many
	// times, as many at once as the workers' cores, in a plain Go loop in
	// this process (os/exec, no sandbox, no cgroup): the CPU that merely
	// starting and reaping those processes costs, the floor for the
	// workers' own (PlainLoopCPUPercent).
	PlainLoop bool
	// QueueFirst submits every task before any worker connects, to
	// measure the manager with them all queued; the idle manager is then
	// not measured, and the tasks' time runs from the workers' start.
	QueueFirst bool
	// WorkerCPUProfile, when set, has the first worker process write its
	// CPU profile there (trellis worker --cpuprofile).
	WorkerCPUProfile string
	// ManagerCPUProfile, when set, has the manager write its CPU profile
	// there (trellis manager --cpuprofile).
	ManagerCPUProfile string
	// ManagerMemProfile, when set with QueueFirst, has the manager write a
	// heap profile there once every task is queued (trellis manager
	// --memprofile, then SIGUSR1).
	ManagerMemProfile string
	// Heartbeat, when set, is the manager's heartbeat interval
	// (trellis manager --heartbeat); 0 leaves its default.
	Heartbeat time.Duration
	// Ahead, when set, is how many tasks each worker may hold beyond its
	// free resources (trellis manager --ahead); nil leaves the manager's
	// default.
	Ahead *int
}

// ScaleResult is the output of `trellis bench scale`. The manager runs in
// its own process, so its CPU and memory are its own, not the fake
// workers' or the client's.
type ScaleResult struct {
	Bench                  string  `json:"bench"`
	Mode                   string  `json:"mode"` // fake (in this process), simulated (trellis worker --simulate) or real (worker processes)
	Workers                int     `json:"workers"`
	Tasks                  int     `json:"tasks"`
	ConnectS               float64 `json:"connect_s"`       // until the manager welcomed every worker
	ConnectRetries         int64   `json:"connect_retries"` // connections that failed before a welcome
	ConnectStuck           int64   `json:"connect_stuck"`   // of those, hellos unanswered for 20 s
	TasksPerS              float64 `json:"tasks_per_s"`
	TasksSeconds           float64 `json:"tasks_seconds"` // first submit to last result
	ManagerCPUMsPer1kTasks float64 `json:"manager_cpu_ms_per_1k_tasks"`
	ManagerIdleRSSMB       float64 `json:"manager_idle_rss_mb"` // every worker connected, no task yet
	ManagerRSSMB           float64 `json:"manager_rss_mb"`      // peak over the whole run
	// ManagerBytesPerQueuedTask is the manager's RSS over its idle RSS,
	// divided by the tasks queued, both read once every task was
	// submitted: an estimate (Go's heap holds garbage until collected).
	ManagerBytesPerQueuedTask float64 `json:"manager_bytes_per_queued_task"`
	QueuedAfterSubmit         int     `json:"queued_after_submit"`
	ManagerQueuedRSSMB        float64 `json:"manager_queued_rss_mb,omitempty"` // with every task queued (QueueFirst)
	IdleCPUUsPerWorkerS       float64 `json:"idle_cpu_us_per_worker_s"`
	IdleSeconds               float64 `json:"idle_seconds"`
	Runs                      int     `json:"runs"` // attempts the workers ran: Tasks when each ran once
	// WorkerCPUPercent is the worker processes' own CPU (their children's
	// not counted) over the task phase, in % of one core; 0 for fakes.
	WorkerCPUPercent float64 `json:"worker_cpu_percent,omitempty"`
	// PlainLoopCPUPercent is this process's CPU (its children's not
	// counted) while it ran the tasks' command in a plain loop
	// (PlainLoop), in % of one core, over that loop's time; PlainLoopPerS
	// is how many processes a second that loop ran.
	PlainLoopCPUPercent float64 `json:"plain_loop_cpu_percent,omitempty"`
	PlainLoopPerS       float64 `json:"plain_loop_per_s,omitempty"`
}

// submitChunk is how many tasks one Submit carries.
const submitChunk = 100000

// Scale starts a manager process, connects cfg.Workers fake workers to it
// (real protocol, no task is run), measures the idle manager, then runs
// cfg.Tasks tasks through it. It fails unless every task succeeded and was
// run exactly once.
func Scale(ctx context.Context, cfg ScaleConfig, logf func(string, ...any)) (*ScaleResult, error) {
	if cfg.Simulate && len(cfg.Worker) == 0 {
		return nil, errors.New("bench: simulated workers need the worker command")
	}
	if cfg.Workers < 1 || cfg.Tasks < 0 || cfg.Cores < 1 {
		return nil, fmt.Errorf("bench scale: %d workers of %g cores, %d tasks: give at least 1 worker of at least 1 core, and 0 or more tasks", cfg.Workers, cfg.Cores, cfg.Tasks)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dir, secret, secretFile, err := secretDir("trellis-bench-scale-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	command := cfg.Manager
	if cfg.ManagerCPUProfile != "" {
		command = append(slices.Clone(command), "--cpuprofile", cfg.ManagerCPUProfile)
	}
	if cfg.Heartbeat > 0 {
		command = append(slices.Clone(command), "--heartbeat", cfg.Heartbeat.String())
	}
	if cfg.Ahead != nil {
		command = append(slices.Clone(command), "--ahead", strconv.Itoa(*cfg.Ahead))
	}
	if cfg.ManagerMemProfile != "" {
		if !cfg.QueueFirst {
			return nil, errors.New("bench scale: a heap profile of the manager is taken with every task queued: give QueueFirst (--queue-first) too")
		}
		command = append(slices.Clone(command), "--memprofile", cfg.ManagerMemProfile)
	}
	mgr, addr, err := startManager(ctx, command, secretFile)
	if err != nil {
		return nil, err
	}
	defer mgr.stop()
	res := &ScaleResult{Bench: "scale", Mode: "fake", Workers: cfg.Workers, Tasks: cfg.Tasks}
	c, err := trellis.Dial(ctx, addr, trellis.WithSecret(secret))
	if err != nil {
		return nil, err
	}
	defer c.Close()

	submit := func() ([]*trellis.Handle, error) {
		var handles []*trellis.Handle
		for sent := 0; sent < cfg.Tasks; sent += submitChunk {
			chunk := make([]*trellis.Task, min(submitChunk, cfg.Tasks-sent))
			for i := range chunk {
				chunk[i] = trellis.NewTask(cmp.Or(cfg.Command, "true"))
				chunk[i].Resources.MemoryMB = cfg.TaskMemoryMB
			}
			hs, err := c.Submit(ctx, chunk...)
			if err != nil {
				return nil, err
			}
			handles = append(handles, hs...)
		}
		return handles, nil
	}
	// queued reads how many tasks wait, and what the manager holds over
	// base MB for them.
	queued := func(baseMB float64) error {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		u, err := mgr.usage()
		if err != nil {
			return err
		}
		res.QueuedAfterSubmit = st.Waiting + st.Ready
		if res.QueuedAfterSubmit > 0 {
			res.ManagerBytesPerQueuedTask = (u.rssMB - baseMB) * (1 << 20) / float64(res.QueuedAfterSubmit)
		}
		res.ManagerQueuedRSSMB = u.rssMB
		return nil
	}
	var handles []*trellis.Handle
	var before usage
	if cfg.QueueFirst {
		logf("queueing %d tasks before any worker connects", cfg.Tasks)
		empty, err := mgr.usage()
		if err != nil {
			return nil, err
		}
		if handles, err = submit(); err != nil {
			return nil, err
		}
		if err := queued(empty.rssMB); err != nil {
			return nil, err
		}
		if cfg.ManagerMemProfile != "" {
			logf("writing the manager's heap profile to %s", cfg.ManagerMemProfile)
			if err := mgr.heapProfile(ctx, cfg.ManagerMemProfile); err != nil {
				return nil, err
			}
		}
		if before, err = mgr.usage(); err != nil {
			return nil, err
		}
	}

	var fakes *fakeWorkers
	var procs workerProcs
	var connected func() (int, error)
	start := time.Now()
	if len(cfg.Worker) == 0 {
		logf("connecting %d fake workers to the manager at %s", cfg.Workers, addr)
		fakes = newFakeWorkers(addr, secret, cfg.Cores)
		fctx, stopFakes := context.WithCancel(ctx)
		defer fakes.wait()
		defer stopFakes()
		fakes.start(fctx, cfg.Workers)
		connected = func() (int, error) { return int(fakes.welcomed.Load()), nil }
	} else {
		res.Mode = "real"
		if cfg.Simulate {
			res.Mode = "simulated"
		}
		logf("starting %d %s workers for the manager at %s", cfg.Workers, res.Mode, addr)
		var err error
		procs, err = startWorkers(ctx, cfg, addr, secretFile)
		defer procs.stop()
		if err != nil {
			return nil, err
		}
		connected = func() (int, error) {
			if err := procs.exited(); err != nil {
				return 0, err
			}
			st, err := c.Status(ctx)
			if err != nil {
				return 0, err
			}
			return len(st.Workers), nil
		}
	}
	for {
		n, err := connected()
		if err != nil {
			return nil, err
		}
		if n >= cfg.Workers {
			break
		}
		if err := mgr.exited(); err != nil {
			return nil, err
		}
		poll := 10 * time.Millisecond
		if fakes == nil {
			poll = 500 * time.Millisecond // a status of every worker costs the manager
		}
		if err := sleepCtx(ctx, poll); err != nil {
			return nil, err
		}
		if time.Since(start) > 5*time.Minute {
			return nil, fmt.Errorf("bench: %d of %d workers connected after 5m: see the manager's log:\n%s", n, cfg.Workers, mgr.log.tail())
		}
	}
	res.ConnectS = time.Since(start).Seconds()
	if fakes != nil {
		res.ConnectRetries = fakes.retries.Load()
		res.ConnectStuck = fakes.stuck.Load()
	}

	var workersBefore time.Duration
	if !cfg.QueueFirst {
		logf("measuring the idle manager for %s", cfg.Idle)
		idle, after, err := mgr.idle(ctx, cfg.Idle)
		if err != nil {
			return nil, err
		}
		res.IdleSeconds = after.at.Sub(idle.at).Seconds()
		res.IdleCPUUsPerWorkerS = (after.cpu - idle.cpu).Seconds() * 1e6 / res.IdleSeconds / float64(cfg.Workers)
		res.ManagerIdleRSSMB = after.rssMB

		logf("running %d tasks", cfg.Tasks)
		if before, err = mgr.usage(); err != nil {
			return nil, err
		}
		if workersBefore, err = procs.cpu(); err != nil {
			return nil, err
		}
		if handles, err = submit(); err != nil {
			return nil, err
		}
		if err := queued(res.ManagerIdleRSSMB); err != nil {
			return nil, err
		}
	}
	for _, h := range handles {
		r, err := h.Wait(ctx)
		if err != nil {
			return nil, err
		}
		if !r.OK() {
			return nil, fmt.Errorf("bench scale: task %d: %w", h.ID, r.Err())
		}
	}
	after, err := mgr.usage()
	if err != nil {
		return nil, err
	}
	res.TasksSeconds = after.at.Sub(before.at).Seconds()
	workersAfter, err := procs.cpu()
	if err != nil {
		return nil, err
	}
	if len(procs) > 0 && res.TasksSeconds > 0 {
		res.WorkerCPUPercent = (workersAfter - workersBefore).Seconds() / res.TasksSeconds * 100
	}
	if cfg.Tasks > 0 {
		res.TasksPerS = float64(cfg.Tasks) / res.TasksSeconds
		res.ManagerCPUMsPer1kTasks = float64((after.cpu - before.cpu).Milliseconds()) * 1000 / float64(cfg.Tasks)
	}
	res.ManagerRSSMB = after.peakMB

	if fakes == nil {
		// The workers are processes: the manager counts what each ran.
		st, err := c.Status(ctx)
		if err != nil {
			return nil, err
		}
		for _, w := range st.Workers {
			res.Runs += w.TasksDone
		}
		if res.Runs != cfg.Tasks {
			return nil, fmt.Errorf("bench: the workers ran %d attempts for %d tasks, want one each", res.Runs, cfg.Tasks)
		}
		if cfg.PlainLoop && cfg.Tasks > 0 {
			slots := cfg.Workers * int(cfg.Cores)
			logf("running the tasks' command %d times in a plain loop, %d at a time", cfg.Tasks, slots)
			cpu0 := selfCPU()
			secs, err := spawn(ctx, cfg.Tasks, slots, cmp.Or(cfg.Command, "true"))
			if err != nil {
				return nil, err
			}
			res.PlainLoopCPUPercent = (selfCPU() - cpu0).Seconds() / secs * 100
			res.PlainLoopPerS = float64(cfg.Tasks) / secs
		}
		return res, nil
	}
	runs := fakes.runsPerTask()
	for _, h := range handles {
		if n := runs[h.ID]; n != 1 {
			return nil, fmt.Errorf("bench scale: task %d ran %d times on the fake workers, want exactly once", h.ID, n)
		}
	}
	for _, n := range runs {
		res.Runs += n
	}
	if res.Runs != cfg.Tasks {
		return nil, fmt.Errorf("bench scale: the fake workers ran %d attempts for %d tasks, want one each", res.Runs, cfg.Tasks)
	}
	return res, nil
}

// managerProc is a process the bench started: the manager under
// measurement, or worker processes.
type managerProc struct {
	cmd  *exec.Cmd
	log  *tailBuffer
	done chan struct{} // closed when it exited; err says how
	err  error
}

func startManager(ctx context.Context, command []string, secretFile string) (*managerProc, string, error) {
	if len(command) == 0 {
		return nil, "", errors.New("bench scale: no manager command")
	}
	args := append(command[1:len(command):len(command)], "--listen", "127.0.0.1:0", "--secret-file", secretFile)
	cmd := exec.Command(command[0], args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	p := &managerProc{cmd: cmd, log: &tailBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.log
	if f := logFile("manager"); f != nil {
		cmd.Stderr = io.MultiWriter(p.log, f)
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("bench scale: start the manager %q: %w", command, err)
	}
	lines := bufio.NewScanner(stdout)
	addr := ""
	for addr == "" && lines.Scan() {
		if _, a, ok := strings.Cut(lines.Text(), "listening on "); ok {
			addr = strings.TrimSpace(a)
		}
	}
	go func() { // exits when the manager closes its stdout (it exits)
		for lines.Scan() {
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	if addr == "" {
		p.stop()
		return nil, "", fmt.Errorf("bench scale: the manager %q never said where it listens:\n%s", command, p.log.tail())
	}
	return p, addr, ctx.Err()
}

// heapProfile has the manager write its heap profile to file (it runs
// with --memprofile file) and waits until it is there, for at most a
// minute.
func (p *managerProc) heapProfile(ctx context.Context, file string) error {
	os.Remove(file) // one left by an earlier run must not count
	if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		return fmt.Errorf("bench: ask the manager for its heap profile: %w", err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(file); err == nil {
			return nil
		}
		if err := p.exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: the manager wrote no heap profile to %s within a minute of SIGUSR1: see its log:\n%s", file, p.log.tail())
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// exited returns an error once the manager has exited.
func (p *managerProc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("bench: %s exited (%v):\n%s", p.cmd.Args[:2], p.err, p.log.tail())
	default:
		return nil
	}
}

// stop interrupts the manager and waits for it; a kill follows after 10 s.
func (p *managerProc) stop() {
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// idle returns the manager's usage before and after d of doing nothing.
func (p *managerProc) idle(ctx context.Context, d time.Duration) (before, after usage, err error) {
	if before, err = p.usage(); err != nil {
		return before, after, err
	}
	if err = sleepCtx(ctx, d); err != nil {
		return before, after, err
	}
	after, err = p.usage()
	return before, after, err
}

// usage is the manager process's CPU time (user + system) and memory at a moment.
type usage struct {
	at     time.Time
	cpu    time.Duration
	rssMB  float64
	peakMB float64
}

// clockTicks is USER_HZ, 100 on every Linux that trellis runs on.
const clockTicks = 100

func (p *managerProc) usage() (usage, error) {
	u := usage{at: time.Now()}
	pid := p.cmd.Process.Pid
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, fmt.Errorf("bench scale: read the manager's CPU time: %w", err)
	}
	// Fields after the command name, which ends at the last ')': state is
	// field 3, utime 14 and stime 15.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 13 {
		return u, fmt.Errorf("bench scale: /proc/%d/stat has %d fields after the name, want at least 13", pid, len(f))
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	u.cpu = time.Duration(ut+st) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, fmt.Errorf("bench scale: read the manager's memory: %w", err)
	}
	for line := range strings.Lines(string(status)) {
		k, v, _ := strings.Cut(line, ":")
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch k {
		case "VmRSS":
			u.rssMB = kb / 1024
		case "VmHWM":
			u.peakMB = kb / 1024
		}
	}
	return u, nil
}

// tailBuffer keeps the last 8 KiB written to it: the manager's log, for errors.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte // guarded by mu
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - 8<<10; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) tail() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// workerProcs are the worker processes of a run.
type workerProcs []*managerProc

// startWorkers starts cfg.Workers workers for the manager at addr: one
// process of simulated workers, or one real worker process each.
func startWorkers(ctx context.Context, cfg ScaleConfig, addr, secretFile string) (workerProcs, error) {
	args := []string{"--cores", strconv.FormatFloat(cfg.Cores, 'g', -1, 64), "--secret-file", secretFile}
	if cfg.Simulate {
		args = append(args, "--simulate", strconv.Itoa(cfg.Workers))
	}
	n := cfg.Workers
	if cfg.Simulate {
		n = 1
	}
	var procs workerProcs
	for i := range n {
		argv := append(append(slices.Clone(cfg.Worker), args...), addr)
		if !cfg.Simulate {
			argv = append(argv[:len(argv)-1], "--name", "bench-"+strconv.Itoa(i+1), addr)
		}
		if i == 0 && cfg.WorkerCPUProfile != "" {
			argv = append(argv[:len(argv)-1], "--cpuprofile", cfg.WorkerCPUProfile, addr)
		}
		p, err := startWorker(argv, n)
		if err != nil {
			return procs, err
		}
		procs = append(procs, p)
		if err := ctx.Err(); err != nil {
			return procs, err
		}
	}
	return procs, nil
}

// cpu is the worker processes' own CPU time so far.
func (ps workerProcs) cpu() (time.Duration, error) {
	var total time.Duration
	for _, p := range ps {
		if cpu, ok := threadsCPU(p.cmd.Process.Pid); ok {
			total += cpu
			continue
		}
		u, err := p.usage()
		if err != nil {
			return 0, err
		}
		total += u.cpu
	}
	return total, nil
}

// threadsCPU is the CPU time that process pid's threads have used, to the
// nanosecond: the sum of their run times in /proc/PID/task/*/schedstat.
// /proc/PID/stat counts in ticks of 10 ms, too coarse for a worker that
// spends a few milliseconds on a short run (it read 0). A thread that has
// exited no longer counts; a Go process's threads seldom exit. ok is false
// where schedstat cannot be read.
func threadsCPU(pid int) (cpu time.Duration, ok bool) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tids, err := os.ReadDir(dir)
	if err != nil {
		return 0, false
	}
	for _, tid := range tids {
		b, err := os.ReadFile(filepath.Join(dir, tid.Name(), "schedstat"))
		if err != nil {
			continue // the thread exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return 0, false
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, false
		}
		cpu += time.Duration(ns)
		ok = true
	}
	return cpu, ok
}

// exited returns an error once any worker process has exited.
func (ps workerProcs) exited() error {
	for _, p := range ps {
		if err := p.exited(); err != nil {
			return err
		}
	}
	return nil
}

// stop interrupts every worker process and waits for them.
func (ps workerProcs) stop() {
	for _, p := range ps {
		p.cmd.Process.Signal(os.Interrupt)
	}
	for _, p := range ps {
		p.stop()
	}
}

// startWorker starts argv as one of the workers worker processes the
// bench puts on this host, with the environment the factory's local batch
// system would give it (sysmon.WorkerEnv): the runtime monitor's setting
// in place, so it starts once, or off where they are more than
// sysmon.CrowdedPerCore per core.
func startWorker(argv []string, workers int) (*managerProc, error) {
	return startProc(argv, sysmon.WorkerEnv(os.Environ(), workers, runtime.NumCPU()))
}

// startProc starts command with the environment env (nil: this
// process's) and its output in a tail buffer.
func startProc(command, env []string) (*managerProc, error) {
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Env = env
	p := &managerProc{cmd: cmd, log: &tailBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if f := logFile("worker"); f != nil {
		cmd.Stdout = io.MultiWriter(p.log, f)
		cmd.Stderr = cmd.Stdout
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %q: %w", command, err)
	}
	go func() { // exits when the process exits
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// logFile is where a process's output goes too, for looking into a run:
// $TRELLIS_BENCH_LOGS/NAME-PID-TIME.log, or nil without that variable.
func logFile(name string) *os.File {
	dir := os.Getenv("TRELLIS_BENCH_LOGS")
	if dir == "" {
		return nil
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano())))
	if err != nil {
		return nil
	}
	return f // closed when the bench process exits
}
