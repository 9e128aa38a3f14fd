package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"trellis"
	"trellis/local"
	"trellis/sdk/go/library"
	"trellis/sdk/python"
)

// CallsResult is the output of `trellis bench calls`.
type CallsResult struct {
	Bench           string  `json:"bench"`
	Workers         int     `json:"workers"`
	Calls           int     `json:"calls"`
	Slots           int     `json:"slots"`
	CallsPerS       float64 `json:"calls_per_s"`
	PythonCallsPerS float64 `json:"python_calls_per_s"`
	P50us           float64 `json:"p50_us"`
	P99us           float64 `json:"p99_us"`
	// ColdStartMs: the first call into a new instance of the Go library,
	// its start and set-up included (blocking, from the client);
	// PythonColdStartMs the same for the Python library.
	ColdStartMs       float64 `json:"cold_start_ms"`
	PythonColdStartMs float64 `json:"python_cold_start_ms"`
	TasksPerS         float64 `json:"tasks_per_s"`
	// The same calls with the client and workers on the network (HTTP/2
	// on 127.0.0.1), by the route NetworkRoute names: "direct", a client
	// with trellis.WithDirectCalls, whose calls go straight to the worker
	// on a lease (docs/direct-calls.md). NetworkCallsPerS: n async calls
	// in one Submit; p50/p99: 1,000 sequential blocking calls;
	// NetworkCPUusPerCall: the CPU time (user and system) per call of the
	// async calls, of this process and the library processes together
	// (client, manager, workers and libraries share the machine); unlike
	// calls/s, it hardly moves with what else runs on the machine.
	NetworkRoute        string  `json:"network_route"`
	NetworkCallsPerS    float64 `json:"network_calls_per_s"`
	NetworkP50us        float64 `json:"network_p50_us"`
	NetworkP99us        float64 `json:"network_p99_us"`
	NetworkCPUusPerCall float64 `json:"network_cpu_us_per_call"`
	// NetworkLibraryCPUusPerCall: the part of NetworkCPUusPerCall spent
	// in the library processes (the rest is this process: client, manager
	// and workers).
	NetworkLibraryCPUusPerCall float64 `json:"network_library_cpu_us_per_call"`
	// The same figures through the manager (a client without direct
	// calls: Submits stream, the manager's loop, the workers' streams).
	ManagerCallsPerS    float64 `json:"manager_calls_per_s"`
	ManagerP50us        float64 `json:"manager_p50_us"`
	ManagerP99us        float64 `json:"manager_p99_us"`
	ManagerCPUusPerCall float64 `json:"manager_cpu_us_per_call"`
	// On the direct route: n blocking calls from as many goroutines as
	// the library has slots, and the fraction of all the direct route's
	// measured calls that went direct (the others through the manager).
	DirectBlockingCallsPerS float64 `json:"direct_blocking_calls_per_s"`
	DirectShare             float64 `json:"direct_share"`
	// Instances: the library's instances on the manager's route once warm
	// (the direct route starts as many at once); DirectLeases: the leases
	// the direct route's client held at its end, one per instance.
	Instances       int     `json:"instances"`
	DirectLeases    int     `json:"direct_leases"`
	CallsVsTasks    float64 `json:"calls_vs_tasks"`
	SequentialCalls int     `json:"sequential_calls"`
	ComparisonTasks int     `json:"comparison_tasks"`
	PythonError     string  `json:"python_error,omitempty"`
	// Manager: the running cluster measured (CallsTarget.Manager); ""
	// for embedded ones. There the CPU fields stay 0: the cluster's
	// processes are not this one's.
	Manager string `json:"manager,omitempty"`
}

// CallsTarget says where the network figures of a calls benchmark are
// measured: on embedded clusters over 127.0.0.1, one for each route (Dial
// nil), or on the running cluster that Dial connects clients to (with the
// options it is given: trellis.WithDirectCalls). There the benchmark's
// library runs the trellis binary at this process's path on the workers
// (as `bench peer` does), under the name CallsLibrary, removed after each
// route.
type CallsTarget struct {
	Dial    func(ctx context.Context, opts ...trellis.Option) (*trellis.Client, error)
	Manager string // Dial's manager, reported
}

// CallsLibrary is the name of the benchmark's library on a running cluster.
const CallsLibrary = "trellis-bench-calls"

