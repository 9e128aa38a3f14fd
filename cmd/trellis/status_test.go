package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"trellis"
	"trellis/internal/worker"
	"trellis/internal/worker/resources"
)

// TestStatusInstances starts a manager and a worker in this process with a
// library whose one eager instance sits idle, and checks that `trellis
// status` shows it as an instance with a small ID, not as a running task,
// in text and in --json.
func TestStatusInstances(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, c, secretFile := startPythonLibrary(ctx, t, &trellis.Library{Eager: 1, Resources: trellis.Resources{Cores: 1, MemoryMB: 100}})
	for { // poll until the instance is ready
		s, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Libraries) == 1 && len(s.Libraries[0].Instances) == 1 && s.Libraries[0].Instances[0].Ready {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no ready instance: status %+v", s)
		case <-time.After(20 * time.Millisecond):
		}
	}

	status := func(args ...string) string {
		t.Helper()
		cmd := statusCmd()
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		var stdout bytes.Buffer
		cmd.SetOut(&stdout)
		cmd.SetArgs(append([]string{"--secret-file", secretFile, m.Addr()}, args...))
		if err := cmd.Execute(); err != nil {
			t.Fatalf("trellis status %v: %v", args, err)
		}
		return stdout.String()
	}

	t.Run("text", func(t *testing.T) {
		text := status()
		for _, want := range []string{
			"tasks: 0 waiting for inputs, 0 ready, 0 staging inputs, 0 running,",
			"library instances: 1 running,",
			"#1 w1: 0/1",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("trellis status:\n%s\nlacks %q", text, want)
			}
		}
		if strings.Contains(text, "9223372036854775809") {
			t.Errorf("trellis status:\n%s\nshows an instance ID with bit 63", text)
		}
	})

	t.Run("json", func(t *testing.T) {
		raw := status("--json")
		var s trellis.Status
		if err := json.Unmarshal([]byte(raw), &s); err != nil {
			t.Fatalf("trellis status --json: %v\n%s", err, raw)
		}
		type view struct {
			Running, InstancesRunning int
			WorkerRunning             []uint64
			WorkerInstances           []uint64
			InstanceIDs               []uint64
			Demand                    []trellis.ShapeDemand
		}
		got := view{Running: s.Running, InstancesRunning: s.Instances.Running}
		if len(s.Workers) == 1 {
			got.WorkerRunning, got.WorkerInstances = s.Workers[0].Running, s.Workers[0].Instances
		}
		for _, l := range s.Libraries {
			for _, i := range l.Instances {
				got.InstanceIDs = append(got.InstanceIDs, i.ID)
			}
		}
		got.Demand = s.Demand
		want := view{Running: 0, InstancesRunning: 1, WorkerInstances: []uint64{1}, InstanceIDs: []uint64{1},
			Demand: []trellis.ShapeDemand{{Shape: trellis.Resources{Cores: 1, MemoryMB: 100}, Instances: 1}}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("trellis status --json mismatch (-want +got):\n%s\n%s", diff, raw)
		}
		// Every documented field is there (docs/status.md), by its JSON name.
		var fields map[string]any
		if err := json.Unmarshal([]byte(raw), &fields); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"version", "workers", "waiting", "ready", "staging", "running", "finished", "succeeded", "failed",
			"tasks", "calls", "instances", "bytes_from_manager", "bytes_from_peers", "bytes_from_urls", "bytes_to_manager",
			"transfers_in_flight", "files_lost", "tasks_recreated", "libraries", "demand", "snapshot_version", "snapshot_time"} {
			if _, ok := fields[k]; !ok {
				t.Errorf("trellis status --json lacks %q:\n%s", k, raw)
			}
		}
		wk := fields["workers"].([]any)[0].(map[string]any)
		for _, k := range []string{"id", "name", "address", "total", "free", "running", "instances", "draining", "tasks_done",
			"connected", "cache_bytes", "cache_files", "transfers_in", "transfers_out"} {
			if _, ok := wk[k]; !ok {
				t.Errorf("trellis status --json: a worker lacks %q", k)
			}
		}
	})
}

