package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"trellis"
)

// The chain of issue #18, scaled down: 12 tasks each copy the previous
// task's 8 MiB temp file on one worker whose cache holds 40 MiB. The 96 MiB
// of intermediates fit because each temp file is pruned once its reader is
// done; the last output comes back byte for byte.
func TestPrunedChainFitsSmallCache(t *testing.T) {
	const size = 8 << 20
	c := newCluster(t)
	c.worker("small", nil, "--cores", "1", "--disk", "40")
	cl := c.client()
	c.waitWorkers(cl, 1)

	out := filepath.Join(t.TempDir(), "last")
	prev := trellis.Temp()
	tasks := []*trellis.Task{trellis.NewTask(fmt.Sprintf("yes trellis-chain | head -c %d > out", size)).AddOutput(prev, "out")}
	for i := 2; i <= 12; i++ {
		next := trellis.Temp()
		if i == 12 {
			next = trellis.Output(out)
		}
		tk := trellis.NewTask("cat in > out").AddInput(prev, "in").AddOutput(next, "out")
		tk.Name = fmt.Sprintf("t%d", i)
		tasks = append(tasks, tk)
		prev = next
	}
	hs, err := cl.Submit(context.Background(), tasks...)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if r := waitResult(t, h, 2*time.Minute); !r.OK() {
			t.Fatalf("task %s: %v: %s", h.Name, r.Kind, r.Message)
		}
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("trellis-chain\n"), size/len("trellis-chain\n")+1)[:size]
	if !bytes.Equal(got, want) {
		t.Errorf("last output: %d bytes, want %d bytes of %q (first differ at %d)", len(got), len(want), "trellis-chain\n", firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