// open returns a client of the cluster, with opts, and what to call when
// done: on a new embedded cluster of workers local workers (over the
// network, or in process), or on the running one (where done removes the
// library lib).
func (tg CallsTarget) open(ctx context.Context, workers int, network bool, lib string, opts ...trellis.Option) (*trellis.Client, func(), error) {
	if tg.Dial == nil {
		c, err := local.Start(ctx, local.Config{Workers: workers, Network: network}, opts...)
		if err != nil {
			return nil, nil, err
		}
		return c, func() { c.Close() }, nil
	}
	c, err := tg.Dial(ctx, opts...)
	if err != nil {
		return nil, nil, err
	}
	return c, func() {
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.RemoveLibrary(rctx, lib); err != nil {
			fmt.Fprintf(os.Stderr, "bench: remove the library %s from the cluster: %v\n", lib, err)
		}
		c.Close()
	}, nil
}

// library is the benchmark's library name on the target.
func (tg CallsTarget) library() string {
	if tg.Dial != nil {
		return CallsLibrary
	}
	return "bench"
}

// BenchLibraryArg is the argument with which the trellis binary serves the
// benchmark's Go library (a hidden subcommand).
const BenchLibraryArg = "__bench-library"

// ServeBenchLibrary serves a library with one trivial function, "echo".
func ServeBenchLibrary() {
	lib := library.New("bench")
	lib.Register("echo", func(_ context.Context, args []byte) ([]byte, error) { return args, nil })
	library.Main(lib)
}

// warmUp is how many calls start the instances before a measurement.
const warmUp = 2000

const pythonBenchLibrary = `import trellis_library as tl
lib = tl.Library("pybench")

@lib.function(raw=True)
def echo(args):
    return args

if __name__ == "__main__":
    lib.serve()
`

// Calls measures function calls through an embedded cluster: n async calls
// of a trivial Go function, 1,000 sequential blocking calls (latency), the
// same with a Python library, and the same work as command tasks; then the
// Go figures again with the client and workers on the network. With
// networkOnly it measures only the network figures (the others stay 0).
//
// On a running cluster (tg.Dial) it measures only the network figures,
// without their CPU (Workers is then 0: the cluster's).
func Calls(ctx context.Context, n, workers, slots int, networkOnly bool, tg CallsTarget, logf func(string, ...any)) (*CallsResult, error) {
	res := &CallsResult{Bench: "calls", Workers: workers, Calls: n, Slots: slots, SequentialCalls: 1000, Manager: tg.Manager}
	if tg.Dial != nil {
		res.Workers = 0
		return res, networkCalls(ctx, res, tg, logf)
	}
	if networkOnly {
		return res, networkCalls(ctx, res, tg, logf)
	}
	var cpu float64 // (not reported for the in-process cluster)
	var instances int
	if err := goCalls(ctx, tg, false, n, workers, slots, logf, &res.CallsPerS, &res.P50us, &res.P99us, &res.ColdStartMs, &cpu, &instances); err != nil {
		return nil, err
	}
	c, err := local.Start(ctx, local.Config{Workers: workers})
	if err != nil {
		return nil, err
	}
	defer c.Close()

	logf("calls: %d async calls of a Python function", n)
	py := &trellis.Library{Name: "pybench", Command: "python3 lib.py", Slots: slots, Resources: trellis.Resources{Cores: 0.5},
		Inputs: []trellis.Mount{{File: trellis.Buffer(python.SDK), Path: "trellis_library.py"}, {File: trellis.Buffer([]byte(pythonBenchLibrary)), Path: "lib.py"}}}
	if err := c.Install(ctx, py); err != nil {
		return nil, err
	}
	var pyErr error
	if res.PythonColdStartMs, pyErr = coldStart(ctx, c, "pybench"); pyErr != nil {
		res.PythonError = pyErr.Error()
	} else if _, err := asyncCalls(ctx, c, "pybench", warmUp); err != nil {
		res.PythonError = err.Error()
	} else if secs, err := asyncCalls(ctx, c, "pybench", n); err != nil {
		res.PythonError = err.Error()
	} else {
		res.PythonCallsPerS = float64(n) / secs
	}

	res.ComparisonTasks = min(n, 1000)
	logf("calls: the same work as %d command tasks", res.ComparisonTasks)
	tasks := make([]*trellis.Task, res.ComparisonTasks)
	for i := range tasks {
		tasks[i] = trellis.NewTask("echo " + strconv.Itoa(i))
	}
	tsecs, err := runAll(ctx, c, tasks)
	if err != nil {
		return nil, err
	}
	res.TasksPerS = float64(res.ComparisonTasks) / tsecs
	res.CallsVsTasks = res.CallsPerS / res.TasksPerS
	c.Close()
	if err := networkCalls(ctx, res, tg, logf); err != nil {
		return nil, err
	}
	return res, nil
}

