package coretest

// Leases: slots of ready instances lent to client sessions for direct
// calls (see core/leases.go). With Config.LeaseRate set, the run asks for
// leases, releases them and reports direct calls' ends on them, and checks
// that a lease holds only free slots of a ready instance that is not
// stopping, on a worker that is not draining (calls the core places and
// leased slots together never exceed an instance's slots); that no lease
// outlives its instance, its worker's drain or its session; that a lease
// expires on the first Tick past its last renewal's TTL and never before
// its first; that one ended as idle while calls wait saw no call end for
// leaseIdleYield and had calls of its library waiting; and that the core
// counts each direct call's end once among finished calls.

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"trellis/internal/core"
)

// simLease is the model of a live lease.
type simLease struct {
	id      core.LeaseID
	session string
	inst    *simInst
	slots   int
	lo, hi  time.Duration // it expires on the first Tick at or past hi, and not before lo
	ttl     time.Duration
	lastEnd time.Duration // the model's clock at its grant or last direct call's end
}

// leaseIdleYield is how long a lease may go without a direct call's end
// while calls of its library wait, on Tick's clock, and whyIdle the
// LeaseEnded.Why of a lease that ends so (core/leases.go).
const (
	leaseIdleYield = 2 * time.Second
	whyIdle        = "idle while calls of its library wait"
)

// leaseState is the harness's bookkeeping of leases.
type leaseState struct {
	live   map[core.LeaseID]*simLease
	ids    []core.LeaseID // ever asked for, for random picks of live and ended ones
	next   core.LeaseID
	direct int // direct calls' ends reported: the core counts each as a finished call
}

// leased returns the slots of inst that leases hold.
func (s *sim) leased(inst *simInst) int {
	n := 0
	for _, l := range s.ls.live {
		if l.inst == inst {
			n += l.slots
		}
	}
	return n
}

// leaseStep asks for a lease, releases one, reports a direct call's end,
// or counts a few ended in an earlier life (DirectCallsCounted).
func (s *sim) leaseStep() {
	if len(s.l.libs) == 0 {
		return
	}
	r := s.rng
	switch u := r.IntN(10); {
	case u < 5 || len(s.ls.ids) == 0:
		s.ls.next++
		s.ls.ids = append(s.ls.ids, s.ls.next)
		sess := fmt.Sprintf("lessee%d", r.IntN(3))
		if len(s.d.sessions) > 0 && r.IntN(2) == 0 {
			sess = pick(r, s.d.sessions)
		}
		lib := s.l.libs[r.IntN(len(s.l.libs))].spec.Lib
		if len(s.l.live) > 0 && r.IntN(4) != 0 {
			lib = s.l.live[r.IntN(len(s.l.live))].lib.spec.Lib // one that runs: more grants
		}
		// TTLs beyond leaseIdleYield, so that idle leases may yield.
		s.do(core.LeaseRequested{Lease: s.ls.next, Session: sess, Lib: lib, Slots: int32(1 + r.IntN(3)), TTL: time.Duration(1+r.IntN(4)) * tickEvery})
	case u < 6:
		s.do(core.LeaseReleased{Lease: pick(r, s.ls.ids)})
	case u < 9:
		s.do(core.DirectCallEnded{Lease: pick(r, s.ls.ids), Kind: core.Success})
	default: // as a replayed journal snapshot counts them
		s.do(core.DirectCallsCounted{Calls: uint64(1 + r.IntN(4))})
	}
}

// expectLease records what a lease event must do in the model.
func (s *sim) expectLease(ev core.Event) {
	switch ev := ev.(type) {
	case core.DirectCallEnded:
		s.ls.direct++
		s.stats.DirectCalls++
		if l := s.ls.live[ev.Lease]; l != nil {
			l.hi = s.now + l.ttl // renewed, unless calls of its library wait
			l.lastEnd = s.now
		}
	case core.DirectCallsCounted: // counted, renewing no lease
		s.ls.direct += int(ev.Calls)
		s.stats.DirectCalls += int(ev.Calls)
	}
}

