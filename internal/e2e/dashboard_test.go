package e2e

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"trellis"
)

// scrape reads the manager's /metrics with the given secret and returns
// each sample's value by its name and labels, as the text format writes
// them: `trellis_queue{modality="task",state="ready"}`.
func (c *cluster) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+c.addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.secret())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: HTTP %d, want 200", resp.StatusCode)
	}
	samples := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	return samples
}

// TestMetricsCountWhatRan: a manager process's /metrics, scraped after
// tasks of known outcomes and sizes ran on a worker process, shows them:
// results by kind, bytes by route, the worker and its cores, an empty
// queue; and it refuses a scrape without the secret.
func TestMetricsCountWhatRan(t *testing.T) {
	c := newCluster(t)
	cl := c.client()
	c.worker("w1", nil, "--cores", "2", "--memory", "1024")
	c.waitWorkers(cl, 1)

	dir := t.TempDir()
	in := filepath.Join(dir, "in.bin")
	if err := os.WriteFile(in, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	ok1 := trellis.NewTask("wc -c < in.bin").AddInput(trellis.LocalFile(in), "in.bin")
	ok2 := trellis.NewTask("head -c 100000 /dev/zero > out.bin").AddOutput(trellis.Output(filepath.Join(dir, "out.bin")), "out.bin")
	ok3 := trellis.NewTask("true")
	bad := trellis.NewTask("exit 3")
	slow := trellis.NewTask("sleep 30")
	slow.TimeLimit = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hs, err := cl.Submit(ctx, ok1, ok2, ok3, bad, slow)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		waitResult(t, h, time.Minute)
	}

	got := c.scrape(t)
	want := map[string]float64{
		`trellis_ended_total{modality="task",result="success"}`:         3,
		`trellis_ended_total{modality="task",result="failed"}`:          1,
		`trellis_ended_total{modality="task",result="timed_out"}`:       1,
		`trellis_ended_total{modality="call",result="success"}`:         0,
		`trellis_queue{modality="task",state="ready"}`:                  0,
		`trellis_queue{modality="task",state="running"}`:                0,
		`trellis_transfer_bytes_total{route="manager_to_worker"}`:       1 << 20,
		`trellis_transfer_bytes_total{route="worker_to_manager"}`:       100000,
		`trellis_workers{state="active"}`:                               1,
		`trellis_workers{state="draining"}`:                             0,
		`trellis_worker_resources{resource="cores",use="total"}`:        2,
		`trellis_worker_resources{resource="cores",use="used"}`:         0,
		`trellis_worker_resources{resource="memory_bytes",use="total"}`: 1 << 30,
		`trellis_transfers_in_flight`:                                   0,
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("/metrics %s = %v (present: %v), want %v", name, g, ok, w)
		}
	}

	// trellis status agrees: the input went to the worker once.
	st, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.BytesFromManager != 1<<20 {
		t.Errorf("status: %d bytes from the manager, want %d (one fetch of in.bin)", st.BytesFromManager, 1<<20)
	}

	// A running task shows in the queue and in the cores used.
	h, err := cl.Submit(ctx, trellis.NewTask("sleep 30"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the task to run", func() bool {
		got := c.scrape(t)
		return got[`trellis_queue{modality="task",state="running"}`] == 1 &&
			got[`trellis_worker_resources{resource="cores",use="used"}`] == 1
	})
	if err := cl.Cancel(ctx, h[0].ID); err != nil {
		t.Fatal(err)
	}

	for _, auth := range []string{"", "Bearer wrong"} {
		req, _ := http.NewRequest("GET", "http://"+c.addr+"/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if code, body := do(t, req); code != http.StatusUnauthorized || !strings.Contains(body, "wrong or missing secret") {
			t.Errorf("GET /metrics with Authorization %q: HTTP %d %q, want 401 naming the secret", auth, code, body)
		}
	}
}
