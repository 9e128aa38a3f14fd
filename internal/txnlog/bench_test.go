package txnlog

import (
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkWrite is the loop's cost of one record.
func BenchmarkWrite(b *testing.B) {
	w, err := Create(filepath.Join(b.TempDir(), "txn.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	for b.Loop() {
		w.Write(Record{Time: time.Now(), Event: TaskDone, Task: 12345, Attempt: 1, Worker: "w1", Result: "success", Reason: "exit status 0", RunMs: 3})
	}
}