// applyLease checks a lease action and applies it to the model.
func (s *sim) applyLease(a core.Action) {
	switch a := a.(type) {
	case core.LeaseGranted:
		ev, ok := s.ev.(core.LeaseRequested)
		inst := s.l.insts[a.Instance]
		switch {
		case !ok || ev.Lease != a.Lease || ev.Session != a.Session || ev.Lib != a.Lib:
			s.failf("%+v answers no request (event %s)", a, describe(s.ev))
		case inst == nil || inst.worker.id != a.Worker || inst.lib.spec.Lib != a.Lib:
			s.failf("%+v: no such instance of the library runs on that worker", a)
		case !inst.ready || inst.stopping || inst.worker.draining:
			s.failf("%+v of an instance that is not ready, or stopping (%v), or on a draining worker (%v)", a, inst.stopping, inst.worker.draining)
		case a.Slots < 1 || a.Slots > ev.Slots:
			s.failf("%+v: %d slots asked for", a, ev.Slots)
		case len(inst.calls)+s.leased(inst)+int(a.Slots) > inst.lib.slots():
			s.failf("%+v over-commits the instance: %d calls run and %d slots are leased of its %d", a, len(inst.calls), s.leased(inst), inst.lib.slots())
		case a.Until != s.now+ev.TTL:
			s.failf("%+v: want Until %v (the last Tick's %v plus the TTL)", a, s.now+ev.TTL, s.now)
		}
		if s.ls.live == nil {
			s.ls.live = make(map[core.LeaseID]*simLease)
		}
		s.ls.live[a.Lease] = &simLease{id: a.Lease, session: a.Session, inst: inst, slots: int(a.Slots), lo: a.Until, hi: a.Until, ttl: ev.TTL, lastEnd: s.now}
		s.stats.Leases++
	case core.LeaseRefused:
		ev, ok := s.ev.(core.LeaseRequested)
		if !ok || ev.Lease != a.Lease {
			s.failf("%+v answers no request (event %s)", a, describe(s.ev))
		}
		if strings.HasPrefix(a.Why, "no ready instance") && !s.cfg.dataOn() {
			for _, inst := range s.l.live {
				if inst.lib.spec.Lib == ev.Lib && inst.ready && !inst.stopping && !inst.worker.draining && len(inst.calls)+s.leased(inst) < inst.lib.slots() {
					s.failf("%+v: instance %d on worker %d has %d calls and %d leased of %d slots", a, inst.id, inst.worker.id, len(inst.calls), s.leased(inst), inst.lib.slots())
				}
			}
		}
	case core.LeaseEnded:
		l := s.ls.live[a.Lease]
		switch {
		case l == nil:
			s.failf("%+v of a lease that is not live", a)
		case l.session != a.Session || l.inst.id != a.Instance || l.inst.worker.id != a.Worker:
			s.failf("%+v: the lease is %+v", a, *l)
		case a.Why == "expired" && (!s.isTick() || s.now < l.lo):
			s.failf("%+v before its first Until %v (now %v, event %s)", a, l.lo, s.now, describe(s.ev))
		case a.Why == whyIdle && (!s.isTick() || s.now-l.lastEnd < leaseIdleYield):
			s.failf("%+v: a call ended on it at %v (now %v, event %s)", a, l.lastEnd, s.now, describe(s.ev))
		case a.Why == whyIdle && !s.callWaits(l.inst.lib):
			s.failf("%+v: no call of library %d waits", a, l.inst.lib.spec.Lib)
		}
		if a.Why == whyIdle {
			s.stats.LeasesYielded++
		}
		delete(s.ls.live, a.Lease)
		s.stats.LeasesEnded++
	}
}

// callWaits reports whether a call of lib is submitted and neither done
// nor in an instance.
func (s *sim) callWaits(lib *simLib) bool {
	for _, t := range s.tasks {
		if t.submitted && !t.done && t.inst == nil && t.spec.Role == core.Call && t.spec.Lib == lib.spec.Lib {
			return true
		}
	}
	return false
}

func (s *sim) isTick() bool { _, ok := s.ev.(core.Tick); return ok }

// checkLeases checks, after a step, that every lease is on a live, ready
// instance that is not stopping, on a worker that is not draining, of a
// session that has not ended; that it expired if its time came; and that
// no instance has more calls and leased slots than slots.
func (s *sim) checkLeases() {
	for _, id := range slices.Sorted(func(yield func(core.LeaseID) bool) {
		for id := range s.ls.live {
			if !yield(id) {
				return
			}
		}
	}) {
		l := s.ls.live[id]
		inst := l.inst
		switch {
		case s.l.insts[inst.id] != inst:
			s.failf("lease %d outlives its instance %d (event %s)", id, inst.id, describe(s.ev))
		case inst.stopping || inst.worker.draining || inst.worker.gone:
			s.failf("lease %d lives on instance %d: stopping %v, worker draining %v gone %v", id, inst.id, inst.stopping, inst.worker.draining, inst.worker.gone)
		case s.d.ended[l.session]:
			s.failf("lease %d outlives its session %q", id, l.session)
		case s.isTick() && s.now >= l.hi:
			s.failf("lease %d not renewed since it was due at %v lives on at %v", id, l.hi, s.now)
		}
	}
	for _, inst := range s.l.live {
		if n := s.leased(inst); n > 0 && len(inst.calls)+n > inst.lib.slots() {
			s.failf("instance %d runs %d calls and leases %d slots of its %d", inst.id, len(inst.calls), n, inst.lib.slots())
		}
	}
}

// withoutLeaseEnds returns acts less LeaseEnded actions: a step the model
// expects exactly (a drain) may end leases too, which checkLeases checks.
func withoutLeaseEnds(acts []core.Action) []core.Action {
	if !slices.ContainsFunc(acts, isLeaseEnd) {
		return acts
	}
	return slices.DeleteFunc(slices.Clone(acts), isLeaseEnd)
}

func isLeaseEnd(a core.Action) bool { _, ok := a.(core.LeaseEnded); return ok }
