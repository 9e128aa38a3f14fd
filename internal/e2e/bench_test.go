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
