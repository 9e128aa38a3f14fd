package e2e

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"trellis"
)

// TestFactoryConfig: --config overrides the flags and is re-read while the
// factory runs: raising max in the file brings a second worker.
func TestFactoryConfig(t *testing.T) {
	c := newCluster(t)
	cl := c.client()
	conf := filepath.Join(t.TempDir(), "factory.yaml")
	if err := os.WriteFile(conf, []byte("max: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := start(t, nil, "factory", c.addr, "--secret-file", c.secretFile, "--batch", "local", "--max", "5", "--config", conf,
		"--cores", "1", "--memory", "500", "--interval", "200ms", "--idle-exit", "30s", "--drain-timeout", "1s", "--name", "cw")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cl.Submit(ctx, trellis.NewTask("sleep 60"), trellis.NewTask("sleep 60")); err != nil {
		t.Fatal(err)
	}
	workers := func() int {
		s, err := cl.Status(ctx)
		if err != nil {
			return -1
		}
		return len(s.Workers)
	}
	waitFor(t, 20*time.Second, "a first worker", func() bool { return workers() == 1 })
	time.Sleep(time.Second) // a few cycles: max 1 from the file, not 5 from the flag
	if n := workers(); n != 1 {
		t.Fatalf("%d workers with max: 1 in --config; want 1", n)
	}
	if err := os.WriteFile(conf, []byte("max: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "a second worker after max: 2 in the file", func() bool { return workers() == 2 })
	f.signal(t, syscall.SIGTERM) // its workers go with it
	f.wait(t, 20*time.Second)
}
