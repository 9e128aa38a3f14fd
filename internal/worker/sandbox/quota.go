package sandbox

// LimitsCPU reports whether the warden enforces CPU quotas: a task or
// library started with cores (Start, StartLimited, Spec.Cores) gets a
// quota of them that the kernel enforces (cgroup v2 cpu.max or the v1 cfs
// quota). Enforcement says how, or why not. A library host sets
// GOMAXPROCS by a library's cores only where this holds (libhost.Spec):
// elsewhere the library may use every core.
func (w *Warden) LimitsCPU() bool {
	return w != nil && w.cg != nil && limitsCPU(w.cg)
}
