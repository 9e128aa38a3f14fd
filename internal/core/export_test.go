package core

import "fmt"

// CheckAheadLists fails unless canHold lists the workers that may hold
// more tasks ahead, and stealable exactly the tasks held and not revoked:
// holdAhead and stealFor trust both.
func CheckAheadLists(c *Core) error {
	n := 0
	held := 0
	for _, w := range c.workers {
		if c.ahead > 0 && w.holdsAhead && !w.draining && len(w.ahead) < c.ahead {
			n++
		}
		for _, t := range w.ahead {
			if _, revoked := c.revokes[t]; !revoked {
				held++
				if i, ok := c.stealable.at[t]; !ok || c.stealable.items[i] != t {
					return fmt.Errorf("task %d, held on worker %d and not revoked, is not listed for stealFor", t.spec.ID, w.id)
				}
			}
		}
	}
	if n != len(c.canHold.items) || n != len(c.canHold.at) {
		return fmt.Errorf("canHold lists %d workers (%d indexed); %d may hold more tasks ahead", len(c.canHold.items), len(c.canHold.at), n)
	}
	for i, w := range c.canHold.items {
		if c.canHold.at[w] != i || len(w.ahead) >= c.ahead || w.draining || c.workers[w.id] != w {
			return fmt.Errorf("canHold lists worker %d at %d (indexed at %d), which may not hold more", w.id, i, c.canHold.at[w])
		}
	}
	if held != len(c.stealable.items) || len(c.stealable.at) != len(c.stealable.items) {
		return fmt.Errorf("stealable lists %d tasks (%d indexed); %d are held and not revoked", len(c.stealable.items), len(c.stealable.at), held)
	}
	return nil
}
