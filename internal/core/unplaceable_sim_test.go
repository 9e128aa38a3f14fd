package core_test

import (
	"fmt"
	"sync"
	"testing"

	"trellis/internal/core/coretest"
)

// unplaceableScenarios have small workers that come and go, so that tasks
// (and calls, whose libraries need more than some workers have) are often
// larger than every open worker, and a third of them give up after a few
// ticks (Task.UnplaceableTimeout).
var unplaceableScenarios = []struct {
	name string
	cfg  coretest.Config
}{
	{
		name: "tasks",
		cfg: coretest.Config{
			Workers: 3, Tasks: 1000, UnplaceableFraction: 0.3,
			LossRate: 0.03, DrainRate: 0.03, CancelRate: 0.02, FailRate: 0.1, StaleRate: 0.05, TickRate: 0.1,
			DepFraction: 0.5, BadFraction: 0.01, GPUFraction: 0.5, AfterFraction: 0.2,
		},
	},
	{
		name: "calls",
		cfg: coretest.Config{
			Workers: 3, Tasks: 800, UnplaceableFraction: 0.3,
			Libraries: 4, CallFraction: 0.6, LibInputFraction: 0.3, BrokenLibraries: 1, SetupFailRate: 0.05, CrashRate: 0.01,
			LossRate: 0.03, DrainRate: 0.03, CancelRate: 0.02, FailRate: 0.1, StaleRate: 0.05, TickRate: 0.1,
			DepFraction: 0.3, GPUFraction: 0.5,
		},
	},
	{
		name: "files",
		cfg: coretest.Config{
			Workers: 3, Tasks: 600, UnplaceableFraction: 0.3,
			TempFraction: 0.7, OriginFraction: 0.2, DerivedFraction: 0.2, MaxReplicas: 2,
			ReplicaLossRate: 0.03, TransferFailRate: 0.03, RejoinFraction: 0.3,
			LossRate: 0.03, DrainRate: 0.02, CancelRate: 0.01, FailRate: 0.05, StaleRate: 0.02, TickRate: 0.1,
			DepFraction: 0.6, GPUFraction: 0.3,
		},
	},
}

// TestSimulationUnplaceable runs the unplaceable scenarios. Besides the
// invariants of the other simulations, every step checks that an
// Unplaceable names queued tasks no open worker could run, comes only
// when their reason appears, changes or clears (one action for the tasks
// told together, never two in a row of one reason), and is cleared once a worker
// could; that every ready task no open worker could run was told why; and
// that a Tick ends exactly the tasks unplaceable for their timeout. See
// coretest.
func TestSimulationUnplaceable(t *testing.T) {
	for _, sc := range unplaceableScenarios {
		t.Run(sc.name, func(t *testing.T) {
			var mu sync.Mutex
			var total coretest.Stats
			t.Cleanup(func() {
				if len(seeds()) > 1 && (total.Unplaceable == 0 || total.UnplaceableCleared == 0 || total.UnplaceableTimedOut == 0) {
					t.Errorf("over every seed: %d tasks told unplaceable, %d cleared, %d timed out; want some of each",
						total.Unplaceable, total.UnplaceableCleared, total.UnplaceableTimedOut)
				}
				if told := total.Unplaceable + total.UnplaceableCleared; told > 0 && total.UnplaceableActions >= told {
					t.Errorf("over every seed: %d tasks told in %d Unplaceable actions; want fewer actions than tasks (one tells many)",
						told, total.UnplaceableActions)
				}
			})
			for _, seed := range seeds() {
				t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
					t.Parallel()
					cfg := sc.cfg
					cfg.Seed = seed
					cfg.StrictPlacement = true
					cfg.Trace = trace()
					stats := coretest.Run(t, cfg)
					t.Logf("seed %d: %v", seed, stats)
					mu.Lock()
					defer mu.Unlock()
					total.Unplaceable += stats.Unplaceable
					total.UnplaceableCleared += stats.UnplaceableCleared
					total.UnplaceableTimedOut += stats.UnplaceableTimedOut
					total.UnplaceableActions += stats.UnplaceableActions
				})
			}
		})
	}
}
