package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// `trellis bench tls` runs tasks through manager and worker processes plain
// and over TLS (--tls auto, workers and client trusting the cluster CA),
// and times a peer transfer each way; its last line is its figures.
func TestBenchTLS(t *testing.T) {
	var res struct {
		Plain    []float64 `json:"plain_tasks_per_s"`
		TLS      []float64 `json:"tls_tasks_per_s"`
		Ratio    float64   `json:"tasks_tls_vs_plain"`
		PeerTLS  []float64 `json:"tls_peer_mb_per_s"`
		PeerRate float64   `json:"peer_tls_vs_plain"`
		PeerCPU  float64   `json:"peer_cpu_tls_vs_plain"`
	}
	benchJSON(t, &res, "bench", "tls", "--tasks", "20", "--workers", "1", "--rounds", "1", "--transfer-mib", "2")
	if len(res.Plain) != 1 || len(res.TLS) != 1 || len(res.PeerTLS) != 1 || res.Ratio <= 0 || res.PeerRate <= 0 || res.PeerCPU <= 0 {
		t.Errorf("figures %+v; want one round of each mode and the three ratios", res)
	}
}

// `trellis bench scale --workers` runs real worker processes that a
// factory starts, at the baseline size and then the measured one.
func TestBenchScaleWorkers(t *testing.T) {
	var res struct {
		Workers   int                     `json:"workers"`
		TasksPerS float64                 `json:"tasks_per_s"`
		RSSGrowth float64                 `json:"rss_growth"`
		Runs      []struct{ Workers int } `json:"runs"`
	}
	benchJSON(t, &res, "bench", "scale", "--workers", "3", "--baseline-workers", "2", "--tasks", "40", "--idle", "200ms")
	if res.Workers != 3 || res.TasksPerS <= 0 || res.RSSGrowth <= 0 || len(res.Runs) != 2 || res.Runs[0].Workers != 2 || res.Runs[1].Workers != 3 {
		t.Errorf("figures %+v; want runs at 2 then 3 workers, tasks/s and growth", res)
	}
}

// `trellis bench capacity` with real worker processes runs each task once,
// measures the workers' own CPU, and with --plain-loop the same command
// in a plain loop: the floor for that CPU.
func TestBenchCapacityPlainLoop(t *testing.T) {
	var res struct {
		Runs          int     `json:"runs"`
		WorkerCPU     float64 `json:"worker_cpu_percent"`
		PlainLoopCPU  float64 `json:"plain_loop_cpu_percent"`
		PlainLoopPerS float64 `json:"plain_loop_per_s"`
	}
	benchJSON(t, &res, "bench", "capacity", "--workers", "1", "--cores", "4", "--tasks", "40", "--command", "sleep 0.05",
		"--task-memory", "16", "--idle", "200ms", "--plain-loop")
	if res.Runs != 40 || res.WorkerCPU <= 0 || res.PlainLoopCPU <= 0 || res.PlainLoopPerS <= 0 {
		t.Errorf("figures %+v; want 40 runs, the workers' CPU and the plain loop's CPU and rate", res)
	}
}

// `trellis bench calls --manager` measures the network figures on a running
// cluster of manager and worker processes: through the manager and on the
// direct route (every measured call direct), without their CPU (not this
// process's); it installs its library there again for the direct route,
// with all its eager instances, and removes it at the end.
func TestBenchCallsManager(t *testing.T) {
	c := newCluster(t)
	c.worker("w1", nil, "--cores", "1")
	c.worker("w2", nil, "--cores", "1")
	var res struct {
		Manager        string  `json:"manager"`
		Workers        int     `json:"workers"`
		CallsPerS      float64 `json:"network_calls_per_s"`
		P50us          float64 `json:"network_p50_us"`
		CPUusPerCall   float64 `json:"network_cpu_us_per_call"`
		ManagerPerS    float64 `json:"manager_calls_per_s"`
		ManagerP50us   float64 `json:"manager_p50_us"`
		DirectShare    float64 `json:"direct_share"`
		Instances      int     `json:"instances"`
		DirectLeases   int     `json:"direct_leases"`
		InProcessCalls float64 `json:"calls_per_s"`
	}
	benchJSON(t, &res, "bench", "calls", "--manager", c.addr, "--secret-file", c.secretFile, "--calls", "500")
	if res.Manager != c.addr || res.Workers != 0 || res.CallsPerS <= 0 || res.P50us <= 0 || res.ManagerPerS <= 0 || res.ManagerP50us <= 0 ||
		res.DirectShare != 1 || res.CPUusPerCall != 0 || res.InProcessCalls != 0 || res.Instances < 2 || res.DirectLeases != res.Instances {
		t.Errorf("figures %+v; want the network figures of the cluster at %s, every call direct, a lease on each of its instances, no CPU and no in-process figures", res, c.addr)
	}
	code, out := runTrellis(t, "status", c.addr, "--secret-file", c.secretFile)
	if code != 0 || strings.Contains(out, "trellis-bench-calls") {
		t.Errorf("trellis status after the bench: exit %d, the bench's library still there:\n%s", code, out)
	}
}

// benchJSON runs trellis with args, which must exit 0 and print its
// figures as JSON on its last line, and decodes them into res.
func benchJSON(t *testing.T, res any, args ...string) {
	t.Helper()
	code, out := runTrellis(t, args...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || json.Unmarshal([]byte(lines[len(lines)-1]), res) != nil {
		t.Fatalf("trellis %s: exit %d, last line not its JSON:\n%s", strings.Join(args, " "), code, out)
	}
}
