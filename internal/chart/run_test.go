package chart

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"trellis/internal/txnlog"
)

var t0 = time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// sample is a small run: two workers; a task staged by a transfer, then
// run; a task requeued when its worker left and run again elsewhere; a
// library set up and a call into it.
func sample() []txnlog.Record {
	return []txnlog.Record{
		{Time: at(0), Event: txnlog.WorkerJoined, Worker: "w1", Cores: 2},
		{Time: at(0), Event: txnlog.WorkerJoined, Worker: "w2", Cores: 4},
		{Time: at(1), Event: txnlog.TaskSubmitted, Task: 1, Name: "a", Modality: "task"},
		{Time: at(1), Event: txnlog.TaskSubmitted, Task: 2, Name: "b", Modality: "task"},
		{Time: at(2), Event: txnlog.TaskRunning, Task: 1, Attempt: 1, Worker: "w1", Cores: 1},
		{Time: at(2), Event: txnlog.TransferStarted, Transfer: 7, File: "f", Worker: "w1", Route: "manager_to_worker", Bytes: 1 << 20},
		{Time: at(3), Event: txnlog.TransferEnded, Transfer: 7, File: "f", Worker: "w1", Route: "manager_to_worker", Bytes: 1 << 20, Result: "success"},
		{Time: at(3), Event: txnlog.TaskRunning, Task: 2, Attempt: 1, Worker: "w2", Cores: 2},
		{Time: at(4), Event: txnlog.WorkerLeft, Worker: "w2"},
		{Time: at(4), Event: txnlog.TaskRequeued, Task: 2, Attempt: 1, Reason: "worker_lost"},
		{Time: at(5), Event: txnlog.TaskDone, Task: 1, Attempt: 1, Worker: "w1", Result: "success", RunMs: 2000},
		{Time: at(5), Event: txnlog.TaskRunning, Task: 2, Attempt: 2, Worker: "w1", Cores: 2},
		{Time: at(6), Event: txnlog.TaskDone, Task: 2, Attempt: 2, Worker: "w1", Result: "success", RunMs: 1000},
		{Time: at(6), Event: txnlog.InstanceStarted, Instance: 1, Library: "math", Attempt: 1, Worker: "w1"},
		{Time: at(6), Event: txnlog.TaskSubmitted, Task: 3, Name: "math.sq", Modality: "call", Library: "math"},
		{Time: at(8), Event: txnlog.InstanceReady, Instance: 1, Library: "math", Attempt: 1, Worker: "w1"},
		{Time: at(8), Event: txnlog.TaskRunning, Task: 3, Attempt: 1, Worker: "w1"},
		{Time: at(8.5), Event: txnlog.TaskDone, Task: 3, Attempt: 1, Worker: "w1", Result: "success"},
	}
}

func TestAnalyse(t *testing.T) {
	got := Analyse(sample())
	want := &Run{
		Start: t0,
		Workers: []Worker{
			{Name: "w1", Lanes: 2, Spans: []Span{
				{Kind: KindStarting, Start: 2, End: 3},
				{Kind: KindTransfer, Start: 2, End: 3, Lane: 1},
				{Kind: KindTask, Start: 3, End: 5},
				{Kind: KindTask, Start: 5, End: 6},
				{Kind: KindSetUp, Start: 6, End: 8},
				{Kind: KindCall, Start: 8, End: 8.5},
			}},
			{Name: "w2", Lanes: 1, Spans: []Span{{Kind: KindStarting, Start: 3, End: 4}}},
		},
		CoresUsed: []Point{{2, 1}, {3, 3}, {4, 1}, {5, 0}, {5, 2}, {6, 0}, {8, 0}, {8.5, 0}},
		CoresUp:   []Point{{0, 2}, {0, 6}, {4, 2}},
		Bytes:     map[string][]Point{"manager_to_worker": {{3, 1 << 20}}},
		Libraries: []Library{{Name: "math", ColdStarts: []float64{2}, Calls: []float64{0.5}}},
		Summary: Summary{Tasks: 2, Calls: 1, Attempts: 4, Queued: 1 + 2 + 1 + 2, Starting: 1 + 1,
			Running: 2 + 1 + 0.5, Transfers: 1, Bytes: 1 << 20, Duration: 8.5},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Analyse mismatch (-want +got):\n%s", diff)
	}
}

