package core

// Graph-aware placement (#11). The core holds the whole graph, so it can
// place for the bytes a graph will move, not only for those it moves now:
//
//   - Families. The producers whose outputs one consumer reads are a
//     family. The first member placed gives the family a home, its worker;
//     the other members go there as it frees cores, so that the consumer
//     finds its inputs in one place. A worker with free cores and no member
//     of its own families queued starts a family that has no home yet.
//   - Consumers go where the most bytes of their inputs already are (as
//     before); on a tie, to their own family's home, where the bytes their
//     consumer reads will be produced.
//   - No core idles for it. A worker with free cores that finds no task at
//     home there takes the best queued task anyway: a perfect placement is
//     only preferred among tasks of the same priority, never waited for.
//
// Placement PlaceFree turns all of it off (the policy before #11), so that
// the simulation and the benchmarks can compare the bytes both move.

// Placement selects the placement policy (see SetPlacement).
type Placement uint8

// Placement policies.
const (
	// PlaceGraph co-assigns families and places by bytes present, then
	// by bytes that will be produced there. The default.
	PlaceGraph Placement = iota
	// PlaceFree places by bytes present, else on the worker with the most
	// free cores, and a freed worker takes the head of the queue: the
	// policy before #11, kept to measure against.
	PlaceFree
)

// MaxFamily bounds the producers of one family: a consumer that reads more
// (a gather of everything) forms none, as co-assigning its producers would
// serialise them on one worker.
const MaxFamily = 64

// maxUnhomedScan bounds the families without a home that one decision
// looks at past the first: the cost of a decision stays bounded.
const maxUnhomedScan = 8

// maxQueueScan bounds the tasks queued behind the head that one decision
// looks at for one at home on the worker.
const maxQueueScan = 8

// SetPlacement selects the placement policy. Call it before the first Step.
func (c *Core) SetPlacement(p Placement) { c.naive = p == PlaceFree }

// family is the producers whose outputs one consumer reads.
type family struct {
	members []*task  // in the consumer's input order
	next    int      // members before it are placed or finished
	home    WorkerID // where the first member was placed; 0 before
	listed  bool     // in Core.unhomed
}

// formFamilies makes a family of the unplaced producers of each accepted
// task of batch that reads the outputs of two or more (at most MaxFamily)
// tasks. A producer joins the family of the first consumer that reads it.
// A producer of an earlier batch already placed gives the family its home.
func (c *Core) formFamilies(batch []Task, accepted []bool) {
	for i := range batch {
		if !accepted[i] || len(batch[i].Inputs) < 2 {
			continue
		}
		var fam *family
		var home WorkerID
		n := 0
		for _, f := range batch[i].Inputs {
			e := c.files.files[f]
			if e == nil || e.producer == 0 {
				continue
			}
			if n++; n > MaxFamily { // (an input named twice counts twice)
				fam = nil
				break
			}
			p := c.tasks[e.producer]
			if p == nil || p.spec.Role != Plain || p.recreating {
				continue
			}
			switch p.state {
			case Waiting, Ready:
				if _, in := c.famOf[p.spec.ID]; in || p.spec.ID == batch[i].ID {
					continue
				}
				if fam == nil {
					fam = &family{}
				}
				if !containsTask(fam.members, p) {
					fam.members = append(fam.members, p)
				}
			case Staging, Running:
				if home == 0 && p.worker != nil {
					home = p.worker.id
				}
			}
		}
		if fam == nil || len(fam.members) < 2 && home == 0 {
			continue
		}
		if w := c.workers[home]; w != nil {
			fam.home = home
			w.homes = append(w.homes, fam)
		}
		if c.famOf == nil {
			c.famOf = make(map[TaskID]*family)
		}
		for _, p := range fam.members {
			c.famOf[p.spec.ID] = fam
		}
	}
}

func containsTask(ts []*task, t *task) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// listFamily notes that t, made ready, may start its family somewhere.
func (c *Core) listFamily(t *task) {
	if fam := c.famOf[t.spec.ID]; fam != nil && !fam.listed && c.homeOf(fam) == nil {
		if len(c.unhomed) >= max(64, c.unhomedKept) {
			c.unhomed = keepFamilies(c.unhomed, func(f *family) bool {
				keep := c.homeOf(f) == nil && f.pending()
				f.listed = keep
				return keep
			})
			c.unhomedKept = 2 * len(c.unhomed)
		}
		fam.listed = true
		c.unhomed = append(c.unhomed, fam)
	}
}

// keepFamilies returns the families of fs that keep holds for, in order.
// Decisions clean the lists of families as they look at them; this bounds
// them when no decision does.
func keepFamilies(fs []*family, keep func(*family) bool) []*family {
	out := fs[:0]
	for _, f := range fs {
		if keep(f) {
			out = append(out, f)
		}
	}
	clear(fs[len(out):])
	return out
}

// pending reports whether a member of f is queued or waits for inputs.
func (f *family) pending() bool {
	for _, m := range f.members[f.next:] {
		if m.state == Ready || m.state == Waiting {
			return true
		}
	}
	return false
}

// homeOf returns the open worker fam's members go to, or nil.
func (c *Core) homeOf(fam *family) *worker {
	if fam.home == 0 {
		return nil
	}
	if w := c.workers[fam.home]; w != nil && w.index >= 0 {
		return w
	}
	return nil
}

