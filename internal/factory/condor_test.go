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

// fakeCondor puts condor_submit, condor_q and condor_rm on PATH: shell
// scripts that keep a queue in a directory, one file a job holding
// condor_q -af:j JobStatus HoldReason's line, and print what the real
// tools print (condor_submit -terse: "23.0 - 23.0"; condor_rm of a job
// gone: "Couldn't find/remove all jobs matching constraint ..."). A file
// "refuse" makes condor_submit fail as with no schedd. It returns the
// directory.
func fakeCondor(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	q := filepath.Join(dir, "q")
	for _, d := range []string{bin, q} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	scripts := map[string]string{
		"condor_submit": `[ "$1 $2" = "-terse -" ] || { echo "fake condor_submit: want -terse -, got $*" >&2; exit 2; }
if [ -e D/refuse ]; then
	echo "ERROR: Can't find address of local schedd" >&2
	exit 1
fi
n=$(( $(cat D/next 2>/dev/null || echo 0) + 1 ))
echo $n >D/next
cat >D/desc-$n
echo "$n.0 1 undefined" >D/q/$n
echo "$n.0 - $n.0"
`,
		"condor_q": `[ "$*" = "-af:j JobStatus HoldReason" ] || { echo "fake condor_q: unexpected $*" >&2; exit 2; }
cat D/q/* 2>/dev/null
exit 0
`,
		"condor_rm": `n=${1%.0}
echo "$1" >>D/removed
if [ -e D/q/$n ]; then
	rm D/q/$n
	echo "Job $1 marked for removal"
else
	echo "Couldn't find/remove all jobs matching constraint (ClusterId==$n && ProcId==0)" >&2
	exit 1
fi
`,
	}
	for name, body := range scripts {
		body = "#!/bin/sh\n" + strings.ReplaceAll(body, "D/", dir+"/")
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return dir
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// TestCondor: a factory on HTCondor submits descriptions with the
// worker's resources, removes held jobs and says why, backs off from a
// refused submission, and removes its jobs when it stops.
func TestCondor(t *testing.T) {
	dir := fakeCondor(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	w := trellis.Resources{Cores: 2, MemoryMB: 4000, DiskMB: 10, GPUs: 1}
	b := &Condor{TimeLimit: time.Hour, OutputDir: "/shared/logs", Log: log}
	st := fixedStatus{&trellis.Status{Demand: []trellis.ShapeDemand{{Shape: trellis.Resources{Cores: 2}, Waiting: 2}}}}
	f := newFactory(Config{Limits: Limits{Worker: w, Max: 5}, Name: "w", Worker: []string{"/shared/trellis", "worker", "m:9123", "--secret-file", "/shared/it's secret"}, Interval: time.Second}, log, b)
	now := time.Unix(1000, 0)
	f.now = func() time.Time { return now }
	ctx := context.Background()

	if err := f.cycle(ctx, st); err != nil {
		t.Fatal(err)
	}
	want := `universe = vanilla
executable = /shared/trellis
arguments = "'worker' 'm:9123' '--secret-file' '/shared/it''s secret' '--name' 'w-1' '--cores' '2' '--gpus' '1' '--memory' '4000' '--disk' '10'"
batch_name = w-1
getenv = true
should_transfer_files = NO
output = /shared/logs/w-1.out
error = /shared/logs/w-1.err
request_cpus = 2
request_memory = 4000
request_disk = 10240
request_gpus = 1
allowed_execute_duration = 3600
queue 1
`
	if diff := cmp.Diff(want, readFile(t, filepath.Join(dir, "desc-1"))); diff != "" {
		t.Errorf("submit description (-want +got):\n%s", diff)
	}
	alive, err := b.Alive(ctx)
	if err != nil || len(alive) != 2 {
		t.Fatalf("Alive = %v, %v; want the two jobs idle", alive, err)
	}

	// Job 1 is held: the next cycle removes it, reports why, counts a
	// failed start; condor_submit refuses its replacement: no error of the
	// cycle, a warning with the tool's message.
	os.WriteFile(filepath.Join(dir, "refuse"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "q", "1"), []byte("1.0 5 Error from slot1@node7: Failed to execute '/shared/trellis': No such file or directory\n"), 0o644)
	now = now.Add(time.Second)
	if err := f.cycle(ctx, st); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "removed")); got != "1.0\n" {
		t.Errorf("condor_rm ran for %q; want the held job 1.0", got)
	}
	if !strings.Contains(logs.String(), "Failed to execute '/shared/trellis'") {
		t.Errorf("the hold reason is not logged:\n%s", logs.String())
	}
	if f.failed != 1 {
		t.Errorf("%d failed starts; want the held job counted", f.failed)
	}

	if !strings.Contains(logs.String(), "Can't find address of local schedd") {
		t.Errorf("the refusal is not logged with its message:\n%s", logs.String())
	}

	// Stopping removes what is left; a job already gone is no error.
	if err := b.Cancel(ctx, "w-1"); err != nil {
		t.Errorf("Cancel of a job gone: %v", err)
	}
	f.stop()
	if got := readFile(t, filepath.Join(dir, "removed")); got != "1.0\n2.0\n" {
		t.Errorf("condor_rm ran for %q; want 1.0 (held) then 2.0 (at stop)", got)
	}
	if q, _ := os.ReadDir(filepath.Join(dir, "q")); len(q) != 0 {
		t.Errorf("%d jobs left in the queue after stop", len(q))
	}
}

// The resources of a Slurm job: GPUs and a time limit are not exercised
// by the one-node Slurm of TestFactorySlurm.
func TestSbatchArgs(t *testing.T) {
	s := &Slurm{TimeLimit: 90 * time.Second, Partition: "gpu", OutputDir: "/shared/logs"}
	want := []string{"--parsable", "--job-name", "w-1", "--output", "/shared/logs/w-1-%j.out", "--nodes", "1", "--ntasks", "1",
		"--cpus-per-task", "2", "--mem", "2000", "--gres", "gpu:2", "--time", "2", "--partition", "gpu"}
	if diff := cmp.Diff(want, s.sbatchArgs("w-1", trellis.Resources{Cores: 1.5, MemoryMB: 2000, GPUs: 2})); diff != "" {
		t.Errorf("sbatch arguments (-want +got):\n%s", diff)
	}
	if got, want := script([]string{"/bin/trellis", "worker", "it's"}), "#!/bin/sh\nexec '/bin/trellis' 'worker' 'it'\\''s'\n"; got != want {
		t.Errorf("job script %q, want %q", got, want)
	}
}
