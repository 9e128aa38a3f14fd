package sandbox

import (
	"math/rand/v2"
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
		s.pushLocked(w)
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
			s.pushLocked(w)
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

// A wake-up samples exactly the watches due within half their base
// interval, whatever their order of arrival and base interval, and each
// once: the heaps give what a look at every watch would.
func TestSamplerSamplesExactlyTheDue(t *testing.T) {
	t0 := time.Unix(1000, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	s := newSampler()
	var ws []*watch
	for range 300 {
		base := []time.Duration{20 * time.Millisecond, 50 * time.Millisecond, 400 * time.Millisecond}[rng.IntN(3)]
		w := &watch{base: base, interval: base, due: t0.Add(time.Duration(rng.IntN(1000)) * time.Millisecond),
			oom: func() bool { return false }, over: func(verdict) { t.Error("over its limit") }}
		s.pushLocked(w)
		ws = append(ws, w)
	}
	now := t0
	for round := range 50 {
		want := map[*watch]bool{}
		for _, w := range ws {
			if !w.due.After(now.Add(w.base / 2)) {
				want[w] = true
			}
		}
		before := make(map[*watch]time.Time, len(ws))
		for _, w := range ws {
			before[w] = w.due
		}
		samples := s.samples
		next := s.sampleDue(now)
		var wantNext time.Time
		for _, w := range ws {
			if sampled := !w.due.Equal(before[w]); sampled != want[w] {
				t.Fatalf("round %d: a watch due %v after now (base %v): sampled %v; want %v", round, before[w].Sub(now), w.base, sampled, want[w])
			}
			if wantNext.IsZero() || w.due.Before(wantNext) {
				wantNext = w.due
			}
		}
		if got := s.samples - samples; got != len(want) {
			t.Fatalf("round %d: %d samples; want %d", round, got, len(want))
		}
		if !next.Equal(wantNext) {
			t.Fatalf("round %d: next wake-up %v after now; want %v", round, next.Sub(now), wantNext.Sub(now))
		}
		if round%7 == 3 { // some runs end, others start
			for _, i := range []int{rng.IntN(len(ws)), rng.IntN(len(ws))} {
				if ws[i].q != nil {
					s.remove(ws[i])
				}
				ws[i] = &watch{base: ws[i].base, interval: ws[i].base, due: next.Add(time.Duration(rng.IntN(100)) * time.Millisecond),
					oom: func() bool { return false }, over: func(verdict) { t.Error("over its limit") }}
				s.pushLocked(ws[i])
			}
		}
		now = next
	}
}

// A pass over the watches allocates nothing, and a steady run of a second
// is sampled at 1, 3, 7 and 15 base intervals of 50 ms: four samples.
func TestSamplerPassAllocatesNothing(t *testing.T) {
	const base = 50 * time.Millisecond
	s := newSampler()
	t0 := time.Unix(1000, 0)
	var ws []*watch
	for i := range 256 {
		w := &watch{base: base, oom: func() bool { return false }, over: func(verdict) {}}
		w.interval, w.due = base, t0.Add(base+time.Duration(i)*4*time.Millisecond)
		s.pushLocked(w)
		ws = append(ws, w)
	}
	now := t0
	allocs := testing.AllocsPerRun(100, func() { now = s.sampleDue(now) })
	if allocs != 0 {
		t.Errorf("%v allocations per pass; want 0", allocs)
	}

	s = newSampler()
	w := &watch{base: base, interval: base, due: t0.Add(base), oom: func() bool { return false }, over: func(verdict) {}}
	s.pushLocked(w)
	for now := t0.Add(base); now.Before(t0.Add(time.Second)); now = s.sampleDue(now) {
	}
	if s.samples != 4 {
		t.Errorf("a steady run of 1 s was sampled %d times; want 4 (at 50, 150, 350 and 750 ms)", s.samples)
	}
	s.remove(w)
	if s.n != 0 || w.q != nil {
		t.Errorf("after remove: %d watches queued, w in a heap %v; want none", s.n, w.q != nil)
	}

	// A heap left empty is kept: a watch entering it again, as one that
	// waited for its out-of-memory event does, allocates nothing.
	allocs = testing.AllocsPerRun(100, func() {
		now = s.sampleDue(now)
		s.mu.Lock()
		s.pushLocked(w)
		s.mu.Unlock()
		s.remove(w)
	})
	if allocs != 0 || len(s.queues) != 1 {
		t.Errorf("a watch entering an emptied heap: %v allocations, %d heaps; want 0 and 1", allocs, len(s.queues))
	}
}
