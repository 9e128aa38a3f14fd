package core

import (
	"fmt"
	"sort"
	"time"
)

// Leases: slots of a ready library instance that the core lends to a client
// session, which sends calls straight to the instance's worker (see
// docs/direct-calls.md). A leased slot counts as busy (instance.free), so
// that the calls the core places and those sent on leases never exceed an
// instance's slots. The core learns each direct call's end
// (DirectCallEnded): it counts it as a finished call and renews the lease.
// A lease ends when it is not renewed before its Until (on Tick's clock),
// when no call ended on it for leaseIdleYield while calls of its library
// wait in the core's queue (an idle lease should not keep them waiting
// until its Until: the lessee's own calls sent through the core among
// them), when its client releases it or its session ends, and when its
// instance stops, ends or loses its worker, or that worker drains.

// LeaseID names a lease. The caller chooses it (unique over the core's
// life), as it does task IDs.
type LeaseID uint64

// LeaseRequested: client session Session asks for up to Slots slots of a
// ready instance of Lib, for TTL at a time (each direct call's end renews
// it for TTL more). The core answers with LeaseGranted or LeaseRefused.
type LeaseRequested struct {
	Lease   LeaseID
	Session string
	Lib     LibID
	Slots   int32
	TTL     time.Duration
}

// LeaseReleased: the client no longer uses the lease.
type LeaseReleased struct{ Lease LeaseID }

// DirectCallEnded: a call sent on Lease ended on its worker, with Kind.
// The core counts it as a finished call (whether or not the lease is still
// live: the call ran), and renews a live lease unless calls of its
// library wait in the core's queue (then the lease runs out, and its slots
// go to them).
type DirectCallEnded struct {
	Lease LeaseID
	Kind  Kind
}

// DirectCallsCounted: Calls direct calls ended in an earlier life of the
// caller, which kept their count instead of one DirectCallEnded each (a
// manager's journal snapshot). The core counts them as finished calls, as
// it counted each DirectCallEnded; they renew no lease (their leases were
// of that earlier life).
type DirectCallsCounted struct {
	Calls uint64
}

func (LeaseRequested) isEvent()     {}
func (LeaseReleased) isEvent()      {}
func (DirectCallEnded) isEvent()    {}
func (DirectCallsCounted) isEvent() {}

// LeaseGranted: Slots slots of Instance, on Worker, are lent to Session
// until Until on Tick's clock (renewed by each direct call's end).
type LeaseGranted struct {
	Lease    LeaseID
	Session  string
	Lib      LibID
	Worker   WorkerID
	Instance InstanceID
	Slots    int32
	Until    time.Duration
}

// LeaseRefused: a LeaseRequested got no slots; Why says why.
type LeaseRefused struct {
	Lease LeaseID
	Why   string
}

// LeaseEnded: a lease ended (Why: expired, idle while calls of its
// library wait, released, session ended, instance stopped or ended,
// worker lost or draining); its slots are the
// core's again. Calls sent on it and not yet ended go through the core.
type LeaseEnded struct {
	Lease    LeaseID
	Session  string
	Worker   WorkerID
	Instance InstanceID
	Why      string
}

func (LeaseGranted) isAction() {}
func (LeaseRefused) isAction() {}
func (LeaseEnded) isAction()   {}

// lease is the core's state of one lease.
type lease struct {
	id      LeaseID
	session string
	inst    *instance
	slots   int32
	ttl     time.Duration
	until   time.Duration
	lastEnd time.Duration // Tick's clock at its last direct call's end, or at its grant
}

// leaseIdleYield is how long a lease may go without a direct call's end
// while calls of its library wait in the queue: then it ends, and its
// slots go to them. On Tick's clock, which the manager advances once a
// second and a call's end reads as of the Tick before: two seconds are an
// idle time of one to two. A lease whose calls keep ending is not
// renewed while calls wait, and runs out at its Until, as before; one
// whose call runs for longer may end under it, as at its Until (the
// worker finishes the call, and the instance lines up further calls
// behind it: libhost).
const leaseIdleYield = 2 * time.Second

// leases is the core's table of live leases.
type leases struct {
	byID   map[LeaseID]*lease
	direct uint64 // direct calls ended (see Stats.Direct)
}

