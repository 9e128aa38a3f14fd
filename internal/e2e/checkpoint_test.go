package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"trellis"
)

// lines returns the lines of the file at path (none if it is missing).
func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// gatedChain submits produce, a task that waits until the file gate
// exists, and consume after that wait, then waits for produce to succeed,
// and returns the three handles: consume runs only once the test opens
// the gate, after it has done its damage.
func gatedChain(t *testing.T, cl *trellis.Client, gate string, produce, consume *trellis.Task) []*trellis.Handle {
	t.Helper()
	wait := trellis.NewTask("while [ ! -e " + gate + " ]; do sleep 0.05; done")
	consume.After = []*trellis.Task{wait}
	hs, err := cl.Submit(context.Background(), produce, wait, consume)
	if err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, hs[0], 30*time.Second); !r.OK() {
		t.Fatalf("producer: %v", r.Err())
	}
	return hs
}

// waitCheckpoints waits until the manager has committed n checkpoints.
func waitCheckpoints(t *testing.T, cl *trellis.Client, n int) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("%d checkpoints to commit", n), func() bool {
		s, err := cl.Status(context.Background())
		return err == nil && s.Checkpoints == n
	})
}

// A checkpointed output survives the loss of every worker: the producer
// never runs again; its consumer, on a new worker, reads the checkpoint's
// bytes from the manager. The producer is kept by default (nondeterministic:
// an asynchronous checkpoint where the manager has a --checkpoint-dir), or
// by a synchronous checkpoint. With restart, the manager (with --state) is
// killed too and started again: its journal says what was checkpointed.
func TestCheckpointSurvivesEveryWorker(t *testing.T) {
	for _, keep := range []trellis.Keep{{}, trellis.Checkpoint(trellis.CheckpointSync)} {
		t.Run(keep.String(), func(t *testing.T) { checkpointSurvives(t, keep, false) })
		t.Run(keep.String()+"/manager restart", func(t *testing.T) { checkpointSurvives(t, keep, true) })
	}
}

