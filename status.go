package trellis

import (
	"context"
	"time"

	"connectrpc.com/connect"

	pb "trellis/internal/proto/trellisv1"
)

// Status is a snapshot of a cluster, as the manager published it after a
// step of its loop. Its JSON form (`trellis status --json`) is documented
// in docs/status.md.
type Status struct {
	Version string         `json:"version"`
	Workers []WorkerStatus `json:"workers"`

	// Tasks and calls (never library instances) by state; Finished counts
	// every one that ended.
	Waiting   int `json:"waiting"`
	Ready     int `json:"ready"`
	Staging   int `json:"staging"` // placed, waiting for input transfers
	Running   int `json:"running"`
	Finished  int `json:"finished"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`

	// The same by modality: command tasks, dataflow tasks (command tasks
	// that read a file a task produces or write a temp file; Tasks counts
	// the others), function calls, and library instances (which are not
	// tasks: Finished counts those that ended).
	Tasks     TaskCounts `json:"tasks"`
	Dataflow  TaskCounts `json:"dataflow"`
	Calls     TaskCounts `json:"calls"`
	Instances TaskCounts `json:"instances"`

	// Bytes moved to workers, by where they came from, and to the manager.
	BytesFromManager int64 `json:"bytes_from_manager"`
	BytesFromPeers   int64 `json:"bytes_from_peers"`
	BytesFromURLs    int64 `json:"bytes_from_urls"`
	BytesToManager   int64 `json:"bytes_to_manager"`
	// BytesPrefetched: of BytesFromPeers, those fetched for consumers
	// before they were placed, while their last producers ran.
	BytesPrefetched   int64 `json:"bytes_prefetched"`
	TransfersInFlight int   `json:"transfers_in_flight"`
	FilesLost         int   `json:"files_lost"`
	TasksRecreated    int   `json:"tasks_recreated"`
	Checkpoints       int   `json:"checkpoints"`       // temp files copied to the checkpoint directory (docs/recovery.md)
	BytesPruned       int64 `json:"bytes_pruned"`      // unlinked from workers once no task read them
	TasksHandedBack   int   `json:"tasks_handed_back"` // attempts handed back for a full cache (not failures)
	// EvictedForSpace: copies removed from a cache to break a deadlock of
	// full caches; their producers run again when their readers need them.
	EvictedForSpace int `json:"evicted_for_space"`

	Libraries []LibraryStatus `json:"libraries"`
	Demand    []ShapeDemand   `json:"demand"`

	SnapshotVersion uint64    `json:"snapshot_version"` // steps of the manager's loop it reflects
	SnapshotTime    time.Time `json:"snapshot_time"`

	// Unplaceable counts the tasks and calls, among Ready, that no
	// connected worker could run even idle; UnplaceableTasks lists some of
	// them (at most 100) with the reason.
	Unplaceable      int               `json:"unplaceable"`
	UnplaceableTasks []UnplaceableTask `json:"unplaceable_tasks,omitempty"`

	// Epoch counts the starts of a manager with its --state (1 without
	// one); Journal is nil without one.
	Epoch   uint64         `json:"epoch"`
	Journal *JournalStatus `json:"journal,omitempty"`

	// Factories are the worker factories (trellis factory) that report to
	// this manager, by name.
	Factories []FactoryStatus `json:"factories,omitempty"`
	// UnknownTasks are the at-most-once tasks whose attempt was lost: they
	// wait for trellis reconcile (Client.Reconcile).
	UnknownTasks []UnknownTask `json:"unknown_tasks,omitempty"`
	// Adrift counts the tasks whose attempt, sent before the manager
	// restarted, may still run on a worker that has not come back yet:
	// they wait for it (at most the manager's adopt window, 30 s).
	Adrift int `json:"adrift,omitempty"`
}

// FactoryReport is what a worker factory tells the manager of itself each
// cycle (Client.ReportFactory), for status displays.
type FactoryReport struct {
	Name          string        `json:"name"`  // prefix of its jobs' and workers' names
	Batch         string        `json:"batch"` // local, slurm, condor, kubernetes
	Min           int           `json:"min"`
	Max           int           `json:"max"`
	Pending       []string      `json:"pending,omitempty"` // jobs whose worker has not connected (at most 1,000 named)
	Started       []string      `json:"started,omitempty"` // jobs whose worker connected once (at most 1,000 named)
	PendingCount  int           `json:"pending_count"`
	StartedCount  int           `json:"started_count"`
	Decision      string        `json:"decision"`                 // its last decision and why
	Interval      time.Duration `json:"interval"`                 // between its cycles
	OldestPending time.Time     `json:"oldest_pending,omitempty"` // submission of the oldest pending job
}

