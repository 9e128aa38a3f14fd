package resources_test

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"trellis/internal/worker/resources"
	"trellis/internal/worker/resources/resourcestest"
)

func TestParseNvidiaSMI(t *testing.T) {
	h100 := resources.GPU{Index: 0, UUID: "GPU-aaaa", Name: "NVIDIA H100 80GB HBM3", MemoryMB: 81559}
	a10 := resources.GPU{Index: 1, UUID: "GPU-bbbb", Name: "NVIDIA A10", MemoryMB: 23028}
	tests := []struct {
		name    string
		out     string
		want    []resources.GPU
		wantErr string // substring of the error; "" for none
	}{
		{
			name: "two GPUs",
			out:  "0, GPU-aaaa, NVIDIA H100 80GB HBM3, 81559\n1, GPU-bbbb, NVIDIA A10, 23028\n",
			want: []resources.GPU{h100, a10},
		},
		{
			name: "no spaces, CRLF, blank lines, no final newline",
			out:  "\n0,GPU-aaaa,NVIDIA H100 80GB HBM3,81559\r\n\r\n  1 ,  GPU-bbbb ,  NVIDIA A10 ,  23028  ",
			want: []resources.GPU{h100, a10},
		},
		{
			name: "name with a comma",
			out:  "0, GPU-aaaa, Tesla, Rev B, 100\n",
			want: []resources.GPU{{Index: 0, UUID: "GPU-aaaa", Name: "Tesla, Rev B", MemoryMB: 100}},
		},
		{
			name: "memory not available",
			out:  "0, GPU-aaaa, NVIDIA GH200, [N/A]\n",
			want: []resources.GPU{{Index: 0, UUID: "GPU-aaaa", Name: "NVIDIA GH200"}},
		},
		{name: "empty", out: "", want: nil},
		{
			name:    "too few fields",
			out:     "0, GPU-aaaa, NVIDIA H100 80GB HBM3, 81559\n1, GPU-bbbb, 23028\n",
			wantErr: `resources: parse nvidia-smi line 2 "1, GPU-bbbb, 23028": want 4 comma-separated fields, have 3`,
		},
		{
			name:    "bad index",
			out:     "x, GPU-aaaa, NVIDIA A10, 1\n",
			wantErr: `line 1 "x, GPU-aaaa, NVIDIA A10, 1": bad index "x"`,
		},
		{
			name:    "bad memory",
			out:     "0, GPU-aaaa, NVIDIA A10, 24 GiB\n",
			wantErr: `bad memory.total "24 GiB"`,
		},
		{
			name:    "empty uuid",
			out:     "0, , NVIDIA A10, 1\n",
			wantErr: "empty UUID",
		},
		{
			name:    "an error message instead of CSV",
			out:     "No devices were found\n",
			wantErr: `line 1 "No devices were found"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resources.ParseNvidiaSMI([]byte(tt.out))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseNvidiaSMI error = %v; want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseNvidiaSMI error: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseNvidiaSMI mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// writeScript writes an executable nvidia-smi with the given body into a new
// directory and returns the directory.
func writeScript(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nvidia-smi"), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestDetectGPUs(t *testing.T) {
	tests := []struct {
		name    string
		path    func(t *testing.T) string
		timeout time.Duration
		want    []resources.GPU
		wantErr string
	}{
		{
			name: "two GPUs",
			path: func(t *testing.T) string { return resourcestest.FakeNvidiaSMI(t, 2) },
			want: resourcestest.GPUs(2),
		},
		{
			name: "no GPUs listed",
			path: func(t *testing.T) string { return resourcestest.FakeNvidiaSMI(t, 0) },
			want: nil,
		},
		{
			name: "no nvidia-smi on PATH",
			path: func(t *testing.T) string { return t.TempDir() },
			want: nil,
		},
		{
			name: "failing, message on stdout",
			path: func(t *testing.T) string {
				return writeScript(t, "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"\nexit 9\n")
			},
			wantErr: "resources: run nvidia-smi: exit status 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
		},
		{
			name: "failing, message on stderr",
			path: func(t *testing.T) string {
				return writeScript(t, "echo 'ignored stdout'\necho 'driver/library version mismatch' >&2\nexit 1\n")
			},
			wantErr: "resources: run nvidia-smi: exit status 1: driver/library version mismatch",
		},
		{
			name:    "hangs past the deadline",
			path:    func(t *testing.T) string { return writeScript(t, "exec /bin/sleep 30\n") },
			timeout: 50 * time.Millisecond,
			wantErr: "context deadline exceeded",
		},
		{
			name:    "unparsable output",
			path:    func(t *testing.T) string { return writeScript(t, "echo garbage\n") },
			wantErr: `resources: parse nvidia-smi line 1 "garbage"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", tt.path(t))
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			got, err := resources.DetectGPUs(ctx)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("DetectGPUs error = %v; want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DetectGPUs error: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("DetectGPUs mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		name     string
		path     func(t *testing.T) string
		wantGPUs []resources.GPU
		wantErr  bool
	}{
		{name: "no GPUs", path: func(t *testing.T) string { return t.TempDir() }},
		{
			name:     "two GPUs",
			path:     func(t *testing.T) string { return resourcestest.FakeNvidiaSMI(t, 2) },
			wantGPUs: resourcestest.GPUs(2),
		},
		{
			name:    "failing nvidia-smi still reports the rest",
			path:    func(t *testing.T) string { return writeScript(t, "exit 3\n") },
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", tt.path(t))
			r, err := resources.Detect(context.Background(), t.TempDir())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Detect error = %v; want error %v", err, tt.wantErr)
			}
			if r.MilliCores <= 0 || r.MilliCores > int64(runtime.NumCPU())*1000 {
				t.Errorf("MilliCores = %d; want in (0, %d]", r.MilliCores, runtime.NumCPU()*1000)
			}
			if r.MemoryMB <= 0 {
				t.Errorf("MemoryMB = %d; want > 0", r.MemoryMB)
			}
			if r.DiskMB <= 0 {
				t.Errorf("DiskMB = %d; want > 0", r.DiskMB)
			}
			if diff := cmp.Diff(tt.wantGPUs, r.GPUs); diff != "" {
				t.Errorf("GPUs mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDetectMissingWorkdir(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	dir := filepath.Join(t.TempDir(), "gone")
	if _, err := resources.Detect(context.Background(), dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("Detect(%q) error = %v; want one naming the directory", dir, err)
	}
}

func TestCap(t *testing.T) {
	detected := resources.Resources{MilliCores: 8000, MemoryMB: 32000, DiskMB: 500000, GPUs: resourcestest.GPUs(2)}
	tests := []struct {
		name     string
		cores    float64
		memoryMB int64
		diskMB   int64
		gpus     int
		want     resources.Resources
		wantErr  string
	}{
		{name: "no caps", want: detected},
		{name: "negative caps are no caps", cores: -1, memoryMB: -1, diskMB: -1, gpus: -1, want: detected},
		{
			name: "all lowered", cores: 2.5, memoryMB: 4096, diskMB: 1000, gpus: 1,
			want: resources.Resources{MilliCores: 2500, MemoryMB: 4096, DiskMB: 1000, GPUs: resourcestest.GPUs(1)},
		},
		{
			name: "overcommit cores, memory and disk", cores: 16, memoryMB: 64000, diskMB: 1 << 20,
			want: resources.Resources{MilliCores: 16000, MemoryMB: 64000, DiskMB: 1 << 20, GPUs: resourcestest.GPUs(2)},
		},
		{
			name: "fractional cores round", cores: 0.0014,
			want: resources.Resources{MilliCores: 1, MemoryMB: 32000, DiskMB: 500000, GPUs: resourcestest.GPUs(2)},
		},
		{
			name: "tiny cores stay positive", cores: 1e-9,
			want: resources.Resources{MilliCores: 1, MemoryMB: 32000, DiskMB: 500000, GPUs: resourcestest.GPUs(2)},
		},
		{name: "all GPUs", gpus: 2, want: detected},
		{name: "more GPUs than detected", gpus: 4, wantErr: "resources: --gpus 4 asks for more GPUs than the 2 detected"},
		{name: "not a number of cores", cores: math.NaN(), wantErr: "resources: --cores NaN is not a usable number of cores"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resources.Cap(detected, tt.cores, tt.memoryMB, tt.diskMB, tt.gpus)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Cap error = %v; want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Cap error: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Cap mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCapDoesNotAlias(t *testing.T) {
	detected := resources.Resources{GPUs: resourcestest.GPUs(2)}
	got, err := resources.Cap(detected, 0, 0, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	got.GPUs[0].Name = "changed"
	if detected.GPUs[0].Name == "changed" {
		t.Errorf("Cap's result shares the GPUs array of its argument")
	}
}
