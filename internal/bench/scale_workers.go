package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"trellis"
)

// WorkersConfig says what `trellis bench scale --workers` measures: real
// worker processes, started by a factory with the local batch system.
type WorkersConfig struct {
	Self     string // the trellis binary: manager, factory and workers
	Workers  int    // worker processes of the measured run, 1 core each
	Baseline int    // worker processes of the run the growth is measured against (0: none)
	Tasks    int    // `true` tasks per run
	MemoryMB int    // each worker's memory
	Idle     time.Duration
}

// WorkersRun is one run: a manager process, n workers, the tasks.
type WorkersRun struct {
	Workers               int     `json:"workers"`
	ConnectS              float64 `json:"connect_s"` // from the factory's start until every worker connected
	TasksPerS             float64 `json:"tasks_per_s"`
	ManagerCPUSPer1kTasks float64 `json:"manager_cpu_s_per_1k_tasks"`
	ManagerIdleRSSMB      float64 `json:"manager_idle_rss_mb"`
	ManagerRSSMB          float64 `json:"manager_rss_mb"` // peak
	IdleCPUUsPerWorkerS   float64 `json:"idle_cpu_us_per_worker_s"`
}

// WorkersResult is the output of `trellis bench scale --workers`: the run
// at Workers, and the growth of the manager's memory and CPU per task
// from the baseline run (Baseline workers) to it.
type WorkersResult struct {
	Bench                 string       `json:"bench"`
	Workers               int          `json:"workers"`
	Tasks                 int          `json:"tasks"`
	TasksPerS             float64      `json:"tasks_per_s"`
	ManagerCPUSPer1kTasks float64      `json:"manager_cpu_s_per_1k_tasks"`
	ManagerRSSMB          float64      `json:"manager_rss_mb"`
	RSSGrowth             float64      `json:"rss_growth,omitempty"` // peak RSS at Workers ÷ at Baseline
	CPUGrowth             float64      `json:"cpu_growth,omitempty"` // CPU per task at Workers ÷ at Baseline
	Runs                  []WorkersRun `json:"runs"`
}

// ScaleWorkers runs the baseline (if any), then the measured run, each on a
// fresh manager process with a factory (--batch local) keeping it supplied
// with exactly n worker processes.
func ScaleWorkers(ctx context.Context, cfg WorkersConfig, logf func(string, ...any)) (*WorkersResult, error) {
	if cfg.Workers < 1 || cfg.Tasks < 1 || cfg.Baseline < 0 {
		return nil, fmt.Errorf("bench scale: --workers %d, --tasks %d, --baseline-workers %d: give at least 1 worker and 1 task", cfg.Workers, cfg.Tasks, cfg.Baseline)
	}
	res := &WorkersResult{Bench: "scale-workers", Workers: cfg.Workers, Tasks: cfg.Tasks}
	sizes := []int{cfg.Workers}
	if cfg.Baseline > 0 {
		sizes = []int{cfg.Baseline, cfg.Workers}
	}
	for _, n := range sizes {
		run, err := workersRun(ctx, cfg, n, logf)
		if err != nil {
			return nil, err
		}
		res.Runs = append(res.Runs, *run)
	}
	last := res.Runs[len(res.Runs)-1]
	res.TasksPerS, res.ManagerCPUSPer1kTasks, res.ManagerRSSMB = last.TasksPerS, last.ManagerCPUSPer1kTasks, last.ManagerRSSMB
	if len(res.Runs) == 2 {
		base := res.Runs[0]
		res.RSSGrowth = last.ManagerRSSMB / base.ManagerRSSMB
		if base.ManagerCPUSPer1kTasks > 0 { // CPU time counts in 10 ms ticks: too few tasks may show none
			res.CPUGrowth = last.ManagerCPUSPer1kTasks / base.ManagerCPUSPer1kTasks
		}
	}
	return res, nil
}

func workersRun(ctx context.Context, cfg WorkersConfig, n int, logf func(string, ...any)) (*WorkersRun, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dir, secret, secretFile, err := secretDir("trellis-bench-workers-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	mgr, addr, err := startManager(ctx, []string{cfg.Self, "manager", "--log-level", "warn"}, secretFile)
	if err != nil {
		return nil, err
	}
	defer mgr.stop()
	c, err := trellis.Dial(ctx, addr, trellis.WithSecret(secret))
	if err != nil {
		return nil, err
	}
	defer c.Close()

	logf("%d workers: a factory (--batch local) starts them", n)
	factory := exec.Command(cfg.Self, "factory", addr, "--secret-file", secretFile, "--batch", "local", "--name", "scale",
		"--min", strconv.Itoa(n), "--max", strconv.Itoa(n), "--per-cycle", strconv.Itoa(n), "--cores", "1",
		"--memory", strconv.Itoa(cfg.MemoryMB), "--interval", "500ms", "--idle-exit", "1h", "--log-level", "warn")
	factory.Dir = dir // the workers' work directories go there
	factory.Stderr = mgr.log
	start := time.Now()
	if err := factory.Start(); err != nil {
		return nil, err
	}
	defer func() { // the factory cancels its workers and waits for them
		factory.Process.Signal(os.Interrupt)
		factory.Wait()
	}()
	run := &WorkersRun{Workers: n}
	if err := waitConnected(ctx, c, mgr, n, 5*time.Minute); err != nil {
		return nil, err
	}
	run.ConnectS = time.Since(start).Seconds()

	logf("%d workers: the idle manager for %s", n, cfg.Idle)
	before, after, err := mgr.idle(ctx, cfg.Idle)
	if err != nil {
		return nil, err
	}
	run.IdleCPUUsPerWorkerS = (after.cpu - before.cpu).Seconds() * 1e6 / after.at.Sub(before.at).Seconds() / float64(n)
	run.ManagerIdleRSSMB = after.rssMB

	logf("%d workers: %d tasks", n, cfg.Tasks)
	before = after
	secs, err := runAll(ctx, c, trivialTasks(cfg.Tasks))
	if err != nil {
		return nil, err
	}
	if after, err = mgr.usage(); err != nil {
		return nil, err
	}
	run.TasksPerS = float64(cfg.Tasks) / secs
	run.ManagerCPUSPer1kTasks = (after.cpu - before.cpu).Seconds() * 1000 / float64(cfg.Tasks)
	run.ManagerRSSMB = after.peakMB
	return run, nil
}

// secretDir makes a temporary directory holding a secret file for a
// manager process, and returns both and the secret; the caller removes dir.
func secretDir(prefix string) (dir, secret, secretFile string, err error) {
	if dir, err = os.MkdirTemp("", prefix); err != nil {
		return "", "", "", err
	}
	secret = "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	secretFile = filepath.Join(dir, "secret")
	if err = os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		os.RemoveAll(dir)
		return "", "", "", err
	}
	return dir, secret, secretFile, nil
}

// waitConnected waits until n workers are connected to the manager that c
// reaches, failing if the manager exits or limit passes first.
func waitConnected(ctx context.Context, c *trellis.Client, mgr *managerProc, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		st, err := c.Status(ctx)
		if err == nil && len(st.Workers) >= n {
			return nil
		}
		if err := mgr.exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			got := 0
			if st != nil {
				got = len(st.Workers)
			}
			return fmt.Errorf("%d of %d workers connected after %s (status: %v):\n%s", got, n, limit, err, mgr.log.tail())
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}