// FactoryStatus is a factory as the manager last heard of it.
type FactoryStatus struct {
	FactoryReport
	Reported         time.Time `json:"reported"`
	WorkersConnected int       `json:"workers_connected"` // connected now, of its jobs
	Stale            bool      `json:"stale,omitempty"`   // not heard for three of its intervals
}

// UnknownTask is an at-most-once task whose last attempt may or may not
// have taken effect.
type UnknownTask struct {
	Task    uint64 `json:"task"`
	Name    string `json:"name"`
	Attempt uint32 `json:"attempt"`
	Why     string `json:"why"`
}

// JournalStatus is the state of the manager's journal (--state).
type JournalStatus struct {
	Path    string `json:"path"`
	Durable uint64 `json:"durable"`         // records written (the last record's number)
	Error   string `json:"error,omitempty"` // why writing fails, while it does: effects wait
	// FileBytes is the journal file's size; SinceSnapshot the records
	// after the last snapshot, which a restart reads besides it.
	FileBytes     uint64 `json:"file_bytes"`
	SinceSnapshot uint64 `json:"since_snapshot"`
	// LastSnapshot is the last compaction; nil before the first.
	LastSnapshot *JournalSnapshot `json:"last_snapshot,omitempty"`
	// SnapshotError: why the last compaction failed, until one succeeds;
	// the journal keeps every record meanwhile.
	SnapshotError string `json:"snapshot_error,omitempty"`
}

// JournalSnapshot describes the snapshot a compaction left: records
// 1..Folded of the journal are folded into its Records.
type JournalSnapshot struct {
	At      time.Time `json:"at"`
	Folded  uint64    `json:"folded"`
	Records uint64    `json:"records"`
	Bytes   uint64    `json:"bytes"`
}

// UnplaceableTask is a task or call that no connected worker could run.
type UnplaceableTask struct {
	Task  uint64    `json:"task"`
	Name  string    `json:"name"`
	Why   string    `json:"why"`   // "no connected worker has 64 cores (largest: 2)"
	Since time.Time `json:"since"` // to the manager's 1-second tick
}

// TaskCounts counts tasks of one modality by state.
type TaskCounts struct {
	Waiting   int `json:"waiting"` // for input files
	Ready     int `json:"ready"`   // queued for a worker (calls: for a free slot)
	Staging   int `json:"staging"`
	Running   int `json:"running"`
	Finished  int `json:"finished"`
	Succeeded int `json:"succeeded"` // tasks and calls only
	Failed    int `json:"failed"`
}

// ShapeDemand is the demand for one resource shape: what a worker factory
// needs to size itself.
type ShapeDemand struct {
	Shape           Resources `json:"shape"`
	Waiting         int       `json:"waiting"`          // command tasks not yet running: waiting for inputs, queued, or held ahead on a busy worker
	Running         int       `json:"running"`          // command tasks placed on a worker's resources (staging or running)
	Instances       int       `json:"instances"`        // library instances placed
	InstancesWanted int       `json:"instances_wanted"` // more that calls waiting with no free slot need
}

// LibraryStatus describes an installed library and its instances.
type LibraryStatus struct {
	Name             string           `json:"name"`
	CallsWaiting     int              `json:"calls_waiting"` // for a free slot
	CallsDone        int              `json:"calls_done"`
	InstancesStarted int              `json:"instances_started"` // set-ups that succeeded, over the library's life
	Broken           string           `json:"broken,omitempty"`  // why its calls fail at once; "" while it works
	Instances        []InstanceStatus `json:"instances"`
	// Cold starts of its instances (from the start on a worker to ready
	// for calls): their mean and the latest; 0 before the first.
	ColdStartMean   time.Duration `json:"cold_start_mean_ns"`
	ColdStartLatest time.Duration `json:"cold_start_latest_ns"`
}

// InstanceStatus describes one instance of a library.
type InstanceStatus struct {
	ID     uint64 `json:"id"`     // numbered from 1, apart from task IDs
	Worker string `json:"worker"` // "" while it waits for a place
	Ready  bool   `json:"ready"`  // its set-up is done
	Busy   int    `json:"busy"`   // slots in use
	Slots  int    `json:"slots"`
}

