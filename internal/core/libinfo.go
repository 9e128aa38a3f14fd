package core

import "sort"

// LibraryInfo describes an installed library, for status reports.
type LibraryInfo struct {
	Lib       LibID
	Waiting   int    // calls waiting for a slot
	Broken    string // why its calls fail at once; "" while it works
	Started   int    // instances whose set-up succeeded, over its life
	Instances []InstanceInfo
}

// InstanceInfo describes one instance of a library.
type InstanceInfo struct {
	ID     InstanceID
	Worker WorkerID // 0 while it waits for a place
	Ready  bool     // its set-up is done: it takes calls
	Busy   int32    // slots in use
	Slots  int32
}

// Libraries describes the installed libraries, by ID.
func (c *Core) Libraries() []LibraryInfo {
	out := make([]LibraryInfo, 0, len(c.libs))
	for _, lib := range c.libs {
		info := LibraryInfo{Lib: lib.id, Waiting: len(lib.waiting.tasks), Broken: lib.broken, Started: lib.started}
		for _, inst := range lib.insts {
			ii := InstanceInfo{ID: inst.id, Ready: inst.ready, Slots: lib.slots}
			if inst.ready {
				ii.Busy = lib.slots - inst.free
			}
			if w := inst.t.worker; w != nil && (inst.t.state == Staging || inst.t.state == Running) {
				ii.Worker = w.id
			}
			info.Instances = append(info.Instances, ii)
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Lib < out[j].Lib })
	return out
}
