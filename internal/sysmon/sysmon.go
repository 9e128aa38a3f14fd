// Package sysmon keeps the Go runtime's system monitor from waking at its
// fastest after every idle moment of a long-running trellis process.
//
// The monitor (runtime.sysmon) sleeps soundly while every processor is
// idle; the next system call wakes it, and it then polls every 20 µs (up
// to 70 µs with the kernel's default timer slack), 50 times before it
// backs off. A worker or manager is idle between almost every pair of
// tasks, so each task buys a burst of wake-ups. Where a context
// switch is dear, as in the paravirtualised VM this project was measured
// on (about 35 µs of CPU per wake-up there: the monitor's share of a
// worker's profile over the count of its sleeps), that was a fifth of a
// worker's CPU per task and the largest single item in its profile
// (docs/benchmarks.md, "Capacity, eleventh part"). With GODEBUG's schedtrace set, the monitor never takes
// that deep sleep, so it never restarts at 20 µs: it backs off to one
// wake-up every 10 ms while nothing is retaken, and costs an idle process
// about 100 wake-ups a second instead.
//
// The setting is read once, when the runtime starts, and Go refuses it in
// go.mod and //go:debug lines, so Reexec runs the process again with it.
// Its one visible effect: the runtime prints one "SCHED" line to standard
// error once its monotonic clock (the host's uptime) passes schedtrace's
// interval, 24.8 days, and again every 24.8 days after.
package sysmon

import (
	"os"
	"slices"
	"strings"
)

// Setting is the GODEBUG entry Reexec adds: a schedtrace interval so long
// (the largest the runtime takes, in ms) that it stands for "never".
const Setting = "schedtrace=2147483647"

// Opt-out and bookkeeping variables of the environment.
const (
	// OffVar, set to "off", keeps the runtime's default monitor.
	OffVar = "TRELLIS_SYSMON"
	// savedVar carries the GODEBUG that the process was started with
	// across the re-exec ("" where it was not set, "=" and its value
	// where it was), so that the process and whatever it starts see it
	// unchanged.
	savedVar = "TRELLIS_SYSMON_GODEBUG"
)

// plan returns the environment to run the process again with, given its
// environment now; nil when it should not be run again: the setting is
// there already (a re-exec'd process, or the user's own schedtrace),
// or OffVar says off.
func plan(env []string) []string {
	var godebug string
	var hasGodebug bool
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case savedVar:
			return nil // run again already
		case OffVar:
			if v == "off" {
				return nil
			}
		case "GODEBUG":
			godebug, hasGodebug = v, true
		}
	}
	for field := range strings.SplitSeq(godebug, ",") {
		if strings.HasPrefix(field, "schedtrace=") {
			return nil // the user's choice stands
		}
	}
	saved := ""
	if hasGodebug {
		saved = "=" + godebug
	}
	out := make([]string, 0, len(env)+2)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			out = append(out, kv)
		}
	}
	// The user's entries after the setting (none names schedtrace).
	next := Setting
	if godebug != "" {
		next += "," + godebug
	}
	return append(out, "GODEBUG="+next, savedVar+"="+saved)
}

// Restore puts GODEBUG back as it was before the setting was added to it
// (by Reexec, or by the parent: WorkerEnv, ChildEnv), so that what the
// process starts sees it unchanged, and forgets the bookkeeping; the
// runtime keeps the setting it read at start. It reports whether the
// process was started with the setting so added. Reexec calls it; so do
// the library SDKs, for a library the worker started with ChildEnv.
func Restore() bool {
	saved, ok := os.LookupEnv(savedVar)
	if !ok {
		return false
	}
	os.Unsetenv(savedVar)
	if v, set := strings.CutPrefix(saved, "="); set {
		os.Setenv("GODEBUG", v)
	} else {
		os.Unsetenv("GODEBUG")
	}
	return true
}

// active is whether this process runs with the setting (Reexec).
var active bool

// Active reports whether this process runs with the setting that Reexec
// (or the launcher, WorkerEnv) put in place: where it does, a worker
// starts its libraries with it too (ChildEnv). False off Linux, where
// TRELLIS_SYSMON is off, where the user set a schedtrace of their own,
// and where the re-exec failed.
func Active() bool { return active }

// ChildEnv returns env, the environment of a long-running child (a
// library), with the setting in place as plan puts it (the child's
// GODEBUG kept after it, and saved for Restore), or env itself where env
// says already what to do: an OffVar of off, or a schedtrace of its own.
// A Go library serving calls is idle between almost every two of them, so
// without the setting its monitor takes the deep sleep, and is woken from
// it, once a call: a third of a Go library's CPU per call
// (docs/benchmarks.md, "Go libraries with the monitor's setting").
// Programs in other languages ignore GODEBUG.
func ChildEnv(env []string) []string {
	if ready := plan(env); ready != nil {
		return ready
	}
	return env
}

// CrowdedPerCore is how many worker processes per core a host may hold
// before WorkerEnv turns the setting off. Each idle worker with it wakes
// about 100 times a second (some 13 µs of CPU each on the VM measured),
// but a busy worker on a crowded host saves more: on 2 cores, `true` tasks
// ran 4-19% faster with it on every worker at 100 and 200 workers (four
// pairs); at 500, with it off beyond the first 50 (seven pairs) or 200
// (four), they ran faster in 8 of 11 pairs and connected in a half to two
// thirds of the time, and with it off for all 500 faster still than off
// beyond 200 (three pairs: 4-24% more tasks a second, connected in 18-22 s
// against 27-28; docs/benchmarks.md, "Crowded workers" and "All of a
// crowded host's workers").
const CrowdedPerCore = 100

// WorkerEnv returns the environment to start a worker process with, from
// env, on a host of hostCores cores that holds, or is planned to hold,
// workers worker processes, this one included. Where there are more than CrowdedPerCore per core,
// OffVar is set to off, so that crowded workers, which wait on each other
// for the cores and are idle most of the time, sleep soundly while idle.
// Otherwise the setting is put in place as Reexec would (plan), so that
// the worker need not run itself again: that second start cost a worker
// some 11 ms of CPU, as much as the first. Where env says already what to
// do (an OffVar of its own, or a schedtrace), that stands.
func WorkerEnv(env []string, workers, hostCores int) []string {
	told := slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, OffVar+"=") })
	if !told && workers > CrowdedPerCore*hostCores {
		return append(slices.Clip(env), OffVar+"=off")
	}
	return ChildEnv(env)
}
