package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const plotLog = `{"t":"2026-12-06T09:00:00Z","ev":"worker_joined","worker":"w1","cores":2}
{"t":"2026-12-06T09:00:01Z","ev":"task_submitted","task":1,"name":"a","modality":"task"}
{"t":"2026-12-06T09:00:01Z","ev":"task_submitted","task":2,"name":"lib.f","modality":"call","library":"lib"}
{"t":"2026-12-06T09:00:02Z","ev":"task_running","task":1,"attempt":1,"worker":"w1","cores":1}
{"t":"2026-12-06T09:00:02Z","ev":"instance_started","instance":1,"library":"lib","attempt":1,"worker":"w1"}
{"t":"2026-12-06T09:00:03Z","ev":"instance_ready","instance":1,"library":"lib","attempt":1,"worker":"w1"}
{"t":"2026-12-06T09:00:03Z","ev":"task_running","task":2,"attempt":1,"worker":"w1"}
{"t":"2026-12-06T09:00:03.5Z","ev":"task_done","task":2,"attempt":1,"worker":"w1","result":"success"}
{"t":"2026-12-06T09:00:04Z","ev":"task_done","task":1,"attempt":1,"worker":"w1","result":"success","run_ms":1500}
`

func runPlot(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := plotCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// trellis plot writes the run's figure and, for a log with a library, the
// cold-start figure beside it, and prints where the time went.
func TestPlot(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "txn.jsonl")
	if err := os.WriteFile(log, []byte(plotLog), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runPlot(t, log, "-o", filepath.Join(dir, "run.svg"))
	if err != nil {
		t.Fatalf("trellis plot: %v\n%s", err, out)
	}
	for _, want := range []string{
		"run of 4 s: 1 tasks and 1 calls submitted, 2 attempts placed on 1 workers",
		"queued 3 s, staging inputs 0 s, starting 0.5 s, running 2 s",
		"library lib: 1 cold starts, median 1000 ms; 1 warm calls, median 500 ms",
		"wrote " + filepath.Join(dir, "run.svg"), "wrote " + filepath.Join(dir, "run-calls.svg"),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("trellis plot printed:\n%s\nwant %q in it", out, want)
		}
	}
	for _, name := range []string{"run.svg", "run-calls.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.HasPrefix(b, []byte("<?xml")) {
			t.Errorf("%s: %d bytes, %v; want an SVG file", name, len(b), err)
		}
	}

	empty := filepath.Join(dir, "empty.jsonl")
	os.WriteFile(empty, nil, 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{log}, "-o FILE is required"},
		{[]string{log, "-o", filepath.Join(dir, "run.gif")}, "must end in .svg, .png or .pdf"},
		{[]string{empty, "-o", filepath.Join(dir, "e.svg")}, "is empty: nothing to draw"},
		{[]string{filepath.Join(dir, "nope"), "-o", filepath.Join(dir, "e.svg")}, "no such file"},
	} {
		if _, err := runPlot(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("trellis plot %s: %v, want an error with %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}
