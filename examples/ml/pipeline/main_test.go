package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestMain lets the test binary be the pipeline's steps and library: the
// pipeline under test re-executes os.Executable(), which is this binary,
// with the hidden arguments, as the real binary does.
func TestMain(m *testing.M) {
	if code, ok := serveHidden(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func TestPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an embedded cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := defaultConfig()
	cfg.sweep = 2
	var out bytes.Buffer
	sum, err := run(ctx, cfg, &out)
	if err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())
	got := lastLineJSON(t, out.String())
	for _, key := range []string{"accuracy", "tasks", "calls", "seconds", "setups", "instances"} {
		if _, ok := got[key]; !ok {
			t.Errorf("the JSON line has no %q: %v", key, got)
		}
	}
	if sum.Accuracy < 0.90 {
		t.Errorf("accuracy %v, want at least 0.90", sum.Accuracy)
	}
	if sum.Instances < 1 || sum.Instances > cfg.workers || sum.Setups != int64(sum.Instances) {
		t.Errorf("%d set-ups in %d library instances; want one per instance, at most %d instances", sum.Setups, sum.Instances, cfg.workers)
	}
	evalCalls, predictCalls := (449+19)/20, (449+9)/10
	if sum.Tasks != 2+cfg.sweep || sum.Calls != evalCalls+predictCalls || sum.TestRows != 449 {
		t.Errorf("%d tasks, %d calls, %d test rows; want %d, %d, 449", sum.Tasks, sum.Calls, sum.TestRows, 2+cfg.sweep, evalCalls+predictCalls)
	}
	if sum.BytesFromPeers == 0 {
		t.Errorf("no bytes moved worker to worker: the temp files did not travel between workers")
	}
}

// A model under the minimum accuracy fails the run, after the report.
func TestPipelineLowAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an embedded cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := defaultConfig()
	cfg.sweep, cfg.workers, cfg.minAccuracy = 1, 1, 1.01
	var out bytes.Buffer
	if _, err := run(ctx, cfg, &out); !errors.Is(err, errLowAccuracy) {
		t.Fatalf("run with minimum accuracy 1.01: %v; want errLowAccuracy", err)
	}
	lastLineJSON(t, out.String())
}

func lastLineJSON(t *testing.T, out string) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
		t.Fatalf("last line %q: %v", lines[len(lines)-1], err)
	}
	return got
}

func TestRanges(t *testing.T) {
	for _, tc := range []struct {
		n, size int
		want    []rowRange
	}{
		{0, 10, nil},
		{5, 10, []rowRange{{0, 5}}},
		{20, 10, []rowRange{{0, 10}, {10, 20}}},
		{21, 10, []rowRange{{0, 10}, {10, 20}, {20, 21}}},
	} {
		if diff := cmp.Diff(tc.want, ranges(tc.n, tc.size)); diff != "" {
			t.Errorf("ranges(%d, %d) mismatch (-want +got):\n%s", tc.n, tc.size, diff)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/go-build1/exe/pipeline": "/tmp/go-build1/exe/pipeline",
		"model-*.json":                "'model-*.json'",
		"/a b/it's":                   `'/a b/it'\''s'`,
		"":                            "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
