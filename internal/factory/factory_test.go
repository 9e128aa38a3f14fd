package factory

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"trellis"
)

// fakeBatch records jobs; a job ends when the test says so.
type fakeBatch struct {
	mu        sync.Mutex
	alive     map[string]bool
	submitted []string
	cancelled []string
}

func (b *fakeBatch) Submit(_ context.Context, name string, _ []string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.alive[name] = true
	b.submitted = append(b.submitted, name)
	return nil
}

func (b *fakeBatch) Cancel(_ context.Context, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.alive, name)
	b.cancelled = append(b.cancelled, name)
	return nil
}

func (b *fakeBatch) Alive(context.Context) (map[string]bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]bool)
	for k := range b.alive {
		out[k] = true
	}
	return out, nil
}

func (b *fakeBatch) end(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.alive, name)
}

type fixedStatus struct{ s *trellis.Status }

func (f fixedStatus) Status(context.Context) (*trellis.Status, error) { return f.s, nil }

// Jobs whose workers never connect stop the submissions after
// MaxFailedStarts in a row; stopping cancels what is left.
func TestFailedStartsStopSubmitting(t *testing.T) {
	b := &fakeBatch{alive: make(map[string]bool)}
	st := fixedStatus{&trellis.Status{Demand: []trellis.ShapeDemand{{Shape: trellis.Resources{Cores: 1}, Waiting: 1}}}}
	f := &factory{cfg: Config{Limits: Limits{Worker: trellis.Resources{Cores: 1}, Max: 5}, Name: "w"}, log: discard(),
		batch: b, mine: make(map[string]bool), seen: make(map[string]bool)}
	ctx := context.Background()
	for range MaxFailedStarts {
		if err := f.cycle(ctx, st); err != nil {
			t.Fatal(err)
		}
		b.end(b.submitted[len(b.submitted)-1]) // dies at start
	}
	if err := f.cycle(ctx, st); err != nil {
		t.Fatal(err)
	}
	if len(b.submitted) != MaxFailedStarts {
		t.Errorf("submitted %v; want %d jobs, then none after %d failed starts", b.submitted, MaxFailedStarts, MaxFailedStarts)
	}
	f.failed = 0 // an operator fixed it: the next cycle submits again
	if err := f.cycle(ctx, st); err != nil {
		t.Fatal(err)
	}
	f.stop()
	if len(b.cancelled) != 1 || b.cancelled[0] != b.submitted[len(b.submitted)-1] {
		t.Errorf("cancelled %v at stop; want the one live job of %v", b.cancelled, b.submitted)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
