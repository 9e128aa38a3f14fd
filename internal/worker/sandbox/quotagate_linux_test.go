package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// joinAtStart has the test's shells join their v1 cpu cells at the start,
// as where no v2 cell holds them, for tests of the join.
func joinAtStart(t *testing.T) {
	t.Helper()
	quotaFromStart = true
	t.Cleanup(func() { quotaFromStart = false })
}

// gated reports whether w's shells with a quota start outside their v1
// cpu cells, a quotaGate moving them in if they overrun.
func gated(w *Warden) bool {
	return w.guard.alive() && w.cg.gatesQuota()
}

func TestOverrun(t *testing.T) {
	ms := time.Millisecond
	for _, tt := range []struct {
		used, elapsed time.Duration
		cores         float64
		want          bool
	}{
		{30 * ms, 30 * ms, 1, false},  // one process, one core
		{42 * ms, 30 * ms, 1, false},  // within a tenth and a tick
		{60 * ms, 30 * ms, 1, true},   // two busy processes
		{20 * ms, 30 * ms, 0.2, true}, // a fifth of a core, one busy process
		{300 * ms, time.Second, 0.2, true},
		{220 * ms, time.Second, 0.2, false},
		{1900 * ms, time.Second, 2, false},
		{2500 * ms, time.Second, 2, true},
		{0, 0, 1, false},
	} {
		if got := overrun(tt.used, tt.elapsed, tt.cores); got != tt.want {
			t.Errorf("overrun(%v used in %v, %g cores) = %v; want %v", tt.used, tt.elapsed, tt.cores, got, tt.want)
		}
	}
}

// A shell with a v1 quota starts outside its v1 cpu cell where its v2 cell
// holds it and a guard kills the cells with the worker; a run that keeps two processes busy on a fifth of a core is
// moved in, those processes and what the shell starts after; a run that
// keeps one process busy on one core is not. The cell is reused by the
// next run, which starts outside it again.
func TestQuotaGate(t *testing.T) {
	w := newGuardedV1Warden(t)
	if !gated(w) {
		t.Skipf("quotas are not gated here (they are where the cpu controller is in cgroup v1 only, beside a v2 cgroup): %s", w.cpu)
	}
	dir := t.TempDir()
	busy := `for i in 1 2; do sh -c 'while :; do :; done' & p="$p $!"; done; sleep 0.3; cat /proc/$!/cgroup > child; cat /proc/self/cgroup; kill $p; wait`
	start := time.Now()
	res, err := Run(context.Background(), Spec{Dir: dir, Command: busy, Cores: 0.2, Warden: w})
	if err != nil || res.Kind != Success {
		t.Fatalf("busy run: %v (%s), %v; want success", res.Kind, res.Message, err)
	}
	cell := cellOf(t, w, res.Stdout)
	if !inCPUCell(w, res.Stdout, cell) {
		t.Errorf("a process the busy run started after 0.3 s is outside its cell %s:\n%s", cell, res.Stdout)
	}
	child, err := os.ReadFile(filepath.Join(dir, "child"))
	if err != nil {
		t.Fatal(err)
	}
	if !inCPUCell(w, child, cell) {
		t.Errorf("a busy process of the run is outside its cell %s after 0.3 s:\n%s", cell, child)
	}
	if got := readQuota(t, w, cell); got != "20000" {
		t.Errorf("quota %s; want 20000", got)
	}
	t.Logf("busy run took %v", time.Since(start))

	res, err = Run(context.Background(), Spec{Dir: dir, Command: "timeout 0.3 sh -c 'while :; do :; done'; cat /proc/self/cgroup", Cores: 1, Warden: w})
	if err != nil || res.Kind != Success {
		t.Fatalf("one-core run: %v (%s), %v; want success", res.Kind, res.Message, err)
	}
	if c := cellOf(t, w, res.Stdout); filepath.Base(c) != filepath.Base(cell) {
		t.Errorf("the next run is in cell %s; want %s reused", c, cell)
	}
	if inCPUCell(w, res.Stdout, cell) {
		t.Errorf("a run that kept to its one core was moved into its v1 cell:\n%s", res.Stdout)
	}
	if strings.Count(string(res.Stdout), "\n") < 2 {
		t.Errorf("cgroups of the one-core run: %q", res.Stdout)
	}
}
