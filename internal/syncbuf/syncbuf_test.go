package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

// Concurrent writes all arrive, each whole (run with -race).
func TestBufferConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() { // exits after its 100 writes
			defer wg.Done()
			for range 100 {
				b.Write([]byte("ab\n"))
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("ab\n", 800) {
		t.Errorf("got %d bytes, want 800 whole lines (%d bytes)", len(got), 800*3)
	}
}