// settleHome gives t's family, if it has no home, w as its home.
func (c *Core) settleHome(t *task, w *worker) {
	if len(c.famOf) == 0 {
		return
	}
	if fam := c.famOf[t.spec.ID]; fam != nil && c.homeOf(fam) == nil {
		fam.home = w.id
		if len(w.homes) >= max(16, w.homesKept) {
			w.homes = keepFamilies(w.homes, func(f *family) bool { return f.home == w.id && f.pending() })
			w.homesKept = 2 * len(w.homes)
		}
		w.homes = append(w.homes, fam)
	}
}

// choose returns what to place now, for w, which h fits: h on w if w is
// a home for it; else h on a worker that is and has room; else a task of
// h's priority at home on w; else h on w (no core idles waiting for a
// better place).
func (c *Core) choose(h *task, w *worker) (*task, *worker) {
	if c.naive || len(c.famOf) == 0 && len(h.spec.Inputs) == 0 || c.atHome(h, w) {
		return h, w
	}
	if x := c.bestWorker(h); x != nil && x != w && c.atHome(h, x) {
		return h, x
	}
	if t := c.alternative(h, w); t != nil {
		return t, w
	}
	return h, w
}

// atHome reports whether w is as good a place for t as any: no other open
// worker that could run t holds more bytes of its inputs, and, unless w
// holds more than t's family's home, that home is w.
func (c *Core) atHome(t *task, w *worker) bool {
	if !c.dataHere(t, w) {
		return false
	}
	if len(c.famOf) == 0 {
		return true
	}
	fam := c.famOf[t.spec.ID]
	if fam == nil || fam.home == w.id {
		return true
	}
	home := c.homeOf(fam)
	if home == nil || !home.total.Fits(t.spec.Resources) {
		return true
	}
	return len(t.spec.Inputs) > 0 && c.inputBytesOn(t, w) > c.inputBytesOn(t, home)
}

// alternative returns a queued task of h's priority that fits w and is at
// home there, from the families w is the home of, then from families
// without a home (the oldest first), then from the first few tasks queued
// with h, or nil.
func (c *Core) alternative(h *task, w *worker) *task {
	for i := 0; i < len(w.homes); {
		fam := w.homes[i]
		if fam.home != w.id {
			w.homes = append(w.homes[:i], w.homes[i+1:]...)
			continue
		}
		t, live := c.member(fam, h, w)
		if t != nil {
			return t
		}
		if !live {
			w.homes = append(w.homes[:i], w.homes[i+1:]...)
			continue
		}
		i++
	}
	for i, scanned := 0, 0; i < len(c.unhomed) && scanned <= maxUnhomedScan; {
		fam := c.unhomed[i]
		homed, live := c.homeOf(fam) != nil, false
		if !homed {
			var t *task
			if t, live = c.member(fam, h, w); t != nil {
				return t
			}
		}
		if i == 0 && (homed || !live) {
			fam.listed = false
			c.unhomed[0] = nil
			c.unhomed = c.unhomed[1:]
			continue
		}
		i++
		scanned++
	}
	// One of the first few of h's queue; if h's inputs are elsewhere,
	// one whose are not, even of a family at home elsewhere: it moves
	// one output later, where h would move its inputs now.
	q := c.ready.byNeed[h.spec.Resources]
	var steal *task
	stealing := len(h.spec.Inputs) > 0 && !c.dataHere(h, w)
	for _, t := range q.tasks[1:min(len(q.tasks), 1+maxQueueScan)] {
		if t.spec.Priority != h.spec.Priority {
			continue
		}
		if c.atHome(t, w) {
			return t
		}
		if stealing && steal == nil && c.dataHere(t, w) {
			steal = t
		}
	}
	return steal
}

// member returns a queued member of fam that w could take instead of h:
// of h's priority, fitting w's free resources, with no better place for
// its inputs. live reports whether any member is still queued or waiting
// for its inputs.
func (c *Core) member(fam *family, h *task, w *worker) (t *task, live bool) {
	for fam.next < len(fam.members) {
		if s := fam.members[fam.next].state; s == Waiting || s == Ready {
			break
		}
		fam.next++
	}
	for _, m := range fam.members[fam.next:] {
		if m.state != Ready && m.state != Waiting {
			continue
		}
		live = true
		if m.state == Ready && m.index >= 0 && m.spec.Priority == h.spec.Priority &&
			w.fits(m.spec.Resources) && c.dataHere(m, w) {
			return m, true
		}
	}
	return nil, live
}

// dataHere reports whether no other open worker that could run t holds
// more bytes of its inputs than w.
func (c *Core) dataHere(t *task, w *worker) bool {
	if len(t.spec.Inputs) == 0 {
		return true
	}
	// The bytes on each worker, as inputBytesOn counts them, in one pass
	// (a gather of many inputs would otherwise cost their square).
	if c.bytesOn == nil {
		c.bytesOn = make(map[WorkerID]int64)
	}
	clear(c.bytesOn)
	for _, f := range t.spec.Inputs {
		if e := c.files.files[f]; e != nil {
			for _, wid := range e.replicas {
				c.bytesOn[wid] += max(e.size, 1)
			}
		}
	}
	here := c.bytesOn[w.id]
	for _, f := range t.spec.Inputs {
		e := c.files.files[f]
		if e == nil || !e.staged() {
			continue
		}
		for _, wid := range e.replicas {
			if x := c.workers[wid]; x != nil && x != w && x.index >= 0 && c.bytesOn[wid] > here && x.total.Fits(t.spec.Resources) {
				return false
			}
		}
	}
	return true
}
