package factory

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"trellis"
)

func TestParseSettings(t *testing.T) {
	base := Settings{Limits: Limits{Worker: trellis.Resources{Cores: 1}, Max: 10, PerCycle: 10}, StartTimeout: 10 * time.Minute}
	for _, tc := range []struct {
		name, yaml string
		want       Settings
		err        string
	}{
		{"empty keeps the flags", "", base, ""},
		{"every key", "min: 1\nmax: 4\nper-cycle: 2\ncores: 2.5\nmemory: 4000\ndisk: 9000\ngpus: 1\nstart-timeout: 90s\n",
			Settings{Limits: Limits{Worker: trellis.Resources{Cores: 2.5, MemoryMB: 4000, DiskMB: 9000, GPUs: 1}, Min: 1, Max: 4, PerCycle: 2}, StartTimeout: 90 * time.Second}, ""},
		{"a key left out keeps the flag", "max: 3\n", Settings{Limits: Limits{Worker: trellis.Resources{Cores: 1}, Max: 3, PerCycle: 10}, StartTimeout: 10 * time.Minute}, ""},
		{"an unknown key", "maxx: 3\n", Settings{}, "field maxx not found"},
		{"a wrong type", "max: many\n", Settings{}, "cannot unmarshal"},
		{"out of bounds", "min: 5\nmax: 2\n", Settings{}, "max 2 must be positive and at least min 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSettings([]byte(tc.yaml), base)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want it to say %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// The factory re-reads its file each cycle it changed: a new maximum
// bounds the next submissions and the jobs ask for the new worker size; a
// broken file keeps the last settings and says why.
func TestSettingsFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "factory.yaml")
	write := func(s string, at time.Time) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(path, at, at) // a change within the clock's resolution still shows
	}
	write("max: 1\n", time.Unix(1, 0))
	base := Settings{Limits: Limits{Worker: trellis.Resources{Cores: 1}, Max: 10}}
	b := &fakeBatch{alive: make(map[string]bool)}
	var sizes []trellis.Resources
	rb := &recordBatch{fakeBatch: b, sizes: &sizes}
	var logs bytes.Buffer
	st := fixedStatus{&trellis.Status{Demand: []trellis.ShapeDemand{{Shape: trellis.Resources{Cores: 1}, Waiting: 5}}}}
	f := newFactory(Config{Limits: base.Limits, Name: "w", Reload: SettingsFile(path, base)}, slog.New(slog.NewTextHandler(&logs, nil)), rb)
	ctx := context.Background()
	cycle := func() {
		t.Helper()
		if err := f.cycle(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	cycle()
	if len(b.submitted) != 1 {
		t.Fatalf("submitted %v with max 1 in the file", b.submitted)
	}
	write("max: 3\ncores: 2\n", time.Unix(2, 0))
	cycle()
	if want := []trellis.Resources{{Cores: 1}, {Cores: 2}, {Cores: 2}}; !cmp.Equal(want, sizes) {
		t.Errorf("jobs asked for %v; want %v (max 3, then 2 cores)", sizes, want)
	}
	write("max: [\n", time.Unix(3, 0))
	cycle()
	if !strings.Contains(logs.String(), "keeping the last settings") || !strings.Contains(logs.String(), path) {
		t.Errorf("a broken file is not reported with its name:\n%s", logs.String())
	}
	if f.cfg.Max != 3 {
		t.Errorf("max %d after a broken file; want the last, 3", f.cfg.Max)
	}
}

// recordBatch records the resources of each job submitted.
type recordBatch struct {
	*fakeBatch
	sizes *[]trellis.Resources
}

func (r *recordBatch) Submit(ctx context.Context, job Job) error {
	*r.sizes = append(*r.sizes, job.Resources)
	return r.fakeBatch.Submit(ctx, job)
}
