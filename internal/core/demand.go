package core

import "sort"

// ShapeDemand is what the core asks of workers for one resource shape: what
// a worker factory needs to size itself.
type ShapeDemand struct {
	Shape Resources
	// Waiting: plain tasks not yet running: waiting for inputs, queued for
	// a worker, or held on a busy one ahead of its cores (SetAhead): a
	// worker that joins takes a held task back (stealFor), so a factory
	// should start one for it as for a queued one.
	Waiting int
	// Running: plain tasks placed on a worker's resources: staging their
	// inputs, or running.
	Running int
	// Instances: library instances of this shape placed on a worker.
	// InstancesWanted: instances not placed yet that calls waiting with no
	// free slot need (or that a library starts eagerly), within the
	// library's Max.
	Instances       int
	InstancesWanted int
}

// Demand returns the demand by resource shape, ordered by shape (cores,
// then memory, disk, GPUs). Calls need no shape of their own: they run in
// the slots of instances, and show as InstancesWanted. Counts are kept as
// tasks change state: it costs a pass over the shapes and the libraries.
func (c *Core) Demand() []ShapeDemand {
	out := make([]ShapeDemand, 0, len(c.shapes))
	for r, n := range c.shapes {
		p, i := &n.by[Plain], &n.by[Instance]
		d := ShapeDemand{Shape: r, Waiting: p[Waiting] + p[Ready] + n.held, Running: p[Staging] + p[Running] - n.held, Instances: i[Staging] + i[Running]}
		if d.Waiting|d.Running|d.Instances != 0 {
			out = append(out, d)
		}
	}
	for _, lib := range c.libs {
		n := lib.wanted()
		if n <= 0 {
			continue
		}
		i := 0
		for i < len(out) && out[i].Shape != lib.res {
			i++
		}
		if i == len(out) {
			out = append(out, ShapeDemand{Shape: lib.res})
		}
		out[i].InstancesWanted += n
	}
	sort.Slice(out, func(i, j int) bool { return lessShape(out[i].Shape, out[j].Shape) })
	return out
}

// shapeCount is the demand for one shape, kept by setState (the entry of
// a shape stays once made: shapes are few).
type shapeCount struct {
	by   [Instance + 1][Staging + 1]int // tasks by role and state
	held int                            // of by[Plain][Running], those held ahead (countHeld)
	// why no worker could run the shape (see unplaceable.go), "" if one
	// could, as judged at epoch; its queued tasks were told so.
	why   string
	epoch uint64
}

// shapeOf returns the count of t's shape, made on first use; calls have
// one of their own (see Core.callShape).
func (c *Core) shapeOf(t *task) *shapeCount {
	if t.spec.Role == Call {
		return &c.callShape
	}
	n := c.shapes[t.spec.Resources]
	if n == nil {
		n = &shapeCount{}
		c.shapes[t.spec.Resources] = n
	}
	return n
}

// wanted returns how many more instances of l need a place: enough for
// the calls waiting (less the slots of instances placed and starting), and
// at least those the core made and could not place yet, within Max.
func (l *library) wanted() int {
	if l.broken != "" {
		return 0
	}
	slots := int(max(l.slots, 1))
	placed, starting, unplaced := 0, 0, 0
	for _, inst := range l.insts {
		switch inst.t.state {
		case Staging, Running:
			placed++
			if !inst.ready {
				starting++
			}
		default:
			unplaced++
		}
	}
	n := (len(l.waiting.tasks)+slots-1)/slots - starting
	n = max(n, unplaced)
	if l.max > 0 {
		n = min(n, int(l.max)-placed)
	}
	return max(n, 0)
}

func lessShape(a, b Resources) bool {
	switch {
	case a.MilliCores != b.MilliCores:
		return a.MilliCores < b.MilliCores
	case a.MemoryMB != b.MemoryMB:
		return a.MemoryMB < b.MemoryMB
	case a.DiskMB != b.DiskMB:
		return a.DiskMB < b.DiskMB
	}
	return a.GPUs < b.GPUs
}
