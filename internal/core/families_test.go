package core_test

import (
	"testing"

	"trellis/internal/core"
)

// TestGraphPlacement steps the graph-aware placement (#11) through small
// graphs, each under both policies: PlaceGraph (the default) and PlaceFree,
// the policy before it, whose extra transfers the tables show.
func TestGraphPlacement(t *testing.T) {
	one := res(1000, 100)
	cache := core.Source{Kind: core.FromCache} // a file a worker joined with is claimed before use (pins.go)
	// Four maps, two reduces of two: maps 1, 2 feed reduce 5; maps 3, 4
	// feed reduce 6. Two workers of one core.
	mapReduce := submit(
		files(task(1, one), nil, ids(11)), files(task(2, one), nil, ids(12)),
		files(task(3, one), nil, ids(13)), files(task(4, one), nil, ids(14)),
		files(task(5, one), ids(11, 12), nil), files(task(6, one), ids(13, 14), nil),
	)
	cached := func(id core.WorkerID, r core.Resources, f core.FileID) core.WorkerJoined {
		return core.WorkerJoined{Worker: id, Resources: r, Cached: []core.CachedFile{{File: f, Size: 100}}}
	}
	uploads := core.FilesDeclared{Files: []core.FileSpec{{ID: 31, Kind: core.External, Size: 100}, {ID: 32, Kind: core.External, Size: 100}}}
	// Task 3 reads files 31 (cached on worker 1) and 32 (on worker 2) of
	// one size; its sibling 4, of a higher priority, goes first.
	tie := []step{
		{uploads, nil},
		{cached(1, one, 31), nil},
		{cached(2, res(2000, 200), 32), nil},
		{temps(21, 22), nil},
		{submit(
			files(task(3, one), ids(31, 32), ids(21)), files(prio(task(4, one), 1), nil, ids(22)),
			files(task(5, one), ids(21, 22), nil),
		), nil},
	}
	// A family of two on two workers of one core: task 1 ends first,
	// with 5000 bytes, on worker 1; task 2, which will end with 100, runs
	// on worker 2 (no core idles); task 3 reads both.
	pair := []step{
		{join(1, one), nil},
		{join(2, one), nil},
		{temps(11, 12), nil},
		{submit(files(task(1, one), nil, ids(11)), files(task(2, one), nil, ids(12)), files(task(3, one), ids(11, 12), nil)),
			acts(dispatch(1, 1, 1), dispatch(2, 1, 2))},
		{kept(1, 1, 1, 5000, 11), acts(success(1, 1, 1))},
	}
	// Worker 1 holds file 31; worker 2 holds nothing.
	busy := []step{{uploads, nil}, {cached(1, one, 31), nil}, {join(2, one), nil}}
	tests := []struct {
		name      string
		placement core.Placement
		steps     []step
	}{
		{
			// The second worker starts the other family instead of taking
			// map 2, the head of the queue: each reduce finds both its
			// inputs where it runs, and nothing moves.
			name: "siblings share a worker, and their consumer moves nothing",
			steps: []step{
				{join(1, one), nil},
				{join(2, one), nil},
				{temps(11, 12, 13, 14), nil},
				{mapReduce, acts(dispatch(1, 1, 1), dispatch(3, 1, 2))},
				{kept(1, 1, 1, 5000, 11), acts(success(1, 1, 1), dispatch(2, 1, 1))},
				{kept(3, 1, 2, 5000, 13), acts(success(3, 1, 2), dispatch(4, 1, 2))},
				{kept(2, 1, 1, 5000, 12), acts(success(2, 1, 1), dispatch(5, 1, 1))},
				{kept(4, 1, 2, 5000, 14), acts(success(4, 1, 2), dispatch(6, 1, 2))},
			},
		},
		{
			// Before #11: maps alternate between the workers, and each
			// reduce pulls one of its two inputs from the other.
			name:      "PlaceFree: siblings alternate, and their consumer pulls",
			placement: core.PlaceFree,
			steps: []step{
				{join(1, one), nil},
				{join(2, one), nil},
				{temps(11, 12, 13, 14), nil},
				{mapReduce, acts(dispatch(1, 1, 1), dispatch(2, 1, 2))},
				{kept(1, 1, 1, 5000, 11), acts(success(1, 1, 1), dispatch(3, 1, 1))},
				{kept(2, 1, 2, 5000, 12), acts(success(2, 1, 2), fetch(1, 2, 11, peer(1), 5000))},
			},
		},
		{
			// One family of four and two workers: the second worker has no
			// family of its own to start, so it takes a sibling rather
			// than idle.
			name:  "a worker takes a sibling rather than idle",
			steps: familyOfFour(one),
		},
		{
			// Task 3 holds 100 bytes on each worker, a tie: it goes to
			// worker 2, where its sibling 4 runs, so that their consumer
			// 5 finds both its inputs there.
			name: "a tie on bytes present goes where the siblings produce",
			steps: []step{
				tie[0], tie[1], tie[2], tie[3],
				{tie[4].ev, acts(dispatch(4, 1, 2), fetch(1, 2, 31, peer(1), 100), fetch(2, 2, 32, cache, 100))},
				{fetched(2, 100), nil},
				{fetched(1, 100), acts(dispatch(3, 1, 2))},
			},
		},
		{
			name:      "PlaceFree: a tie on bytes present goes to the lower ID",
			placement: core.PlaceFree,
			steps: []step{
				tie[0], tie[1], tie[2], tie[3],
				{tie[4].ev, acts(dispatch(4, 1, 2), fetch(1, 1, 31, cache, 100), fetch(2, 1, 32, peer(2), 100))},
			},
		},
		{
			// Worker 2 ends task 2, which makes task 3 ready; worker 1,
			// idle, holds 5000 of its bytes, worker 2 only 100: worker 2
			// leaves task 3 to worker 1.
			name: "a freed worker leaves a consumer to an idle one that holds more of its inputs",
			steps: []step{
				pair[0], pair[1], pair[2], pair[3], pair[4],
				{kept(2, 1, 2, 100, 12), acts(success(2, 1, 2), fetch(1, 1, 12, peer(2), 100))},
			},
		},
		{
			name:      "PlaceFree: a freed worker takes the consumer and pulls the larger input",
			placement: core.PlaceFree,
			steps: []step{
				pair[0], pair[1], pair[2], pair[3], pair[4],
				{kept(2, 1, 2, 100, 12), acts(success(2, 1, 2), fetch(1, 2, 11, peer(1), 5000))},
			},
		},
		{
			// Task 1 runs on worker 1 when its sibling 2 and their consumer
			// 3 come in a later batch: worker 1 is the family's home. Worker
			// 2, freed first, runs task 5 rather than task 2, the head.
			name: "a producer of an earlier batch gives its family a home",
			steps: []step{
				{join(1, one), nil},
				{join(2, one), nil},
				{temps(11, 12), nil},
				{submit(files(task(1, one), nil, ids(11)), task(4, one)), acts(dispatch(1, 1, 1), dispatch(4, 1, 2))},
				{submit(files(task(2, one), nil, ids(12)), task(5, one), files(task(3, one), ids(11, 12), nil)), nil},
				{ok(4, 1, 2), acts(success(4, 1, 2), dispatch(5, 1, 2))},
				{kept(1, 1, 1, 5000, 11), acts(success(1, 1, 1), dispatch(2, 1, 1))},
				{kept(2, 1, 1, 5000, 12), acts(success(2, 1, 1), dispatch(3, 1, 1))},
			},
		},
		{
			// Task 2 reads 5000 bytes cached on worker 1, which runs task 1:
			// worker 2 runs task 3 meanwhile, and task 2 waits for worker 1.
			name: "a consumer waits for its input's worker while the free one runs another task",
			steps: []step{
				busy[0], busy[1], busy[2],
				{submit(prio(task(1, one), 1), files(task(2, one), ids(31), nil), task(3, one)), acts(dispatch(1, 1, 1), dispatch(3, 1, 2))},
				{ok(1, 1, 1), acts(success(1, 1, 1), fetch(1, 1, 31, cache, 100))},
				{fetched(1, 100), acts(dispatch(2, 1, 1))},
			},
		},
		{
			name:      "PlaceFree: a consumer goes to the free worker and pulls its input",
			placement: core.PlaceFree,
			steps: []step{
				busy[0], busy[1], busy[2],
				{submit(prio(task(1, one), 1), files(task(2, one), ids(31), nil), task(3, one)), acts(dispatch(1, 1, 1), fetch(1, 2, 31, peer(1), 100))},
			},
		},
		{
			// With no other task queued, worker 2 takes it rather than idle.
			name: "a consumer goes to the free worker when nothing else waits",
			steps: []step{
				busy[0], busy[1], busy[2],
				{submit(prio(task(1, one), 1), files(task(2, one), ids(31), nil)), acts(dispatch(1, 1, 1), fetch(1, 2, 31, peer(1), 100))},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := core.New()
			c.SetPlacement(tc.placement)
			compareSteps(t, c, tc.steps, false)
		})
	}
}
