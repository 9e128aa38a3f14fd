package core

import "sort"

// ShapeDemand is what the core asks of workers for one resource shape: what
// a worker factory needs to size itself.
type ShapeDemand struct {
	Shape   Resources
	Waiting int // plain tasks not yet placed: waiting for inputs, or queued for a worker
	Running int // plain tasks placed on a worker: staging their inputs, or running
	// Instances: library instances of this shape placed on a worker.
	// InstancesWanted: instances not placed yet that calls waiting with no
	// free slot need (or that a library starts eagerly), within the
	// library's Max.
	Instances       int
	InstancesWanted int
}

// Demand returns the demand by resource shape, ordered by shape (cores,
// then memory, disk, GPUs). Calls need no shape of their own: they run in
// the slots of instances, and show as InstancesWanted. It costs a pass
// over the live tasks.
func (c *Core) Demand() []ShapeDemand {
	by := make(map[Resources]*ShapeDemand)
	at := func(r Resources) *ShapeDemand {
		d := by[r]
		if d == nil {
			d = &ShapeDemand{Shape: r}
			by[r] = d
		}
		return d
	}
	for _, t := range c.tasks {
		switch t.spec.Role {
		case Plain:
			switch t.state {
			case Waiting, Ready:
				at(t.spec.Resources).Waiting++
			case Staging, Running:
				at(t.spec.Resources).Running++
			}
		case Instance:
			if t.state == Staging || t.state == Running {
				at(t.spec.Resources).Instances++
			}
		}
	}
	for _, lib := range c.libs {
		if n := lib.wanted(); n > 0 {
			at(lib.res).InstancesWanted += n
		}
	}
	out := make([]ShapeDemand, 0, len(by))
	for _, d := range by {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return lessShape(out[i].Shape, out[j].Shape) })
	return out
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