func (c *Core) requestLease(ev LeaseRequested) {
	refuse := func(why string) { c.emit(LeaseRefused{Lease: ev.Lease, Why: why}) }
	lib := c.libs[ev.Lib]
	switch {
	case c.leases.byID[ev.Lease] != nil:
		refuse(fmt.Sprintf("lease %d is live already", ev.Lease))
		return
	case ev.Slots < 1 || ev.TTL <= 0:
		refuse(fmt.Sprintf("a lease needs at least one slot and a time to live (asked: %d slots for %v)", ev.Slots, ev.TTL))
		return
	case lib == nil:
		refuse(fmt.Sprintf("library %d is not installed", ev.Lib))
		return
	case lib.broken != "":
		refuse(lib.broken)
		return
	case len(lib.waiting.tasks) > 0:
		refuse(fmt.Sprintf("%d calls of library %d wait for a slot", len(lib.waiting.tasks), ev.Lib))
		return
	}
	inst := lib.freest()
	if inst == nil {
		refuse(fmt.Sprintf("no ready instance of library %d has a free slot", ev.Lib))
		return
	}
	if c.leases.byID == nil {
		c.leases.byID = make(map[LeaseID]*lease)
	}
	l := &lease{id: ev.Lease, session: ev.Session, inst: inst, slots: min(ev.Slots, inst.free), ttl: ev.TTL, until: c.now + ev.TTL, lastEnd: c.now}
	inst.free -= l.slots
	inst.leased += l.slots
	inst.lastUse = c.ticks
	c.leases.byID[l.id] = l
	c.emit(LeaseGranted{Lease: l.id, Session: l.session, Lib: lib.id, Worker: inst.t.worker.id, Instance: inst.id, Slots: l.slots, Until: l.until})
}

func (c *Core) directCallEnded(ev DirectCallEnded) {
	c.counts[classCall][Finished]++
	c.leases.direct++
	l := c.leases.byID[ev.Lease]
	if l == nil {
		return
	}
	l.inst.lastUse = c.ticks
	l.lastEnd = c.now
	if len(l.inst.lib.waiting.tasks) == 0 {
		l.until = c.now + l.ttl
	}
}

func (c *Core) directCallsCounted(ev DirectCallsCounted) {
	c.counts[classCall][Finished] += int(ev.Calls)
	c.leases.direct += ev.Calls
}

// endLease gives the slots of l back to its instance.
func (c *Core) endLease(l *lease, why string) {
	delete(c.leases.byID, l.id)
	l.inst.free += l.slots
	l.inst.leased -= l.slots
	l.inst.lastUse = c.ticks
	c.libDirty(l.inst.lib)
	c.emit(LeaseEnded{Lease: l.id, Session: l.session, Worker: l.inst.t.worker.id, Instance: l.inst.id, Why: why})
}

// endLeasesIf ends, in ID order, the leases for which end is true.
func (c *Core) endLeasesIf(why string, end func(*lease) bool) {
	if len(c.leases.byID) == 0 {
		return
	}
	var ids []LeaseID
	for id, l := range c.leases.byID {
		if end(l) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		c.endLease(c.leases.byID[id], why)
	}
}

// endInstanceLeases ends the leases on inst, which stops or ended.
func (c *Core) endInstanceLeases(inst *instance, why string) {
	if inst.leased > 0 {
		c.endLeasesIf(why, func(l *lease) bool { return l.inst == inst })
	}
}

// expireLeases ends the leases whose Until has passed, then those idle
// for leaseIdleYield while calls of their library wait.
func (c *Core) expireLeases() {
	c.endLeasesIf("expired", func(l *lease) bool { return l.until <= c.now })
	c.endLeasesIf(whyIdleWhileCallsWait, func(l *lease) bool {
		return len(l.inst.lib.waiting.tasks) > 0 && c.now-l.lastEnd >= leaseIdleYield
	})
}

// whyIdleWhileCallsWait is LeaseEnded.Why for a lease ended by
// leaseIdleYield.
const whyIdleWhileCallsWait = "idle while calls of its library wait"

// LeaseCount returns how many leases are live and the slots they hold.
func (c *Core) LeaseCount() (leases int, slots int32) {
	for _, l := range c.leases.byID {
		slots += l.slots
	}
	return len(c.leases.byID), slots
}
