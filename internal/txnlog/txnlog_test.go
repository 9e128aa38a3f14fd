package txnlog

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Records written are read back as they were, after Flush; a reopened log
// is appended to.
func TestWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "txn.jsonl")
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	want := []Record{
		{Time: t0, Event: WorkerJoined, Worker: "w1", Cores: 2, MemoryMB: 1024},
		{Time: t0, Event: TaskSubmitted, Task: 1, Name: "a", Modality: "task"},
		{Time: t0, Event: TaskStaging, Task: 1, Worker: "w1", Transfer: 3, File: "f-123", Route: "peer_to_worker", Peer: "w2", Bytes: 10},
		{Time: t0, Event: TaskRunning, Task: 1, Attempt: 1, Worker: "w1", Cores: 1},
		{Time: t0, Event: TaskDone, Task: 1, Attempt: 1, Worker: "w1", Result: "success", RunMs: 5},
	}
	for i, r := range want {
		w, err := Create(path)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(r)
		if i == 0 {
			w.Flush()
			if b, _ := os.ReadFile(path); len(b) == 0 {
				t.Errorf("nothing in the file after Flush")
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Read mismatch (-want +got):\n%s", diff)
	}
}

// AppendJSON writes the bytes encoding/json writes, whatever the fields
// hold.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600))
	recs := []Record{
		{},
		{Time: t0, Event: TaskDone, Task: 1<<64 - 1, Attempt: 3, Worker: "w1", Result: "failed", Reason: `exit "1": a\b <x> & y` + "\n\t\x01", RunMs: -5},
		{Time: t0, Event: WorkerJoined, Worker: "wörker ✓", Cores: 0.5, MemoryMB: 1 << 40},
		{Time: t0, Event: TaskRunning, Cores: 1e-7},
		{Time: t0, Event: TaskRunning, Cores: -3},
		{Time: t0, Event: TaskRunning, Cores: 1e15},
		{Time: t0, Event: TaskRunning, Cores: 3e21},
		{Time: t0, Event: TransferEnded, Transfer: 9, File: "file-abc", Worker: "w", Route: "peer_to_worker", Peer: "p", Bytes: 1 << 20, Instance: 4, Library: "lib", Name: "n", Modality: "call"},
		{Time: t0, Event: "bad \xff utf-8"},
	}
	for _, r := range recs {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendJSON(nil, r); string(got) != string(want) {
			t.Errorf("AppendJSON(%+v):\n got %s\nwant %s", r, got, want)
		}
	}
}