// networkCalls measures the Go figures with the client and workers on
// the network (tg): through the manager (res's manager fields), then on
// the direct route (its network fields).
func networkCalls(ctx context.Context, res *CallsResult, tg CallsTarget, logf func(string, ...any)) error {
	if tg.Dial == nil {
		logf("calls: the Go figures over the network on 127.0.0.1")
	} else {
		logf("calls: the Go figures on the cluster of %s", tg.Manager)
	}
	var coldMs float64 // (not reported: the in-process one is)
	if err := goCalls(ctx, tg, true, res.Calls, res.Workers, res.Slots, logf, &res.ManagerCallsPerS, &res.ManagerP50us, &res.ManagerP99us, &coldMs, &res.ManagerCPUusPerCall, &res.Instances); err != nil {
		return err
	}
	return directCalls(ctx, res, tg, logf)
}

// directCalls measures calls with trellis.WithDirectCalls on a new
// networked cluster: 1,000 sequential blocking ones (latency), n async ones
// in one Submit (throughput), then n blocking ones from as many goroutines
// as the library's slots.
func directCalls(ctx context.Context, res *CallsResult, tg CallsTarget, logf func(string, ...any)) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	name := tg.library()
	c, done, err := tg.open(ctx, res.Workers, true, name, trellis.WithDirectCalls())
	if err != nil {
		return err
	}
	defer done()
	// As many instances as the manager's route had warm, started at once:
	// calls on leases start none (they go only to ready instances).
	lib := &trellis.Library{Name: name, Command: self + " " + BenchLibraryArg, Slots: res.Slots, Resources: trellis.Resources{Cores: 0.5}, Eager: res.Instances}
	if err := c.Install(ctx, lib); err != nil {
		return err
	}
	logf("calls: direct calls (trellis.WithDirectCalls): waiting for %d instances and a lease", res.Instances)
	if err := waitInstances(ctx, c, name, res.Instances); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for sent, fell := c.DirectStats(); sent <= fell; sent, fell = c.DirectStats() {
		if time.Now().After(deadline) {
			return fmt.Errorf("no call went direct within 30 s")
		}
		if _, err := c.Call(ctx, name, "echo", []byte("warm")); err != nil {
			return err
		}
	}
	if _, err := asyncCalls(ctx, c, name, warmUp); err != nil { // leases on the other instances too
		return err
	}
	sent0, fell0 := c.DirectStats()
	logf("calls: 1000 sequential blocking direct calls")
	res.NetworkRoute = "direct"
	if res.NetworkP50us, res.NetworkP99us, err = sequentialCalls(ctx, c, name); err != nil {
		return err
	}
	logf("calls: %d async direct calls (one Submit)", res.Calls)
	var cpu, libCPU time.Duration
	if tg.Dial == nil { // (a running cluster's processes are not this one's)
		cpu, libCPU = treeCPU()
	}
	secs, err := asyncCalls(ctx, c, name, res.Calls)
	if err != nil {
		return err
	}
	res.NetworkCallsPerS = float64(res.Calls) / secs
	if tg.Dial == nil {
		cpu2, libCPU2 := treeCPU()
		res.NetworkCPUusPerCall = float64((cpu2 - cpu).Microseconds()) / float64(res.Calls)
		res.NetworkLibraryCPUusPerCall = float64((libCPU2 - libCPU).Microseconds()) / float64(res.Calls)
	}
	g := max(res.Slots, 1)
	logf("calls: %d blocking direct calls from %d goroutines", res.Calls, g)
	errs := make(chan error, g)
	start := time.Now()
	for k := range g {
		go func() { // exits when its share of the calls is done, or one fails
			for i := k; i < res.Calls; i += g {
				if _, err := c.Call(ctx, name, "echo", []byte(strconv.Itoa(i))); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range g {
		if err := <-errs; err != nil {
			return err
		}
	}
	res.DirectBlockingCallsPerS = float64(res.Calls) / time.Since(start).Seconds()
	sent, fell := c.DirectStats()
	res.DirectShare = float64((sent-sent0)-(fell-fell0)) / float64(1000+2*res.Calls)
	res.DirectLeases = c.DirectLeases(name)
	return nil
}

// goCalls measures async calls and blocking round trips of the Go library
// on tg: a new embedded cluster (over the network, or in process), or the
// running one.
func goCalls(ctx context.Context, tg CallsTarget, network bool, n, workers, slots int, logf func(string, ...any), perS, p50, p99, coldMs, cpuPerCall *float64, instances *int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	name := tg.library()
	c, done, err := tg.open(ctx, workers, network, name)
	if err != nil {
		return err
	}
	defer done()
	if err := c.Install(ctx, &trellis.Library{Name: name, Command: self + " " + BenchLibraryArg, Slots: slots, Resources: trellis.Resources{Cores: 0.5}}); err != nil {
		return err
	}
	if *coldMs, err = coldStart(ctx, c, name); err != nil {
		return err
	}
	// Warm up until every instance the burst will use has started: the
	// figures are for a running library, not for its start.
	if _, err := asyncCalls(ctx, c, name, warmUp); err != nil {
		return err
	}
	if st, err := c.Status(ctx); err == nil {
		if i := slices.IndexFunc(st.Libraries, func(l trellis.LibraryStatus) bool { return l.Name == name }); i >= 0 {
			*instances = readyInstances(st.Libraries[i])
		}
	}
	logf("calls: %d async calls of a Go function", n)
	cpu, _ := treeCPU()
	secs, err := asyncCalls(ctx, c, name, n)
	if err != nil {
		return err
	}
	*perS = float64(n) / secs
	if tg.Dial == nil { // (a running cluster's processes are not this one's)
		cpu2, _ := treeCPU()
		*cpuPerCall = float64((cpu2 - cpu).Microseconds()) / float64(n)
	}

	logf("calls: 1000 sequential blocking calls")
	*p50, *p99, err = sequentialCalls(ctx, c, name)
	return err
}

// sequentialCalls makes 1,000 blocking calls of lib's echo, one after the
// other, and returns their p50 and p99 in microseconds.
func sequentialCalls(ctx context.Context, c *trellis.Client, lib string) (p50, p99 float64, err error) {
	lat := make([]time.Duration, 1000)
	for i := range lat {
		start := time.Now()
		if _, err := c.Call(ctx, lib, "echo", []byte(strconv.Itoa(i))); err != nil {
			return 0, 0, err
		}
		lat[i] = time.Since(start)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return float64(lat[len(lat)/2].Microseconds()), float64(lat[len(lat)*99/100].Microseconds()), nil
}

// coldStart times one blocking call of lib's echo on a cluster where lib
// has no instance yet: its start and set-up included, in milliseconds.
func coldStart(ctx context.Context, c *trellis.Client, lib string) (float64, error) {
	start := time.Now()
	if _, err := c.Call(ctx, lib, "echo", []byte("cold")); err != nil {
		return 0, fmt.Errorf("the first call of %s: %w", lib, err)
	}
	return float64(time.Since(start).Microseconds()) / 1000, nil
}

// asyncCalls submits n calls of lib's echo at once and waits for them all.
func asyncCalls(ctx context.Context, c *trellis.Client, lib string, n int) (float64, error) {
	calls := make([]*trellis.Task, n)
	for i := range calls {
		calls[i] = trellis.NewCall(lib, "echo", []byte(strconv.Itoa(i)))
	}
	start := time.Now()
	hs, err := c.Submit(ctx, calls...)
	if err != nil {
		return 0, err
	}
	for i, h := range hs {
		r, err := h.Wait(ctx)
		if err != nil {
			return 0, err
		}
		if !r.OK() || string(r.Output) != strconv.Itoa(i) {
			return 0, fmt.Errorf("call %d: %v, result %q", i, r.Err(), r.Output)
		}
	}
	return time.Since(start).Seconds(), nil
}

// treeCPU is the CPU time (user and system) used so far by this process
// and the processes it started that still run (the libraries' instances),
// from /proc; 0 for what it cannot read. children is the part of the
// processes it started.
func treeCPU() (total, children time.Duration) {
	self := selfCPU()
	seen := map[int]bool{os.Getpid(): true}
	var visit func(pid int)
	visit = func(pid int) {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
		for _, t := range tasks {
			b, _ := os.ReadFile(t)
			for _, f := range strings.Fields(string(b)) {
				child, err := strconv.Atoi(f)
				if err != nil || seen[child] {
					continue
				}
				seen[child] = true
				children += procCPU(child)
				visit(child)
			}
		}
	}
	visit(os.Getpid())
	return self + children, children
}

// procCPU is the CPU time (user and system) process pid has used.
func procCPU(pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which ends at the last ')': utime is
	// field 14 and stime 15.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// readyInstances counts the ready instances of lib.
func readyInstances(lib trellis.LibraryStatus) int {
	n := 0
	for _, in := range lib.Instances {
		if in.Ready {
			n++
		}
	}
	return n
}

// waitInstances waits until the library lib has n instances ready.
func waitInstances(ctx context.Context, c *trellis.Client, lib string, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(st.Libraries, func(l trellis.LibraryStatus) bool { return l.Name == lib }); i >= 0 && readyInstances(st.Libraries[i]) >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the library %s has fewer than %d instances ready after 30 s", lib, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
