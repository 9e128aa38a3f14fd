package resourcestest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"trellis/internal/worker/resources"
)

// GPUs returns the n GPUs that a FakeNvidiaSMI script for n reports, as
// resources.ParseNvidiaSMI reads them.
func GPUs(n int) []resources.GPU {
	var gpus []resources.GPU
	for i := range n {
		gpus = append(gpus, resources.GPU{
			Index:    i,
			UUID:     fmt.Sprintf("GPU-00000000-0000-0000-0000-%012d", i),
			Name:     "NVIDIA Fake GPU 80GB",
			MemoryMB: 81559,
		})
	}
	return gpus
}

// FakeNvidiaSMI writes an executable nvidia-smi into a new temporary
// directory and returns the directory, to be put on PATH (t.Setenv). Called
// with the arguments resources.DetectGPUs passes, the script prints gpus GPUs
// (those GPUs(gpus) returns); with other arguments it fails. It uses only
// shell built-ins, so it works whatever else PATH holds.
func FakeNvidiaSMI(t testing.TB, gpus int) (dir string) {
	t.Helper()
	var script strings.Builder
	script.WriteString("#!/bin/sh\n")
	script.WriteString(`if [ "$*" != "--query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits" ]; then` + "\n")
	script.WriteString(`  echo "fake nvidia-smi: unexpected arguments: $*" >&2` + "\n  exit 2\nfi\n")
	for _, g := range GPUs(gpus) {
		fmt.Fprintf(&script, "printf '%%s\\n' '%d, %s, %s, %d'\n", g.Index, g.UUID, g.Name, g.MemoryMB)
	}
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nvidia-smi"), []byte(script.String()), 0o755); err != nil {
		t.Fatalf("resourcestest: write fake nvidia-smi: %v", err)
	}
	return dir
}
