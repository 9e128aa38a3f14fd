package core_test

import (
	"testing"
	"time"

	"trellis/internal/core"
)

const ttl = 10 * time.Second

func ask(id core.LeaseID, session string, lib core.LibID, slots int32) core.LeaseRequested {
	return core.LeaseRequested{Lease: id, Session: session, Lib: lib, Slots: slots, TTL: ttl}
}

func granted(id core.LeaseID, session string, lib core.LibID, w core.WorkerID, n uint64, slots int32, until time.Duration) core.LeaseGranted {
	return core.LeaseGranted{Lease: id, Session: session, Lib: lib, Worker: w, Instance: inst(n), Slots: slots, Until: until}
}

func leaseEnded(id core.LeaseID, session string, w core.WorkerID, n uint64, why string) core.LeaseEnded {
	return core.LeaseEnded{Lease: id, Session: session, Worker: w, Instance: inst(n), Why: why}
}

// busyUntil returns the steps of a lease on which a direct call ends
// after each Tick, once a second up to until.
func busyUntil(id core.LeaseID, until time.Duration) []step {
	var steps []step
	for now := time.Second; now <= until; now += time.Second {
		steps = append(steps, step{core.Tick{Now: now}, nil}, step{core.DirectCallEnded{Lease: id, Kind: core.Success}, nil})
	}
	return steps
}

