//go:build !linux

package sandbox

// limitsCPU reports whether g sets CPU quotas: never off Linux.
func limitsCPU(*cgroups) bool { return false }
