package sandbox

// limitsCPU reports whether g sets CPU quotas (Warden.LimitsCPU).
func limitsCPU(g *cgroups) bool { return g.cpu != nil }
