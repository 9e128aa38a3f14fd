//go:build !linux

package sysmon

// Reexec does nothing off Linux (trellis workers run on Linux).
func Reexec() {}