// Staging: from a task's first input starting to travel to its dispatch,
// or to its requeue when it gives up staging; queued until then.
func TestAnalyseStaging(t *testing.T) {
	got := Analyse([]txnlog.Record{
		{Time: at(0), Event: txnlog.TaskSubmitted, Task: 1, Modality: "task"},
		{Time: at(0), Event: txnlog.TaskSubmitted, Task: 2, Modality: "task"},
		{Time: at(1), Event: txnlog.TaskStaging, Task: 1, Worker: "w1", Transfer: 7, File: "a", Route: "manager_to_worker"},
		{Time: at(1), Event: txnlog.TransferStarted, Transfer: 7, File: "a", Worker: "w1", Route: "manager_to_worker"},
		{Time: at(1.5), Event: txnlog.TaskStaging, Task: 1, Worker: "w1", Transfer: 8, File: "b", Route: "peer_to_worker", Peer: "w2"},
		{Time: at(2), Event: txnlog.TaskStaging, Task: 2, Worker: "w1", Transfer: 9, File: "c", Route: "url_to_worker"},
		{Time: at(2.5), Event: txnlog.TaskRequeued, Task: 2, Reason: "input_missing: fetch from origin: 404"},
		{Time: at(3), Event: txnlog.TransferEnded, Transfer: 7, File: "a", Worker: "w1", Route: "manager_to_worker", Result: "success", Bytes: 10},
		{Time: at(3), Event: txnlog.TaskRunning, Task: 1, Attempt: 1, Worker: "w1", Cores: 1, Modality: "dataflow"},
		{Time: at(4), Event: txnlog.TaskDone, Task: 1, Attempt: 1, Worker: "w1", Result: "success", RunMs: 1000},
		{Time: at(4), Event: txnlog.TaskRunning, Task: 2, Attempt: 1, Worker: "w1", Cores: 1},
		{Time: at(5), Event: txnlog.TaskDone, Task: 2, Attempt: 1, Worker: "w1", Result: "success", RunMs: 1000},
	})
	want := Summary{Tasks: 2, Attempts: 2, Queued: 1 + 2 + 1.5, Staging: 2 + 0.5, Running: 2, Transfers: 2, Bytes: 10, Duration: 5}
	if diff := cmp.Diff(want, got.Summary); diff != "" {
		t.Errorf("Analyse summary mismatch (-want +got):\n%s", diff)
	}
	// Task 1 runs as a dataflow task (its task_running says so), task 2 as a task.
	var kinds []string
	for _, s := range got.Workers[0].Spans {
		if s.Kind == KindTask || s.Kind == KindDataflow {
			kinds = append(kinds, s.Kind)
		}
	}
	if diff := cmp.Diff([]string{KindDataflow, KindTask}, kinds); diff != "" {
		t.Errorf("kinds of the running spans (-want +got):\n%s", diff)
	}
}

// A task placed where its input travels already (for another task) has no
// task_staging of its own: its staging runs from its task_placed.
func TestAnalysePlaced(t *testing.T) {
	got := Analyse([]txnlog.Record{
		{Time: at(0), Event: txnlog.TaskSubmitted, Task: 1, Modality: "task"},
		{Time: at(1), Event: txnlog.TaskPlaced, Task: 1, Worker: "w1"},
		{Time: at(1.5), Event: txnlog.TaskStaging, Task: 1, Worker: "w1", Transfer: 7, File: "a", Route: "manager_to_worker"},
		{Time: at(3), Event: txnlog.TaskRunning, Task: 1, Attempt: 1, Worker: "w1", Cores: 1},
		{Time: at(4), Event: txnlog.TaskDone, Task: 1, Attempt: 1, Worker: "w1", Result: "success", RunMs: 1000},
	})
	want := Summary{Tasks: 1, Attempts: 1, Queued: 1, Staging: 2, Running: 1, Duration: 4}
	if diff := cmp.Diff(want, got.Summary); diff != "" {
		t.Errorf("Analyse summary mismatch (-want +got):\n%s", diff)
	}
}

// A span the log ends before is drawn to the log's end and marked open.
func TestAnalyseOpenSpan(t *testing.T) {
	got := Analyse([]txnlog.Record{
		{Time: at(0), Event: txnlog.TaskSubmitted, Task: 1, Modality: "task"},
		{Time: at(1), Event: txnlog.TaskRunning, Task: 1, Attempt: 1, Worker: "w1"},
		{Time: at(3), Event: txnlog.WorkerJoined, Worker: "w9"},
	})
	want := []Worker{{Name: "w1", Lanes: 1, Spans: []Span{{Kind: KindStarting, Start: 1, End: 3, Open: true}}}, {Name: "w9"}}
	if diff := cmp.Diff(want, got.Workers); diff != "" {
		t.Errorf("Analyse workers mismatch (-want +got):\n%s", diff)
	}
}

// Each format comes out as a file of its kind; the calls figure needs a
// library in the log and says so.
func TestDraw(t *testing.T) {
	r := Analyse(sample())
	magic := map[string]string{"svg": "<?xml", "png": "\x89PNG", "pdf": "%PDF"}
	for _, format := range Formats {
		t.Run(format, func(t *testing.T) {
			for name, draw := range map[string]func(*bytes.Buffer) error{
				"run":   func(b *bytes.Buffer) error { return DrawRun(b, r, format) },
				"calls": func(b *bytes.Buffer) error { return DrawCalls(b, r, format) },
			} {
				var b bytes.Buffer
				if err := draw(&b); err != nil {
					t.Fatalf("Draw %s as %s: %v", name, format, err)
				}
				if !strings.HasPrefix(b.String(), magic[format]) {
					t.Errorf("Draw %s as %s: starts %q, want %q", name, format, b.String()[:min(b.Len(), 8)], magic[format])
				}
			}
		})
	}
	if err := DrawCalls(&bytes.Buffer{}, Analyse(sample()[:13]), "svg"); err == nil || !strings.Contains(err.Error(), "no library") {
		t.Errorf("DrawCalls without a library: %v, want an error saying so", err)
	}
	if err := DrawRun(&bytes.Buffer{}, r, "gif"); err == nil || !strings.Contains(err.Error(), `format "gif"`) {
		t.Errorf("DrawRun as gif: %v, want an error naming the format", err)
	}
}