// WorkerStatus describes one connected worker.
type WorkerStatus struct {
	ID        uint64    `json:"id"`
	Name      string    `json:"name"`
	Address   string    `json:"address"`
	Total     Resources `json:"total"`
	Free      Resources `json:"free"`
	Running   []uint64  `json:"running"`   // task IDs (calls included, instances not)
	Ahead     []uint64  `json:"ahead"`     // tasks held ahead of its cores (manager --ahead), in start order; not in Running
	Instances []uint64  `json:"instances"` // library instance IDs
	Draining  bool      `json:"draining"`
	Simulated bool      `json:"simulated"` // trellis worker --simulate: runs nothing (a measuring tool)
	TasksDone int       `json:"tasks_done"`
	Connected time.Time `json:"connected"`

	CacheBytes   int64 `json:"cache_bytes"` // files it holds
	CacheFiles   int   `json:"cache_files"`
	TransfersIn  int   `json:"transfers_in"`  // fetches to it in flight
	TransfersOut int   `json:"transfers_out"` // fetches from it, as a peer, in flight
	CacheNeeded  int64 `json:"cache_needed"`  // of CacheBytes, files unfinished tasks read
	BytesPruned  int64 `json:"bytes_pruned"`  // unlinked from it once no task read them
	PeakCache    int64 `json:"peak_cache_bytes"`
	// CacheEvictable: of CacheBytes, copies it may evict when it needs
	// room: no task placed there reads them.
	CacheEvictable int64 `json:"cache_evictable"`

	Factory string `json:"factory,omitempty"` // the factory whose job it is, if one reports it
}

// Status asks the manager for a snapshot of the cluster. It reflects at
// least every event the manager had handled when it asked.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	return c.status(ctx, &pb.StatusRequest{})
}

// ReportFactory tells the manager what a worker factory is doing, which
// its status then shows (Status.Factories, WorkerStatus.Factory), and
// returns the status. A factory reports each cycle; one not heard for a
// while is shown as stale, then forgotten.
func (c *Client) ReportFactory(ctx context.Context, r FactoryReport) (*Status, error) {
	return c.status(ctx, &pb.StatusRequest{Factory: &pb.FactoryReport{
		Name: r.Name, Batch: r.Batch, Min: uint32(max(r.Min, 0)), Max: uint32(max(r.Max, 0)),
		Pending: r.Pending, Started: r.Started, PendingCount: uint64(max(r.PendingCount, 0)),
		StartedCount: uint64(max(r.StartedCount, 0)), Decision: r.Decision,
		IntervalMs: r.Interval.Milliseconds(), OldestPendingUnixMs: unixMsOrZero(r.OldestPending)}})
}

func (c *Client) status(ctx context.Context, req *pb.StatusRequest) (*Status, error) {
	resp, err := c.rpc.Status(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, wireError("status of "+c.addr, err)
	}
	return statusOf(resp.Msg), nil
}

func unixMsOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func timeOrZero(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func statusOf(m *pb.StatusResponse) *Status {
	s := &Status{Waiting: int(m.Waiting), Ready: int(m.Ready), Running: int(m.Running), Finished: int(m.Finished),
		Succeeded: int(m.Succeeded), Failed: int(m.Failed), Version: m.Version, Staging: int(m.Staging),
		Tasks: taskCountsOf(m.Tasks), Dataflow: taskCountsOf(m.Dataflow), Calls: taskCountsOf(m.Calls), Instances: taskCountsOf(m.Instances),
		BytesFromManager: m.BytesFromManager, BytesFromPeers: m.BytesFromPeers, BytesFromURLs: m.BytesFromUrls,
		BytesToManager: m.BytesToManager, BytesPrefetched: m.BytesPrefetched, TransfersInFlight: int(m.TransfersInFlight),
		FilesLost: int(m.FilesLost), TasksRecreated: int(m.TasksRecreated), Checkpoints: int(m.Checkpoints),
		BytesPruned: m.BytesPruned, TasksHandedBack: int(m.TasksHandedBack), EvictedForSpace: int(m.EvictedForSpace),
		SnapshotVersion: m.SnapshotVersion, SnapshotTime: time.UnixMilli(m.SnapshotUnixMs)}
	for _, w := range m.Workers {
		s.Workers = append(s.Workers, WorkerStatus{ID: w.Id, Name: w.Name, Address: w.Address,
			Total: resourcesOf(w.Total), Free: resourcesOf(w.Free), Running: w.Running, Ahead: w.Ahead, Instances: w.Instances,
			Draining: w.Draining, Simulated: w.Simulated, TasksDone: int(w.TasksDone), Connected: time.UnixMilli(w.ConnectedUnixMs),
			CacheBytes: w.CacheBytes, CacheFiles: int(w.CacheFiles), TransfersIn: int(w.TransfersIn), TransfersOut: int(w.TransfersOut),
			CacheNeeded: w.CacheNeeded, BytesPruned: w.BytesPruned, PeakCache: w.PeakCacheBytes, CacheEvictable: w.CacheEvictable,
			Factory: w.Factory})
	}
	for _, f := range m.Factories {
		r := f.Report
		s.Factories = append(s.Factories, FactoryStatus{FactoryReport: FactoryReport{Name: r.Name, Batch: r.Batch,
			Min: int(r.Min), Max: int(r.Max), Pending: r.Pending, Started: r.Started, PendingCount: int(r.PendingCount),
			StartedCount: int(r.StartedCount), Decision: r.Decision, Interval: time.Duration(r.IntervalMs) * time.Millisecond,
			OldestPending: timeOrZero(r.OldestPendingUnixMs)},
			Reported: time.UnixMilli(f.ReportedUnixMs), WorkersConnected: int(f.WorkersConnected), Stale: f.Stale})
	}
	for _, l := range m.Libraries {
		ls := LibraryStatus{Name: l.Name, CallsWaiting: int(l.CallsWaiting), CallsDone: int(l.CallsDone),
			InstancesStarted: int(l.InstancesStarted), Broken: l.Broken,
			ColdStartMean: time.Duration(l.ColdStartMsMean) * time.Millisecond, ColdStartLatest: time.Duration(l.ColdStartMsLatest) * time.Millisecond}
		for _, i := range l.Instances {
			ls.Instances = append(ls.Instances, InstanceStatus{ID: i.Id, Worker: i.Worker, Ready: i.Ready, Busy: int(i.Busy), Slots: int(i.Slots)})
		}
		s.Libraries = append(s.Libraries, ls)
	}
	s.Unplaceable = int(m.Unplaceable)
	s.Epoch = m.Epoch
	if j := m.Journal; j != nil {
		s.Journal = &JournalStatus{Path: j.Path, Durable: j.Durable, Error: j.Error, FileBytes: j.FileBytes, SinceSnapshot: j.SinceSnapshot,
			SnapshotError: j.SnapshotError}
		if j.SnapshotFolded > 0 {
			s.Journal.LastSnapshot = &JournalSnapshot{At: time.UnixMilli(j.SnapshotUnixMs), Folded: j.SnapshotFolded,
				Records: j.SnapshotRecords, Bytes: j.SnapshotBytes}
		}
	}
	s.Adrift = int(m.Adrift)
	for _, u := range m.UnknownTasks {
		s.UnknownTasks = append(s.UnknownTasks, UnknownTask{Task: u.TaskId, Name: u.Name, Attempt: u.Attempt, Why: u.Why})
	}
	for _, u := range m.UnplaceableTasks {
		s.UnplaceableTasks = append(s.UnplaceableTasks, UnplaceableTask{Task: u.TaskId, Name: u.Name, Why: u.Why, Since: time.UnixMilli(u.SinceUnixMs)})
	}
	for _, d := range m.Demand {
		s.Demand = append(s.Demand, ShapeDemand{Shape: resourcesOf(d.Shape), Waiting: int(d.Waiting), Running: int(d.Running),
			Instances: int(d.Instances), InstancesWanted: int(d.InstancesWanted)})
	}
	return s
}

func taskCountsOf(n *pb.TaskCounts) TaskCounts {
	return TaskCounts{Waiting: int(n.GetWaiting()), Ready: int(n.GetReady()), Staging: int(n.GetStaging()),
		Running: int(n.GetRunning()), Finished: int(n.GetFinished()), Succeeded: int(n.GetSucceeded()), Failed: int(n.GetFailed())}
}

func resourcesOf(r *pb.Resources) Resources {
	return Resources{Cores: r.GetCores(), MemoryMB: r.GetMemoryMb(), DiskMB: r.GetDiskMb(), GPUs: int(r.GetGpus())}
}
