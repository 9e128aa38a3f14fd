package trellis

import (
	"context"
	"time"

	"connectrpc.com/connect"

	pb "trellis/internal/proto/trellisv1"
)

// Status is a snapshot of a cluster.
type Status struct {
	Workers                           []WorkerStatus
	Waiting, Ready, Running, Finished int // tasks by state; Finished counts every task that ended
	Succeeded, Failed                 int
	Version                           string
	Staging                           int // placed, waiting for input transfers

	// Bytes moved to workers, by where they came from, and to the manager.
	BytesFromManager, BytesFromPeers, BytesFromURLs, BytesToManager int64
	TransfersInFlight                                               int
	FilesLost, TasksRecreated                                       int
	Libraries                                                       []LibraryStatus
}

// LibraryStatus describes an installed library and its instances.
type LibraryStatus struct {
	Name             string
	CallsWaiting     int // for a free slot
	CallsDone        int
	InstancesStarted int    // set-ups that succeeded, over the library's life
	Broken           string // why its calls fail at once; "" while it works
	Instances        []InstanceStatus
}

// InstanceStatus describes one instance of a library.
type InstanceStatus struct {
	ID     uint64
	Worker string // "" while it waits for a place
	Ready  bool   // its set-up is done
	Busy   int    // slots in use
	Slots  int
}

// WorkerStatus describes one connected worker.
type WorkerStatus struct {
	ID        uint64
	Name      string
	Address   string
	Total     Resources
	Free      Resources
	Running   []uint64 // task IDs
	Draining  bool
	TasksDone int
	Connected time.Time

	CacheBytes                int64 // files it holds
	CacheFiles                int
	TransfersIn, TransfersOut int // fetches to it, and from it as a peer, in flight
}

// Status asks the manager for a snapshot of the cluster.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	resp, err := c.rpc.Status(ctx, connect.NewRequest(&pb.StatusRequest{}))
	if err != nil {
		return nil, wireError("status of "+c.addr, err)
	}
	m := resp.Msg
	s := &Status{Waiting: int(m.Waiting), Ready: int(m.Ready), Running: int(m.Running), Finished: int(m.Finished),
		Succeeded: int(m.Succeeded), Failed: int(m.Failed), Version: m.Version, Staging: int(m.Staging),
		BytesFromManager: m.BytesFromManager, BytesFromPeers: m.BytesFromPeers, BytesFromURLs: m.BytesFromUrls,
		BytesToManager: m.BytesToManager, TransfersInFlight: int(m.TransfersInFlight),
		FilesLost: int(m.FilesLost), TasksRecreated: int(m.TasksRecreated)}
	for _, w := range m.Workers {
		s.Workers = append(s.Workers, WorkerStatus{ID: w.Id, Name: w.Name, Address: w.Address,
			Total: resourcesOf(w.Total), Free: resourcesOf(w.Free), Running: w.Running, Draining: w.Draining,
			TasksDone: int(w.TasksDone), Connected: time.UnixMilli(w.ConnectedUnixMs),
			CacheBytes: w.CacheBytes, CacheFiles: int(w.CacheFiles), TransfersIn: int(w.TransfersIn), TransfersOut: int(w.TransfersOut)})
	}
	for _, l := range m.Libraries {
		ls := LibraryStatus{Name: l.Name, CallsWaiting: int(l.CallsWaiting), CallsDone: int(l.CallsDone),
			InstancesStarted: int(l.InstancesStarted), Broken: l.Broken}
		for _, i := range l.Instances {
			ls.Instances = append(ls.Instances, InstanceStatus{ID: i.Id, Worker: i.Worker, Ready: i.Ready, Busy: int(i.Busy), Slots: int(i.Slots)})
		}
		s.Libraries = append(s.Libraries, ls)
	}
	return s, nil
}

func resourcesOf(r *pb.Resources) Resources {
	return Resources{Cores: r.GetCores(), MemoryMB: r.GetMemoryMb(), DiskMB: r.GetDiskMb(), GPUs: int(r.GetGpus())}
}
