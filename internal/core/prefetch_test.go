package core_test

import (
	"testing"

	"trellis/internal/core"
)

// TestPrefetch steps the prefetch of a consumer's inputs (prefetch.go):
// once every producer a consumer still waits for runs on one worker that
// holds the most of its finished inputs, those it lacks travel there while
// that producer runs, and the consumer claims them when it is placed.
func TestPrefetch(t *testing.T) {
	one := res(1000, 100)
	cache := core.Source{Kind: core.FromCache}
	// Maps 1, 2, 3 (a family) feed reduce 4, on two workers of one core:
	// map 1 gives the family worker 1 as its home; worker 2 takes map 2
	// rather than idle; map 3 follows map 1 at home.
	family := []step{
		{join(1, one), nil},
		{join(2, one), nil},
		{temps(11, 12, 13), nil},
		{submit(
			files(task(1, one), nil, ids(11)), files(task(2, one), nil, ids(12)), files(task(3, one), nil, ids(13)),
			files(task(4, one), ids(11, 12, 13), nil),
		), acts(dispatch(1, 1, 1), dispatch(2, 1, 2))},
		{kept(1, 1, 1, 5000, 11), acts(success(1, 1, 1), dispatch(3, 1, 1))},
	}
	tests := []struct {
		name       string
		off        bool // SetPrefetch(false)
		steps      []step
		prefetched int64 // Stats().Prefetched at the end
	}{
		{
			// When map 2 ends, the reduce can only go to worker 1 (it holds
			// 11 and will hold 13): 12 travels while map 3 runs, and is
			// released there until the reduce claims it.
			name: "a sibling's output travels while the last member runs at home",
			steps: append(family[:len(family):len(family)],
				step{kept(2, 1, 2, 5000, 12), acts(success(2, 1, 2), fetch(1, 1, 12, peer(2), 5000))},
				step{fetched(1, 5000), acts(release(1, 12))},
				step{kept(3, 1, 1, 5000, 13), acts(success(3, 1, 1), fetch(2, 1, 12, cache, 5000))},
				step{fetched(2, 5000), acts(dispatch(4, 1, 1))},
			),
			prefetched: 5000,
		},
		{
			// A prefetch that fails is not tried again (its source's
			// failure counts, as any); the reduce, once placed, fetches
			// 12 itself with all its FetchTries: its third failure
			// (the fourth from worker 2) is tried again.
			name: "a failed prefetch is left to the consumer's own staging",
			steps: append(family[:len(family):len(family)],
				step{kept(2, 1, 2, 5000, 12), acts(success(2, 1, 2), fetch(1, 1, 12, peer(2), 5000))},
				step{reset(1), nil},
				step{kept(3, 1, 1, 5000, 13), acts(success(3, 1, 1), fetch(2, 1, 12, peer(2), 5000))},
				step{reset(2), nil}, // worker 2 failed twice: backed off
				step{core.Tick{}, nil}, step{core.Tick{}, nil}, step{core.Tick{}, nil}, step{core.Tick{}, nil},
				step{core.Tick{}, acts(fetch(3, 1, 12, peer(2), 5000))},
				step{reset(3), nil},
				step{core.Tick{}, nil}, step{core.Tick{}, nil}, step{core.Tick{}, nil}, step{core.Tick{}, nil},
				step{core.Tick{}, acts(fetch(4, 1, 12, peer(2), 5000))},
				step{reset(4), nil},
				step{core.Tick{}, nil}, step{core.Tick{}, nil}, step{core.Tick{}, nil}, step{core.Tick{}, nil},
				step{core.Tick{}, acts(fetch(5, 1, 12, peer(2), 5000))},
				step{fetched(5, 5000), acts(dispatch(4, 1, 1))},
			),
		},
		{
			// The same bytes move without it, once map 3 has ended.
			name: "without prefetch, the same transfer waits for the last member",
			off:  true,
			steps: append(family[:len(family):len(family)],
				step{kept(2, 1, 2, 5000, 12), acts(success(2, 1, 2))},
				step{kept(3, 1, 1, 5000, 13), acts(success(3, 1, 1), fetch(1, 1, 12, peer(2), 5000))},
				step{fetched(1, 5000), acts(dispatch(4, 1, 1))},
			),
		},
		{
			// Four maps: while maps 3 and 4 run on both workers, the
			// reduce's worker is open; once map 3 ends, worker 1 holds
			// more of its inputs than worker 2, where the last one runs,
			// so nothing moves to worker 2 in advance.
			name: "no prefetch while the producers to come run on two workers, nor to a worker that holds less",
			steps: append(familyOfFour(one),
				step{kept(1, 1, 1, 5000, 11), acts(success(1, 1, 1), dispatch(3, 1, 1))},
				step{kept(2, 1, 2, 5000, 12), acts(success(2, 1, 2), dispatch(4, 1, 2))},
				step{kept(3, 1, 1, 5000, 13), acts(success(3, 1, 1))},
				step{kept(4, 1, 2, 100, 14), acts(success(4, 1, 2), fetch(1, 1, 12, peer(2), 5000), fetch(2, 1, 14, peer(2), 100))},
			),
		},
		{
			// Task 5 reads 12 too: a worker other than the home may get a
			// copy of it for task 5, so the reduce's worker is not decided.
			name: "no prefetch of an input that another task reads too",
			steps: []step{
				{join(1, one), nil},
				{join(2, one), nil},
				{temps(11, 12, 13, 15), nil},
				{submit(
					files(task(1, one), nil, ids(11)), files(task(2, one), nil, ids(12)), files(task(3, one), nil, ids(13)),
					files(task(4, one), ids(11, 12, 13), nil), files(task(5, one), ids(12), ids(15)),
				), acts(dispatch(1, 1, 1), dispatch(2, 1, 2))},
				{kept(1, 1, 1, 5000, 11), acts(success(1, 1, 1), dispatch(3, 1, 1))},
				{kept(2, 1, 2, 5000, 12), acts(success(2, 1, 2), dispatch(5, 1, 2))},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := core.New()
			c.SetPrefetch(!tt.off)
			runSteps(t, c, tt.steps)
			if got := c.Stats().Prefetched; got != tt.prefetched {
				t.Errorf("Stats().Prefetched = %d, want %d", got, tt.prefetched)
			}
		})
	}
}

// familyOfFour submits maps 1..4 (one family) and reduce 5, which reads
// them all, to two workers of one core: map 1 gives the family worker 1 as
// its home, and worker 2, with no family of its own to start, takes map 2
// rather than idle.
func familyOfFour(one core.Resources) []step {
	return []step{
		{join(1, one), nil},
		{join(2, one), nil},
		{temps(11, 12, 13, 14), nil},
		{submit(
			files(task(1, one), nil, ids(11)), files(task(2, one), nil, ids(12)),
			files(task(3, one), nil, ids(13)), files(task(4, one), nil, ids(14)),
			files(task(5, one), ids(11, 12, 13, 14), nil),
		), acts(dispatch(1, 1, 1), dispatch(2, 1, 2))},
	}
}

// reset is the failure of transfer tr by its source.
func reset(tr uint64) core.TransferDone {
	return core.TransferDone{Transfer: tr, SourceFault: true, Why: "connection reset"}
}
