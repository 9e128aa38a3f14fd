// Package resources finds what a worker machine can offer to tasks, and
// applies the operator's caps to it.
//
// Contract:
//   - Detect reads the machine: CPU cores (lowered by a cgroup v2 cpu.max
//     quota), memory (lowered by a cgroup v2 memory.max), free disk space
//     under the work directory, and NVIDIA GPUs. Cgroup limits are read along
//     the whole path from the process's cgroup up to the root of the cgroup2
//     mount, and the tightest one wins; cgroup v1 limits are not read. It
//     only reads: each task's cores are enforced by sandbox.Warden.
//   - A machine without nvidia-smi has no GPUs; that is not an error. An
//     nvidia-smi that is present but fails is an error that carries its
//     output, and Detect then still returns the other resources.
//   - Cap replaces detected values with the operator's positive caps, which
//     may exceed what was detected (overcommit), except for GPUs: asking for
//     more GPUs than were detected is an error.
//
// Package resourcestest provides a fake nvidia-smi for other packages' tests.
package resources
