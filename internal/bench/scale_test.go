package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"testing"
	"time"

	"trellis/internal/manager"
	"trellis/internal/worker"
	"trellis/internal/worker/resources"
)

// TestHelperProcess is the manager process of TestScaleSmall, or its
// simulated workers' process: the test binary run again, as the trellis
// binary's "manager" and "worker --simulate" subcommands would be.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("TRELLIS_BENCH_HELPER") != "1" {
		t.Skip("helper process only")
	}
	args := os.Args
	for len(args) > 0 && args[0] != "--" {
		args = args[1:]
	}
	if len(args) < 2 {
		fmt.Fprintf(os.Stderr, "helper: args %q, want -- manager|worker FLAGS\n", args)
		os.Exit(2)
	}
	fs := flag.NewFlagSet(args[1], flag.ExitOnError)
	listen := fs.String("listen", "", "")
	secretFile := fs.String("secret-file", "", "")
	cores := fs.Float64("cores", 1, "")
	simulate := fs.Int("simulate", 0, "")
	fs.Parse(args[2:])
	secret, err := os.ReadFile(*secretFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt)
	go func() { // exits when Scale interrupts the process
		<-stop
		cancel()
	}()
	switch args[1] {
	case "manager":
		m, err := manager.Listen(manager.Config{Listen: *listen, Secret: string(secret)})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("helper manager listening on %s\n", m.Addr())
		err = m.Run(ctx)
	case "worker":
		err = worker.RunSimulated(ctx, worker.Config{Manager: fs.Arg(0), Secret: string(secret), Workdir: t.TempDir(),
			Resources: resources.Resources{MilliCores: int64(*cores * 1000), MemoryMB: 1024, DiskMB: 1024},
			Simulate:  &worker.Simulation{}}, *simulate, nil)
	}
	if err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// The fake workers carry tasks through a real manager process: every task
// succeeds and runs exactly once (Scale fails otherwise), over more
// workers than tasks at once and more tasks than workers.
func TestScaleSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Setenv("TRELLIS_BENCH_HELPER", "1")
	self := []string{os.Args[0], "-test.run=^TestHelperProcess$", "--", "manager"}
	for _, tc := range []struct{ workers, tasks int }{{20, 3000}, {200, 50}} {
		t.Run(fmt.Sprintf("%dworkers_%dtasks", tc.workers, tc.tasks), func(t *testing.T) {
			r, err := Scale(ctx, ScaleConfig{Manager: self, Workers: tc.workers, Cores: 2, Tasks: tc.tasks, Idle: 100 * time.Millisecond}, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			if r.Runs != tc.tasks || r.Workers != tc.workers {
				t.Errorf("runs %d on %d workers, want %d on %d", r.Runs, r.Workers, tc.tasks, tc.workers)
			}
			if r.ManagerRSSMB <= 0 || r.TasksPerS <= 0 {
				t.Errorf("%+v: want the manager's memory and the rate measured", r)
			}
		})
	}
}

// Simulated workers (the real worker session code in one process) carry
// tasks through a real manager process; the manager counts as many runs
// as tasks (Scale fails otherwise). With QueueFirst every task is queued
// before a worker connects, and counted so.
func TestCapacitySimulated(t *testing.T) {
	t.Setenv("TRELLIS_BENCH_HELPER", "1")
	helper := []string{os.Args[0], "-test.run=^TestHelperProcess$", "--"}
	for _, queueFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("queueFirst=%v", queueFirst), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			r, err := Scale(ctx, ScaleConfig{Manager: append(slices.Clone(helper), "manager"), Worker: append(slices.Clone(helper), "worker"),
				Simulate: true, Workers: 50, Cores: 2, Tasks: 2000, Idle: 100 * time.Millisecond, QueueFirst: queueFirst}, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			if r.Mode != "simulated" || r.Runs != 2000 || r.Workers != 50 {
				t.Errorf("%s: %d runs on %d workers, want simulated: 2000 on 50", r.Mode, r.Runs, r.Workers)
			}
			if r.ConnectS <= 0 || r.TasksPerS <= 0 || r.ManagerRSSMB <= 0 {
				t.Errorf("%+v: want connect time, rate and memory measured", r)
			}
			if queueFirst && (r.QueuedAfterSubmit != 2000 || r.ManagerQueuedRSSMB <= 0) {
				t.Errorf("queue first: %d queued, %g MB; want all 2000 queued and the manager's memory then", r.QueuedAfterSubmit, r.ManagerQueuedRSSMB)
			}
		})
	}
}