// Simulated workers (trellis worker --simulate) are marked so in `trellis
// status`, and counted, in text and in --json.
func TestStatusSimulated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, secret, secretFile := listenManager(t)
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { m.Run(runCtx) }) // exits when stop is called
	wg.Go(func() {                  // exits when stop is called
		worker.RunSimulated(runCtx, worker.Config{Manager: m.Addr(), Secret: secret, Name: "sim", Workdir: t.TempDir(),
			Resources: resources.Resources{MilliCores: 1000, MemoryMB: 1024, DiskMB: 1024}, Simulate: &worker.Simulation{}}, 2, nil)
	})
	t.Cleanup(func() { stop(); wg.Wait() })
	c, err := trellis.Dial(ctx, m.Addr(), trellis.WithSecret(secret))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for { // poll until both are connected
		s, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Workers) == 2 {
			if !s.Workers[0].Simulated || !s.Workers[1].Simulated {
				t.Errorf("workers %+v: want both simulated", s.Workers)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("simulated workers not connected: status %+v", s)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cmd := statusCmd()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	var stdout bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetArgs([]string{"--secret-file", secretFile, m.Addr()})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sim-1 (simulated)", "sim-2 (simulated)", "2 of 2 workers are simulated (trellis worker --simulate)"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("trellis status:\n%s\nlacks %q", stdout.String(), want)
		}
	}
}

// trellis status prints dataflow tasks on a line of their own, and none
// when there are none.
func TestStatusDataflow(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, "m:1", &trellis.Status{Waiting: 3, Running: 2, Finished: 4, Succeeded: 3, Failed: 1,
		Tasks:    trellis.TaskCounts{Waiting: 1, Running: 1, Finished: 1, Succeeded: 1},
		Dataflow: trellis.TaskCounts{Waiting: 2, Staging: 1, Running: 1, Finished: 3, Succeeded: 2, Failed: 1}})
	want := "  of which dataflow tasks (reading files tasks produce, or writing temp files): 2 waiting for inputs, 0 ready, 1 staging inputs, 1 running, 3 finished (2 succeeded, 1 failed)\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("trellis status printed:\n%s\nwant the line %q", out.String(), want)
	}
	out.Reset()
	printStatus(&out, "m:1", &trellis.Status{Tasks: trellis.TaskCounts{Finished: 1}})
	if strings.Contains(out.String(), "dataflow") {
		t.Errorf("trellis status without dataflow tasks printed:\n%s\nwant no dataflow line", out.String())
	}
}

// TestStatusJournal: the text of a status with a journal names its size
// on disk, the epoch, and the last snapshot, or that there is none yet.
func TestStatusJournal(t *testing.T) {
	at := time.Date(2026, 12, 6, 11, 0, 0, 0, time.Local)
	for _, tc := range []struct {
		j    *trellis.JournalStatus
		want []string
	}{
		{&trellis.JournalStatus{Path: "/s/journal.db", Durable: 4839 + 12, FileBytes: 3 << 20, SinceSnapshot: 12,
			LastSnapshot: &trellis.JournalSnapshot{At: at, Folded: 4839, Records: 2439, Bytes: 177303}},
			[]string{"journal: /s/journal.db, 4851 records written, epoch 2, 3.0 MiB on disk\n",
				"last snapshot: 2026-12-06 11:00:00, records 1..4839 folded into 2439 (0.2 MiB); 12 records since\n"}},
		{&trellis.JournalStatus{Path: "/s/journal.db", Durable: 7, FileBytes: 32 << 10, SinceSnapshot: 7, SnapshotError: "no space left on device"},
			[]string{"journal: /s/journal.db, 7 records written, epoch 2, 0.0 MiB on disk\n",
				"last snapshot: none yet (7 records to replay)\n",
				"compaction failing (the journal keeps every record meanwhile): no space left on device\n"}},
	} {
		var out bytes.Buffer
		printStatus(&out, "addr", &trellis.Status{Epoch: 2, Journal: tc.j})
		for _, want := range tc.want {
			if !strings.Contains(out.String(), want) {
				t.Errorf("status text lacks %q:\n%s", want, out.String())
			}
		}
	}
}
