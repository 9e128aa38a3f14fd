package bench

import (
	"context"
	"os"
	"testing"
	"time"
)

// The benchmark drivers run at toy sizes, so that their code is exercised;
// their figures are not checked (timing assertions do not belong in tests).
func TestDagSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Dag(ctx, Target{Workers: 2}, 4, 2, 1, 2, 0, false, "none", "", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if r.BytesViaManager != 0 {
		t.Errorf("bytes_via_manager = %d, want 0: temp files must not pass through the manager", r.BytesViaManager)
	}
	if r.PeerMBPerS <= 0 || r.CpMBPerS <= 0 {
		t.Errorf("peer %v MB/s, cp %v MB/s: want both measured", r.PeerMBPerS, r.CpMBPerS)
	}
	// Every map output (1 MiB each) is pruned once its reduce is done.
	if r.BytesPruned < 4<<20 || r.PeakCacheBytes <= 0 {
		t.Errorf("bytes_pruned = %d, peak_cache_bytes = %d; want at least the 4 MiB of map outputs pruned and a peak measured", r.BytesPruned, r.PeakCacheBytes)
	}
}

// TestDagPrefetch: three maps that each take two seconds feed one reduce,
// on two workers of one core. The workers take a map each; whichever ends
// first takes the third, and the other map's output travels to it while
// the third runs (the manager's prefetch), through the workers' own file
// servers: a copy fetched for no task yet, released, then claimed by the
// reduce.
func TestDagPrefetch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Dag(ctx, Target{Workers: 2}, 3, 1, 1, 0, 2, false, "none", "", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if r.BytesPrefetched != 1<<20 || r.BytesPeer != 1<<20 {
		t.Errorf("bytes_prefetched = %d, bytes_peer = %d; want the one map output (1 MiB) the reduce lacked, prefetched", r.BytesPrefetched, r.BytesPeer)
	}
}

// TestDagCheckpoints: with --checkpoint sync, every temp file (of the 4
// maps and 2 reduces) is checkpointed before its task counts as done; with
// async, the run succeeds too (the small reduce outputs, once
// checkpointed, travel inline to the final task from the checkpoint
// directory).
func TestDagCheckpoints(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 3 {
		if _, err := Dag(ctx, Target{Workers: 2, CheckpointDir: t.TempDir()}, 4, 2, 1, 0, 0, false, "async", "", t.Logf); err != nil {
			t.Fatalf("async: %v", err)
		}
	}
	dir := t.TempDir()
	r, err := Dag(ctx, Target{Workers: 2, CheckpointDir: dir}, 4, 2, 1, 0, 0, false, "sync", "", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if es, _ := os.ReadDir(dir); r.Checkpoints != 6 || len(es) != 6 {
		t.Errorf("checkpoints = %d, %d files in the directory; want 6 and 6", r.Checkpoints, len(es))
	}
}

func TestTasksSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Tasks(ctx, 20, Target{Workers: 2}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if r.TasksPerS <= 0 || r.FilesTasksPerS <= 0 || r.SpawnPerS <= 0 {
		t.Errorf("%+v: want every rate measured", r)
	}
}
