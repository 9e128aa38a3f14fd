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
	code, out := runTrellis(t, "bench", "tls", "--tasks", "20", "--workers", "1", "--rounds", "1", "--transfer-mib", "2")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var res struct {
		Plain    []float64 `json:"plain_tasks_per_s"`
		TLS      []float64 `json:"tls_tasks_per_s"`
		Ratio    float64   `json:"tasks_tls_vs_plain"`
		PeerTLS  []float64 `json:"tls_peer_mb_per_s"`
		PeerRate float64   `json:"peer_tls_vs_plain"`
		PeerCPU  float64   `json:"peer_cpu_tls_vs_plain"`
	}
	if code != 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &res) != nil {
		t.Fatalf("trellis bench tls: exit %d, last line not its JSON:\n%s", code, out)
	}
	if len(res.Plain) != 1 || len(res.TLS) != 1 || len(res.PeerTLS) != 1 || res.Ratio <= 0 || res.PeerRate <= 0 || res.PeerCPU <= 0 {
		t.Errorf("figures %+v; want one round of each mode and the three ratios", res)
	}
}

// `trellis bench scale --workers` runs real worker processes that a
// factory starts, at the baseline size and then the measured one.
func TestBenchScaleWorkers(t *testing.T) {
	code, out := runTrellis(t, "bench", "scale", "--workers", "3", "--baseline-workers", "2", "--tasks", "40", "--idle", "200ms")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var res struct {
		Workers   int                     `json:"workers"`
		TasksPerS float64                 `json:"tasks_per_s"`
		RSSGrowth float64                 `json:"rss_growth"`
		Runs      []struct{ Workers int } `json:"runs"`
	}
	if code != 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &res) != nil {
		t.Fatalf("trellis bench scale --workers: exit %d, last line not its JSON:\n%s", code, out)
	}
	if res.Workers != 3 || res.TasksPerS <= 0 || res.RSSGrowth <= 0 || len(res.Runs) != 2 || res.Runs[0].Workers != 2 || res.Runs[1].Workers != 3 {
		t.Errorf("figures %+v; want runs at 2 then 3 workers, tasks/s and growth", res)
	}
}

// `trellis bench capacity` with real worker processes runs each task once,
// measures the workers' own CPU, and with --plain-loop the same command
// in a plain loop: the floor for that CPU.
func TestBenchCapacityPlainLoop(t *testing.T) {
	code, out := runTrellis(t, "bench", "capacity", "--workers", "1", "--cores", "4", "--tasks", "40", "--command", "sleep 0.05",
		"--task-memory", "16", "--idle", "200ms", "--plain-loop")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var res struct {
		Runs          int     `json:"runs"`
		WorkerCPU     float64 `json:"worker_cpu_percent"`
		PlainLoopCPU  float64 `json:"plain_loop_cpu_percent"`
		PlainLoopPerS float64 `json:"plain_loop_per_s"`
	}
	if code != 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &res) != nil {
		t.Fatalf("trellis bench capacity: exit %d, last line not its JSON:\n%s", code, out)
	}
	if res.Runs != 40 || res.WorkerCPU <= 0 || res.PlainLoopCPU <= 0 || res.PlainLoopPerS <= 0 {
		t.Errorf("figures %+v; want 40 runs, the workers' CPU and the plain loop's CPU and rate", res)
	}
}
