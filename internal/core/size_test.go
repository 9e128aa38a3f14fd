package core

import (
	"testing"
	"unsafe"
)

// TestTaskSize keeps a task within the 224-byte size class of Go's
// allocator: a million queued tasks are the core's largest memory, and
// task.since (unplaceable.go) took the word that this class left free.
// A field that grows it past 224 bytes costs 16 more per task (the next
// class is 240): keep it out of task, or measure the cost
// (docs/benchmarks.md, capacity) and raise this bound.
func TestTaskSize(t *testing.T) {
	if n := unsafe.Sizeof(task{}); n > 224 {
		t.Errorf("a task is %d bytes; want at most 224, the size class it has now", n)
	}
}
