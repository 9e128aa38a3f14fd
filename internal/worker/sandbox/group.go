package sandbox

// This file exports the process-group pieces of Run for other hosts of
// long-running processes (internal/worker/libhost), so that they start,
// watch and kill a process group exactly as Run does (with Warden.Start and
// the Child it returns).

// Environ returns the environment Run gives a command in dir: PATH (the
// worker's, or a default), HOME and TMPDIR set to dir, then extra. Later
// entries win.
func Environ(dir string, extra []string) []string {
	return environ(dir, extra)
}

// GroupMemory samples the resident memory of one process group the way Run
// does for Spec.MemoryMB: most samples walk the leader's process tree, and
// about once a second a sample scans all of /proc for members that left the
// tree (a pass shared by every sampler of the process). It belongs to one
// goroutine; Close it when done.
type GroupMemory struct {
	s *groupScanner
}

// NewGroupMemory returns a sampler for the group pgid.
func NewGroupMemory(pgid int) *GroupMemory {
	return &GroupMemory{s: newGroupScanner(pgid)}
}

// Close stops sampling.
func (g *GroupMemory) Close() { g.s.close() }

// RSS returns the resident memory summed over the group, in bytes.
func (g *GroupMemory) RSS() int64 {
	n, _ := g.s.rss()
	return n
}
