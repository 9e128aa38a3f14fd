package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"trellis"
	"trellis/internal/bench"
	"trellis/internal/manager"
	"trellis/internal/worker"
	"trellis/internal/worker/resources"
)

// startCluster starts a manager and n one-core workers in this process, on
// 127.0.0.1, and returns the manager's address and a secret file.
func startCluster(t *testing.T, n int) (addr, secretFile string) {
	t.Helper()
	const secret = "bench-test-secret"
	secretFile = filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := manager.Listen(manager.Config{Listen: "127.0.0.1:0", Secret: secret, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { m.Run(runCtx) }) // exits when stop is called
	for i := range n {
		w, err := worker.New(worker.Config{Manager: m.Addr(), Secret: secret, Name: fmt.Sprintf("w%d", i+1), FileServer: "127.0.0.1:0",
			Resources: resources.Resources{MilliCores: 1000, MemoryMB: 1024, DiskMB: 1024}, Workdir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { w.Run(runCtx) }) // exits when stop is called
	}
	t.Cleanup(func() { stop(); wg.Wait() })
	return m.Addr(), secretFile
}

// runBench runs `trellis bench ARGS` and decodes its last line into out.
func runBench(t *testing.T, out any, args ...string) {
	t.Helper()
	cmd := benchCmd()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	var stdout bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("trellis bench %v: %v", args, err)
	}
	lines := bytes.Split(bytes.TrimSpace(stdout.Bytes()), []byte("\n"))
	if err := json.Unmarshal(lines[len(lines)-1], out); err != nil {
		t.Fatalf("trellis bench %v printed %q: %v", args, stdout.String(), err)
	}
}

// TestBenchOnARunningCluster runs `bench dag` and `bench tasks` with
// --manager against a manager and two workers that run on, as users
// will, and checks that they report that cluster's figures.
func TestBenchOnARunningCluster(t *testing.T) {
	addr, secretFile := startCluster(t, 2)
	// The benchmarks take the workers connected when they start: wait for both.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := trellis.Dial(ctx, addr, trellis.WithSecret("bench-test-secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for {
		s, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Workers) == 2 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d workers joined, want 2", len(s.Workers))
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Run("dag", func(t *testing.T) {
		var r bench.DagResult
		runBench(t, &r, "dag", "--manager", addr, "--secret-file", secretFile, "--maps", "4", "--reduces", "2", "--map-mib", "1", "--link-rate", "1gbit")
		if r.Manager != addr || r.LinkRate != "1gbit" || r.Workers != 2 || r.Seconds <= 0 {
			t.Errorf("bench dag = %+v, want manager %s, link_rate 1gbit, 2 workers and seconds", r, addr)
		}
		if r.BytesViaManager != 0 {
			t.Errorf("bytes_via_manager = %d, want 0: temp files must not pass through the manager", r.BytesViaManager)
		}
		if r.TransferMiB != 0 || r.PeerMBPerS != 0 {
			t.Errorf("bench dag on a running cluster timed a local transfer: %+v", r)
		}
		// A second run counts its own bytes only: the counters' differences.
		var again bench.DagResult
		runBench(t, &again, "dag", "--manager", addr, "--secret-file", secretFile, "--maps", "4", "--reduces", "2", "--map-mib", "1")
		// Every copy is unlinked: a map output fetched by the other worker
		// is pruned twice, so the bound grows by the bytes moved.
		if again.BytesPruned > 4<<20+again.BytesPeer+1<<10 || again.BytesPruned < 4<<20 {
			t.Errorf("second run: bytes_pruned = %d (bytes_peer %d), want its own 4 MiB of map outputs, their copies and small reduce outputs", again.BytesPruned, again.BytesPeer)
		}
	})
	t.Run("tasks", func(t *testing.T) {
		var r bench.TasksResult
		runBench(t, &r, "tasks", "--manager", addr, "--secret-file", secretFile, "--tasks", "20")
		if r.Manager != addr || r.Slots != 2 || r.TasksPerS <= 0 || r.FilesTasksPerS <= 0 || r.SpawnPerS <= 0 {
			t.Errorf("bench tasks = %+v, want manager %s, 2 slots and every rate", r, addr)
		}
	})
	t.Run("a secret without a manager", func(t *testing.T) {
		cmd := benchCmd()
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		cmd.SetOut(new(bytes.Buffer))
		cmd.SetArgs([]string{"tasks", "--secret-file", secretFile})
		if err := cmd.Execute(); err == nil {
			t.Errorf("bench tasks --secret-file without --manager: no error")
		}
	})
}

// TestManagerPlacementFlag: --placement takes graph or free, and says so.
func TestManagerPlacementFlag(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := managerCmd()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetOut(new(bytes.Buffer))
	cmd.SetArgs([]string{"--secret-file", secretFile, "--listen", "127.0.0.1:0", "--placement", "nearest"})
	err := cmd.Execute()
	want := `--placement "nearest": give graph (the default) or free (the policy before graph-aware placement, to compare)`
	if err == nil || err.Error() != want {
		t.Errorf("trellis manager --placement nearest: %v, want %q", err, want)
	}
}
