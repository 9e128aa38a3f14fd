package resources

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"syscall"
)

// GPU is one NVIDIA device as nvidia-smi reports it.
type GPU struct {
	// Index is nvidia-smi's device index.
	Index int
	// UUID is the device's stable identifier, e.g. "GPU-5c0d...".
	UUID string
	// Name is the product name, e.g. "NVIDIA H100 80GB HBM3".
	Name string
	// MemoryMB is the device's total memory in MiB; 0 when not reported.
	MemoryMB int64
}

// Resources are what a worker can offer.
type Resources struct {
	// MilliCores is CPU capacity in thousandths of a core.
	MilliCores int64
	// MemoryMB is memory in MiB.
	MemoryMB int64
	// DiskMB is free disk space under the work directory, in MiB.
	DiskMB int64
	// GPUs are the devices on offer, in nvidia-smi's order.
	GPUs []GPU
}

// Detect reads the machine: cores (runtime.NumCPU, lowered by a cgroup v2
// cpu.max quota when one is set), memory (MemTotal from /proc/meminfo, lowered
// by cgroup v2 memory.max when set), disk (free space, for unprivileged users,
// of the file system holding workdir) and GPUs via DetectGPUs. It never fails
// because nvidia-smi is absent. When GPU detection fails it returns the other
// resources together with the error.
func Detect(ctx context.Context, workdir string) (Resources, error) {
	return detect(ctx, hostFS{}, workdir)
}

func detect(ctx context.Context, fsys hostFS, workdir string) (Resources, error) {
	var r Resources
	limits := fsys.cgroupLimits()

	r.MilliCores = int64(runtime.NumCPU()) * 1000
	if limits.milliCores > 0 && limits.milliCores < r.MilliCores {
		r.MilliCores = limits.milliCores
	}

	mem, err := fsys.memTotalMB()
	if err != nil {
		return Resources{}, err
	}
	r.MemoryMB = mem
	if limits.memoryMB > 0 && limits.memoryMB < r.MemoryMB {
		r.MemoryMB = limits.memoryMB
	}

	r.DiskMB, err = freeDiskMB(workdir)
	if err != nil {
		return Resources{}, err
	}

	r.GPUs, err = DetectGPUs(ctx)
	return r, err
}

// freeDiskMB returns the space available to unprivileged users on the file
// system holding dir, in MiB.
func freeDiskMB(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("resources: statfs %q: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize) >> 20, nil
}

// Cap applies the operator's caps to r; a cap <= 0 means "no cap". A positive
// cores, memoryMB or diskMB replaces the detected value, even when it is
// larger (the operator may overcommit). A positive gpus keeps the first gpus
// GPUs, and is an error when more GPUs are asked for than were detected.
// Cores are converted to milli-cores, rounded, and at least 1.
func Cap(r Resources, cores float64, memoryMB, diskMB int64, gpus int) (Resources, error) {
	if math.IsNaN(cores) || math.IsInf(cores, 0) || cores > math.MaxInt64/1000 {
		return Resources{}, fmt.Errorf("resources: --cores %v is not a usable number of cores", cores)
	}
	if cores > 0 {
		r.MilliCores = max(1, int64(math.Round(cores*1000)))
	}
	if memoryMB > 0 {
		r.MemoryMB = memoryMB
	}
	if diskMB > 0 {
		r.DiskMB = diskMB
	}
	if gpus > len(r.GPUs) {
		return Resources{}, fmt.Errorf("resources: --gpus %d asks for more GPUs than the %d detected", gpus, len(r.GPUs))
	}
	if gpus > 0 {
		r.GPUs = r.GPUs[:gpus]
	}
	r.GPUs = append([]GPU(nil), r.GPUs...) // never share the caller's array
	if len(r.GPUs) == 0 {
		r.GPUs = nil
	}
	return r, nil
}