func TestLeases(t *testing.T) {
	lib := core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 3}
	// up: one worker, one ready instance of lib with 3 free slots, at time 0.
	up := []step{
		{join(1, res(4000, 4000)), nil},
		{lib, nil},
		{submit(callOf(1, 7, 0)), acts(start(1, 1, 1, 7))},
		{ready(1, 1), acts(inSlot(1, 1, 1, 1))},
		{ok(1, 1, 1), acts(success(1, 1, 1))},
	}
	with := func(steps ...step) []step { return append(append([]step(nil), up...), steps...) }
	runScenarios(t, []scenario{
		{
			// A lease takes free slots; the calls the core places get the
			// rest, and wait while the lease holds them: the instance is
			// never over-committed.
			name: "leased slots count as busy",
			steps: with(
				step{ask(1, "s", 7, 2), acts(granted(1, "s", 7, 1, 1, 2, ttl))},
				step{submit(callOf(2, 7, 0), callOf(3, 7, 0)), acts(inSlot(2, 1, 1, 1), start(2, 1, 1, 7))},
				step{core.LeaseReleased{Lease: 1}, acts(leaseEnded(1, "s", 1, 1, "released"), inSlot(3, 1, 1, 1))},
			),
		},
		{
			// A lease gets at most the free slots of the freest instance.
			name: "granted at most the free slots",
			steps: with(
				step{ask(1, "s", 7, 5), acts(granted(1, "s", 7, 1, 1, 3, ttl))},
				step{ask(2, "s", 7, 1), acts(core.LeaseRefused{Lease: 2, Why: "no ready instance of library 7 has a free slot"})},
			),
		},
		{
			// Calls the core queued keep their turn: no lease while they wait.
			name: "no lease while calls wait",
			steps: with(
				step{ask(1, "s", 7, 3), acts(granted(1, "s", 7, 1, 1, 3, ttl))},
				step{submit(callOf(2, 7, 0)), acts(start(2, 1, 1, 7))},
				step{ask(2, "s", 7, 1), acts(core.LeaseRefused{Lease: 2, Why: "1 calls of library 7 wait for a slot"})},
			),
		},
		{
			name: "refusals",
			steps: with(
				step{ask(1, "s", 8, 1), acts(core.LeaseRefused{Lease: 1, Why: "library 8 is not installed"})},
				step{ask(1, "s", 7, 0), acts(core.LeaseRefused{Lease: 1, Why: "a lease needs at least one slot and a time to live (asked: 0 slots for 10s)"})},
				step{ask(1, "s", 7, 1), acts(granted(1, "s", 7, 1, 1, 1, ttl))},
				step{ask(1, "s", 7, 1), acts(core.LeaseRefused{Lease: 1, Why: "lease 1 is live already"})},
			),
		},
		{
			// Each direct call's end renews the lease for its TTL from the
			// last Tick; a lease not renewed expires on a Tick past Until.
			// Direct calls count as finished calls.
			name: "renewal and expiry",
			steps: with(
				step{ask(1, "s", 7, 1), acts(granted(1, "s", 7, 1, 1, 1, ttl))},
				step{core.Tick{Now: 6 * time.Second}, nil},
				step{core.DirectCallEnded{Lease: 1, Kind: core.Success}, nil},
				step{core.Tick{Now: 15 * time.Second}, nil}, // renewed until 16 s
				step{core.Tick{Now: 16 * time.Second}, acts(leaseEnded(1, "s", 1, 1, "expired"))},
				step{core.DirectCallEnded{Lease: 1, Kind: core.Failed}, nil}, // ran before it ended: counted
			),
			counts: &counts{Running: 1, Finished: 3},
			tally:  &core.Tally{Calls: core.StateCounts{Finished: 3}, Instances: core.StateCounts{Running: 1}},
		},
		{
			// Direct calls counted from an earlier life (a journal
			// snapshot's count) are finished calls, as each end is, and
			// renew no lease.
			name: "counted from an earlier life",
			steps: with(
				step{ask(1, "s", 7, 1), acts(granted(1, "s", 7, 1, 1, 1, ttl))},
				step{core.DirectCallsCounted{Calls: 5}, nil},
				step{core.Tick{Now: 6 * time.Second}, nil},
				step{core.DirectCallsCounted{Calls: 2}, nil},                                      // not a renewal
				step{core.Tick{Now: 10 * time.Second}, acts(leaseEnded(1, "s", 1, 1, "expired"))}, // its first Until
			),
			counts: &counts{Running: 1, Finished: 8},
			tally:  &core.Tally{Calls: core.StateCounts{Finished: 8}, Instances: core.StateCounts{Running: 1}},
		},
		{
			// A lease is not renewed while calls of its library wait: one
			// whose calls keep ending runs out, and its slot goes to them.
			name: "no renewal while calls wait",
			steps: with(append([]step{
				{ask(1, "s", 7, 3), acts(granted(1, "s", 7, 1, 1, 3, ttl))},
				{core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 3, Max: 1}, nil},
				{submit(callOf(2, 7, 0)), nil},
			}, append(busyUntil(1, 9*time.Second),
				step{core.Tick{Now: 10 * time.Second}, acts(leaseEnded(1, "s", 1, 1, "expired"), inSlot(2, 1, 1, 1))},
			)...)...),
		},
		{
			// A lease on which no call ended for two seconds of Tick's
			// clock while calls of its library wait ends then, not at its
			// Until: the calls (the lessee's own, sent through the core,
			// among them) do not wait for an idle lease to run out.
			name: "an idle lease yields to waiting calls",
			steps: with(
				step{ask(1, "s", 7, 3), acts(granted(1, "s", 7, 1, 1, 3, ttl))},
				step{ask(2, "t", 7, 1), acts(core.LeaseRefused{Lease: 2, Why: "no ready instance of library 7 has a free slot"})},
				step{core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 3, Max: 1}, nil},
				step{core.Tick{Now: 5 * time.Second}, nil}, // idle, but no call waits
				step{core.DirectCallEnded{Lease: 1, Kind: core.Success}, nil},
				step{submit(callOf(2, 7, 0), callOf(3, 7, 0)), nil},
				step{core.Tick{Now: 6 * time.Second}, nil},
				step{core.Tick{Now: 7 * time.Second}, acts(leaseEnded(1, "s", 1, 1, "idle while calls of its library wait"), inSlot(2, 1, 1, 1), inSlot(3, 1, 1, 1))},
			),
		},
		{
			name: "ends with its session",
			steps: with(
				step{ask(1, "s", 7, 1), acts(granted(1, "s", 7, 1, 1, 1, ttl))},
				step{ask(2, "t", 7, 1), acts(granted(2, "t", 7, 1, 1, 1, ttl))},
				step{core.SessionEnded{Session: "s"}, acts(leaseEnded(1, "s", 1, 1, "session ended"))},
			),
		},
		{
			// The worker is lost: the instance ends, and its leases with it.
			name: "ends with its worker",
			steps: with(
				step{ask(1, "s", 7, 1), acts(granted(1, "s", 7, 1, 1, 1, ttl))},
				step{core.WorkerLeft{Worker: 1, Reason: "gone"}, acts(leaseEnded(1, "s", 1, 1, "instance ended: worker 1 lost: gone"))},
			),
			counts: &counts{Finished: 1},
		},
		{
			name: "ends when its worker drains",
			steps: with(
				step{ask(1, "s", 7, 1), acts(granted(1, "s", 7, 1, 1, 1, ttl))},
				step{core.WorkerDraining{Worker: 1}, acts(leaseEnded(1, "s", 1, 1, "worker draining"))},
				step{ask(2, "s", 7, 1), acts(core.LeaseRefused{Lease: 2, Why: "no ready instance of library 7 has a free slot"})},
			),
		},
		{
			name: "ends when its instance crashes",
			steps: with(
				step{ask(1, "s", 7, 1), acts(granted(1, "s", 7, 1, 1, 1, ttl))},
				step{core.InstanceEnded{Instance: inst(1), Attempt: 1, Worker: 1, Outcome: outcome(core.Failed, "exit status 2")}, acts(leaseEnded(1, "s", 1, 1, "instance ended: exit status 2"))},
			),
		},
		{
			name: "ends when its library is removed",
			steps: with(
				step{ask(1, "s", 7, 1), acts(granted(1, "s", 7, 1, 1, 1, ttl))},
				step{core.LibraryRemoved{Lib: 7, Why: "removed by the operator"}, acts(leaseEnded(1, "s", 1, 1, "library removed: removed by the operator"), core.Stop{Instance: inst(1), Worker: 1})},
				step{ask(2, "s", 7, 1), acts(core.LeaseRefused{Lease: 2, Why: "removed by the operator"})},
			),
		},
		{
			// An instance with a live lease is not idle: it is not stopped
			// to make room for waiting tasks.
			name: "a leased instance is not idle",
			steps: with(
				step{core.LeaseRequested{Lease: 1, Session: "s", Lib: 7, Slots: 1, TTL: time.Hour}, acts(granted(1, "s", 7, 1, 1, 1, time.Hour))},
				step{submit(task(9, res(4000, 100))), nil},
				step{core.Tick{Now: time.Second}, nil},
				step{core.Tick{Now: 2 * time.Second}, nil},
				step{core.Tick{Now: 3 * time.Second}, nil},
				step{core.LeaseReleased{Lease: 1}, acts(leaseEnded(1, "s", 1, 1, "released"))},
				step{core.Tick{Now: 4 * time.Second}, nil},
				step{core.Tick{Now: 5 * time.Second}, acts(core.Stop{Instance: inst(1), Worker: 1})},
			),
		},
	})
}
