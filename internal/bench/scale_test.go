package bench

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"testing"
	"time"

	"trellis/internal/manager"
)

// TestHelperProcess is the manager process of TestScaleSmall: the test
// binary run again, as the trellis binary's "manager" subcommand would be.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("TRELLIS_BENCH_HELPER") != "manager" {
		t.Skip("helper process only")
	}
	args := os.Args
	for len(args) > 0 && args[0] != "--" {
		args = args[1:]
	}
	// -- --listen ADDR --secret-file FILE, as Scale passes them.
	if len(args) != 5 {
		fmt.Fprintf(os.Stderr, "helper: args %q, want -- --listen ADDR --secret-file FILE\n", args)
		os.Exit(2)
	}
	secret, err := os.ReadFile(args[4])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	m, err := manager.Listen(manager.Config{Listen: args[2], Secret: string(secret)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("helper manager listening on %s\n", m.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt)
	go func() { // exits when Scale interrupts the process
		<-stop
		cancel()
	}()
	if err := m.Run(ctx); err != nil && ctx.Err() == nil {
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
	t.Setenv("TRELLIS_BENCH_HELPER", "manager")
	self := []string{os.Args[0], "-test.run=^TestHelperProcess$", "--"}
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
