package sandbox

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestSamplerSharesWakeups: one wake-up samples every watch due within
// half its base interval, and says when the next is due; a watch over its
// limit gets its verdict once and is not sampled again.
func TestSamplerSharesWakeups(t *testing.T) {
	const base = 50 * time.Millisecond
	s := newSampler()
	t0 := time.Unix(1000, 0)
	var ws []*watch
	var verdicts []verdict // of the last watch
	for i := range 10 {
		w := &watch{dir: t.TempDir(), diskLimit: 1 << 20, diskMB: 1, base: base, interval: base,
			due: t0.Add(time.Duration(i) * 5 * time.Millisecond), over: func(verdict) { t.Errorf("watch %d over its limit", i) }}
		if i == 9 {
			w.over = func(v verdict) { verdicts = append(verdicts, v) }
		}
		s.watches[w] = struct{}{}
		ws = append(ws, w)
	}
	next := s.sampleDue(t0)
	for i, w := range ws {
		sampled := w.due.After(t0.Add(time.Duration(i) * 5 * time.Millisecond))
		if want := i <= 5; sampled != want {
			t.Errorf("watch due at +%dms: sampled %v; want %v", i*5, sampled, want)
		}
	}
	if want := t0.Add(30 * time.Millisecond); !next.Equal(want) {
		t.Errorf("next due %v after the start; want %v", next.Sub(t0), want.Sub(t0))
	}
	if s.wakeups != 1 {
		t.Errorf("%d wake-ups; want 1", s.wakeups)
	}

	// Over its disk limit: one verdict, then no more samples.
	big := ws[9]
	if err := os.WriteFile(filepath.Join(big.dir, "big"), make([]byte, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Second)
	s.sampleDue(now)
	if len(verdicts) != 1 || verdicts[0].kind != DiskExceeded {
		t.Fatalf("verdicts %v; want one, %v", verdicts, DiskExceeded)
	}
	s.sampleDue(now.Add(time.Hour))
	if len(verdicts) != 1 {
		t.Errorf("verdicts %v after the first; want no more", verdicts[1:])
	}
	for _, w := range ws[:9] {
		if !w.due.After(now) {
			t.Errorf("a watch under its limit was not sampled at %v", now.Sub(t0))
		}
	}
}

// TestSamplerGoroutineEnds: the sampler's goroutine ends once its last
// watch is removed, even one not due for an hour, and a new watch starts
// it again.
func TestSamplerGoroutineEnds(t *testing.T) {
	s := newSampler()
	for _, base := range []time.Duration{time.Millisecond, time.Hour} { // due at once, and in an hour
		w := &watch{dir: t.TempDir(), diskLimit: 1 << 20, base: base}
		s.add(w, time.Now())
		s.remove(w)
		deadline := time.Now().Add(10 * time.Second)
		for {
			s.mu.Lock()
			running := s.running
			s.mu.Unlock()
			if !running {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the sampler's goroutine still runs 10 s after its last watch was removed")
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// TestSamplerFirstSampleSteady: a first sample under half the limit counts
// as steady, so the next waits twice the base interval; any growth after
// it brings the base interval back, and a first sample over half the
// limit keeps it.
func TestSamplerFirstSampleSteady(t *testing.T) {
	const base = 50 * time.Millisecond
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name  string
		sizes []int // bytes in the sandbox at each sample
		want  []time.Duration
	}{
		{name: "steady", sizes: []int{1000, 1000, 1000}, want: []time.Duration{2 * base, 4 * base, 8 * base}},
		{name: "grows after the first", sizes: []int{1000, 2000, 2000}, want: []time.Duration{2 * base, base, 2 * base}},
		{name: "over half at first", sizes: []int{600 << 10, 600 << 10}, want: []time.Duration{base, base}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSampler()
			w := &watch{dir: t.TempDir(), diskLimit: 1 << 20, diskMB: 1, base: base, interval: base,
				due: t0, over: func(verdict) {}}
			s.watches[w] = struct{}{}
			var got []time.Duration
			now := t0
			for _, size := range tc.sizes {
				if err := os.WriteFile(filepath.Join(w.dir, "f"), make([]byte, size), 0o644); err != nil {
					t.Fatal(err)
				}
				now = w.due
				s.sampleDue(now)
				got = append(got, w.due.Sub(now))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("waits after each sample (-want +got):\n%s", diff)
			}
		})
	}
}

// A watch added due no earlier than the goroutine's next wake-up does not
// wake it; one due before does.
func TestSamplerAddWakesOnlyWhenDueFirst(t *testing.T) {
	s := newSampler()
	t0 := time.Unix(1000, 0)
	s.running, s.next = true, t0.Add(30*time.Millisecond) // as if the goroutine waited
	s.add(&watch{base: 50 * time.Millisecond}, t0)
	if len(s.wake) != 0 {
		t.Errorf("a watch due at +50ms woke the goroutine, due to wake at +30ms")
	}
	s.add(&watch{base: 10 * time.Millisecond}, t0)
	if len(s.wake) != 1 {
		t.Errorf("a watch due at +10ms did not wake the goroutine, due to wake at +30ms")
	}
}
