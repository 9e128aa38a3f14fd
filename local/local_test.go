package local_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"trellis"
	"trellis/local"
)

// TestStart runs a task with an output on an embedded cluster, in process
// and over the network; after Close the manager no longer listens.
func TestStart(t *testing.T) {
	for _, network := range []bool{false, true} {
		name := map[bool]string{false: "in process", true: "network"}[network]
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := local.Start(ctx, local.Config{Workers: 1, Cores: 1, Workdir: t.TempDir(), Network: network})
			if err != nil {
				t.Fatalf("local.Start: %v", err)
			}
			dir := t.TempDir()
			out := trellis.Output(filepath.Join(dir, "out.txt"))
			hs, err := c.Submit(ctx, trellis.NewTask("echo hi > o").AddOutput(out, "o"))
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			if r, err := hs[0].Wait(ctx); err != nil || !r.OK() {
				t.Fatalf("Wait = %v, %v; want success", r, err)
			}
			if got, err := os.ReadFile(out.Path()); err != nil || string(got) != "hi\n" {
				t.Errorf("output = %q, %v; want %q", got, err, "hi\n")
			}
			probe, err := os.Create(filepath.Join(dir, "probe"))
			if err != nil {
				t.Fatal(err)
			}
			probe.Close()
			pfi, err := os.Stat(probe.Name())
			if err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(out.Path()); err != nil || fi.Mode().Perm() != pfi.Mode().Perm() {
				t.Errorf("output mode = %v, %v; want %v, as os.Create makes", fi.Mode().Perm(), err, pfi.Mode().Perm())
			}
			addr := c.Addr()
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if conn, err := net.Dial("tcp", addr); err == nil {
				conn.Close()
				t.Errorf("the manager still listens on %s after Close", addr)
			}
		})
	}
}