func checkpointSurvives(t *testing.T, keep trellis.Keep, restart bool) {
	ckpt := t.TempDir()
	flags := []string{"--checkpoint-dir", ckpt}
	if restart {
		flags = append(flags, "--state", filepath.Join(t.TempDir(), "state"), "--adopt-window", "1s")
	}
	c := newCluster(t, flags...)
	first := c.worker("first", nil, "--cores", "1")
	cl := c.client()
	c.waitWorkers(cl, 1)

	dir := t.TempDir()
	gate, log := filepath.Join(dir, "open"), filepath.Join(dir, "produced")
	random := trellis.Temp()
	produce := trellis.NewTask("echo run >> "+log+" && head -c 200000 /dev/urandom > r.bin").AddOutput(random, "r.bin")
	produce.Keep = keep
	sum := trellis.NewTask("sha256sum < r.bin | cut -d' ' -f1 > sum.txt").AddInput(random, "r.bin")
	sumOut := trellis.Output(filepath.Join(dir, "sum.txt"))
	sum.AddOutput(sumOut, "sum.txt")
	hs := gatedChain(t, cl, gate, produce, sum)
	waitCheckpoints(t, cl, 1)
	first.signal(t, syscall.SIGKILL) // every worker copy goes with it
	first.wait(t, 10*time.Second)
	if restart {
		c.manager.signal(t, syscall.SIGKILL)
		c.manager.wait(t, 10*time.Second)
		c.manager = start(t, nil, append([]string{"manager", "--listen", c.addr, "--secret-file", c.secretFile, "--store", c.store}, flags...)...)
	}
	c.worker("second", nil, "--cores", "1")
	os.WriteFile(gate, nil, 0o644)

	if r := waitResult(t, hs[2], time.Minute); !r.OK() {
		t.Fatalf("consumer: %v", r.Err())
	}
	entries, err := os.ReadDir(ckpt)
	if err != nil || len(entries) != 1 {
		t.Fatalf("checkpoint directory: %v, %v; want one file", entries, err)
	}
	b, err := os.ReadFile(filepath.Join(ckpt, entries[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(b)
	if got, _ := os.ReadFile(sumOut.Path()); strings.TrimSpace(string(got)) != hex.EncodeToString(want[:]) || len(b) != 200000 {
		t.Errorf("the consumer read sha256 %s; the checkpoint (%d bytes) has %x", got, len(b), want)
	}
	if runs := lines(t, log); len(runs) != 1 {
		t.Errorf("the producer ran %d times, want 1: its checkpoint is a source", len(runs))
	}
	s, err := cl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.TasksRecreated != 0 || s.FilesLost != 0 {
		t.Errorf("status: %d tasks recreated, %d files lost; want 0 and 0", s.TasksRecreated, s.FilesLost)
	}
}

// RECOVERY.md scenario 3: the worker of a nondeterministic producer kept
// by Checkpoint{Async} is killed after the producer ends and before its
// checkpoint commits (a test hook holds the commit). Its idempotent
// consumer waits for the commit meanwhile (the commit barrier); the
// producer runs again by lineage, and the consumer applies its effect
// once, with the new value, which is the value checkpointed: the old and
// new values are never mixed.
func TestCommitBarrier(t *testing.T) {
	dir := t.TempDir()
	hold := filepath.Join(dir, "hold")
	if err := os.WriteFile(hold, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TRELLIS_TEST_CHECKPOINT_HOLD", hold)
	ckpt := t.TempDir()
	c := newCluster(t, "--checkpoint-dir", ckpt)
	first := c.worker("first", nil, "--cores", "2")
	cl := c.client()
	c.waitWorkers(cl, 1)

	values, effects := filepath.Join(dir, "values"), filepath.Join(dir, "effects")
	if err := os.Mkdir(effects, 0o755); err != nil {
		t.Fatal(err)
	}
	v := trellis.Temp()
	produce := trellis.NewTask("head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \\n' > v.txt && cat v.txt >> "+values+" && echo >> "+values).AddOutput(v, "v.txt")
	produce.Keep = trellis.Checkpoint(trellis.CheckpointAsync)
	apply := trellis.NewTask(`k=$(echo "$TRELLIS_IDEMPOTENCY_KEY" | tr / _); [ -e `+effects+`/$k ] || cp v.txt `+effects+`/$k`).AddInput(v, "v.txt")
	apply.Effects = trellis.EffectsIdempotent
	hs, err := cl.Submit(context.Background(), produce, apply)
	if err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, hs[0], 30*time.Second); !r.OK() {
		t.Fatalf("producer: %v", r.Err())
	}
	// The checkpoint is held: the consumer waits, on a worker with room.
	waitFor(t, 20*time.Second, "the consumer to wait for the commit", func() bool {
		s, err := cl.Status(context.Background())
		return err == nil && s.Waiting == 1 && s.Running == 0 && s.Ready == 0
	})
	if es, _ := os.ReadDir(effects); len(es) != 0 {
		t.Fatalf("the effect was applied before the checkpoint committed: %v", es)
	}
	first.signal(t, syscall.SIGKILL) // the only copy of the first value goes with it
	first.wait(t, 10*time.Second)
	c.worker("second", nil, "--cores", "2")
	waitFor(t, 30*time.Second, "the producer to run again", func() bool { return len(lines(t, values)) == 2 })
	os.Remove(hold)

	if r := waitResult(t, hs[1], time.Minute); !r.OK() {
		t.Fatalf("consumer: %v", r.Err())
	}
	vals := lines(t, values)
	es, err := os.ReadDir(effects)
	if err != nil || len(es) != 1 {
		t.Fatalf("effects: %v, %v; want one", es, err)
	}
	effect, _ := os.ReadFile(filepath.Join(effects, es[0].Name()))
	committed, err := os.ReadFile(filepath.Join(ckpt, v.Name()))
	if err != nil {
		t.Fatalf("the checkpoint: %v", err)
	}
	if string(effect) != vals[1] || string(committed) != vals[1] {
		t.Errorf("values produced %q; the effect applied %q, the checkpoint holds %q: want both the second", vals, effect, committed)
	}
}

// With --tls auto the manager pulls a checkpoint from the worker's file
// server over TLS, trusting the certificate it gave that worker.
func TestCheckpointOverTLS(t *testing.T) {
	ckpt := t.TempDir()
	c := newCluster(t, "--tls", "auto", "--tls-dir", filepath.Join(t.TempDir(), "tls"), "--checkpoint-dir", ckpt)
	ca, _ := tlsLine(t, c.manager)
	c.worker("w", nil, "--cores", "1", "--tls-ca", ca)
	cl, err := c.tlsClient(ca, "")
	if err != nil {
		t.Fatal(err)
	}
	c.waitWorkers(cl, 1)
	numbers := trellis.Temp()
	produce := trellis.NewTask("seq 1 200000 > n.txt").AddOutput(numbers, "n.txt")
	produce.Keep = trellis.Checkpoint(trellis.CheckpointAsync)
	hs, err := cl.Submit(context.Background(), produce)
	if err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, hs[0], 30*time.Second); !r.OK() {
		t.Fatalf("producer: %v", r.Err())
	}
	waitCheckpoints(t, cl, 1)
	got, err := os.ReadFile(filepath.Join(ckpt, numbers.Name()))
	if err != nil || !strings.HasSuffix(string(got), "\n200000\n") {
		t.Errorf("the checkpoint: %d bytes ending %q (%v), want seq 1 200000", len(got), got[max(len(got)-8, 0):], err)
	}
}

// Replicate(2) keeps a second copy on another worker: killing the worker
// that produced the file loses one copy, and its consumer reads the other;
// the producer does not run again.
func TestReplicateSurvivesAWorker(t *testing.T) {
	c := newCluster(t)
	w1 := c.worker("w1", nil, "--cores", "1")
	cl := c.client()
	c.waitWorkers(cl, 1)
	dir := t.TempDir()
	gate, log := filepath.Join(dir, "open"), filepath.Join(dir, "produced")
	numbers := trellis.Temp()
	produce := trellis.NewTask("echo run >> "+log+" && seq 1 100000 > n.txt").AddOutput(numbers, "n.txt")
	produce.Keep = trellis.Replicate(2)
	count := trellis.NewTask("wc -l < n.txt | tr -d ' ' > count.txt").AddInput(numbers, "n.txt")
	countOut := trellis.Output(filepath.Join(dir, "count.txt"))
	count.AddOutput(countOut, "count.txt")
	hs := gatedChain(t, cl, gate, produce, count)
	c.worker("w2", nil, "--cores", "1")
	waitFor(t, 30*time.Second, "the second copy", func() bool {
		s, err := cl.Status(context.Background())
		return err == nil && s.BytesFromPeers > 0 && s.TransfersInFlight == 0
	})
	w1.signal(t, syscall.SIGKILL)
	w1.wait(t, 10*time.Second)
	os.WriteFile(gate, nil, 0o644)
	if r := waitResult(t, hs[2], time.Minute); !r.OK() {
		t.Fatalf("consumer: %v", r.Err())
	}
	if got, _ := os.ReadFile(countOut.Path()); string(got) != "100000\n" {
		t.Errorf("count.txt = %q, want 100000", got)
	}
	if runs := len(lines(t, log)); runs != 1 {
		t.Errorf("the producer ran %d times, want 1: the second copy survived", runs)
	}
}
