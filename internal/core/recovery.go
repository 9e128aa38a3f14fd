package core

// taskRecovered ends a task that had ended before a restart, through the
// same finish as a live report, so that its consumers and followers are
// released (or fail) as they were the first time, and the caller gets the
// same Done. Where its outputs are decides the rest: those at the manager
// are available, the others have no copy, and lineage recreates them when
// a task stages one (pickSource finds none, and lose runs the producer,
// retained as any producer of worker-only files).
func (c *Core) taskRecovered(ev TaskRecovered) {
	t := c.tasks[ev.Task]
	if t == nil || t.recreating || t.spec.Role == Instance {
		return // ended already: the first Done stands
	}
	switch t.state {
	case Ready:
		c.unqueue(t)
	case Staging:
		c.release(t)
	case Running:
		return // dispatched in this life: its live report decides
	case Waiting:
		delete(c.adrift, t.spec.ID)
		delete(c.unknown, t.spec.ID)
	}
	t.attempt = ev.Attempt
	if ev.Outcome.Kind == Success {
		for _, o := range ev.Outputs {
			if e := c.files.files[o.File]; e != nil && o.Manager && e.producer == t.spec.ID {
				e.manager, e.inline = true, o.Inline
				if o.Size > 0 {
					e.size = o.Size
				}
			}
		}
	}
	c.finish(t, ev.Outcome)
}
