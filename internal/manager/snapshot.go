package manager

import (
	"context"
	"errors"
	"time"

	"trellis/internal/core"
	pb "trellis/internal/proto/trellisv1"
)

// Snapshot is the cluster's state as the loop published it between two
// steps: workers, tasks by state and modality, libraries, data counters and
// demand by shape. It is immutable: readers share it and must not modify it
// (Status hands out a copy).
type Snapshot struct {
	Version uint64    // steps of the loop it reflects
	Built   time.Time // when the loop built it
	Status  *pb.StatusResponse
	Ended   Ended // tasks and calls ended, by result kind
	Latency Histograms
	// Dispatched counts attempts sent to workers, by modality (see
	// Modalities); Attempts counts attempts ended by result kind, requeued
	// ones too.
	Dispatched [3]uint64
	Attempts   Ended
}

// Modalities name the modalities that Ended and Snapshot.Dispatched are
// indexed by: plain tasks, calls, and dataflow tasks (the core's class:
// plain tasks that read a file a task produces or write a temp file).
var Modalities = [3]string{"task", "call", "dataflow"}

// modalityOf is the index in Modalities of a task of rec (nil: a plain task).
func modalityOf(rec *taskRecord) int {
	switch {
	case rec == nil:
		return 0
	case rec.call() != nil:
		return 1
	case rec.dataflow:
		return 2
	}
	return 0
}

// Ended counts the tasks and calls that ended over the manager's life, by
// modality (see Modalities) and result kind, indexed by pb.ResultKind (an
// unknown kind counts as UNSPECIFIED).
type Ended [len(Modalities)][pb.ResultKind_RESULT_KIND_CANCELLED + 1]uint64

func (e *Ended) count(m int, k pb.ResultKind) { e.add(m, k, 1) }

// add counts n ends of modality m with kind k.
func (e *Ended) add(m int, k pb.ResultKind, n uint64) {
	if k < 0 || int(k) >= len(e[m]) {
		k = pb.ResultKind_RESULT_KIND_UNSPECIFIED
	}
	e[m][k] += n
}

// Publishing is lazy, so that a burst of events does not rebuild a large
// snapshot per event: each step of the loop only counts itself (steps);
// the loop builds a snapshot when a reader finds the published one older
// than the steps taken or built over maxSnapshotAge ago (it nudges
// refresh), and on its tick when steps were taken since the last one. A
// reader thus sees every step taken before it asked, and times (how long
// a task has waited) at most maxSnapshotAge old, without queueing behind
// the loop's events; an idle manager nobody reads rebuilds nothing.

// maxSnapshotAge is how old a snapshot a reader takes when no step was
// taken since it was built.
const maxSnapshotAge = time.Second

// errStopped is what a reader gets from a manager that stopped before it
// published a snapshot.
var errStopped = errors.New("manager: stopped")

// Snapshot returns a snapshot that reflects at least every step the loop
// had taken when it was called. It waits for the loop only when the
// published snapshot is older; a stopped manager answers with its last one.
func (m *Manager) Snapshot(ctx context.Context) (*Snapshot, error) {
	want := m.steps.Load()
	for {
		published := *m.published.Load() // before the snapshot: a publication in between closes it
		snap := m.snap.Load()
		if snap != nil && snap.Version >= want && time.Since(snap.Built) < maxSnapshotAge {
			return snap, nil
		}
		select {
		case m.refresh <- struct{}{}:
		default: // a nudge is pending already
		}
		select {
		case <-published:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-m.stopping:
			if snap = m.snap.Load(); snap != nil {
				return snap, nil
			}
			return nil, errStopped
		}
	}
}

// stepped counts a step of the loop: the published snapshot is stale from
// now on. The loop calls it before handling the step, so that a reply the
// step sends happens after the count.
func (s *state) stepped() {
	s.version++
	s.m.steps.Store(s.version)
}

// publish builds a snapshot and publishes it, if steps were taken since
// the last one, and wakes the readers waiting for it.
func (s *state) publish() {
	if snap := s.m.snap.Load(); snap != nil && snap.Version == s.version {
		return
	}
	s.rebuild()
}

// refreshed publishes a snapshot for a reader that asked: a new one if
// steps were taken or the last is over half maxSnapshotAge old (the reader
// found it too old).
func (s *state) refreshed() {
	if snap := s.m.snap.Load(); snap != nil && snap.Version == s.version && time.Since(snap.Built) < maxSnapshotAge/2 {
		return
	}
	s.rebuild()
}

func (s *state) rebuild() {
	now := time.Now()
	st := s.status()
	st.SnapshotVersion, st.SnapshotUnixMs = s.version, now.UnixMilli()
	s.m.snap.Store(&Snapshot{Version: s.version, Built: now, Status: st, Ended: s.ended, Latency: s.obs.hist.clone(),
		Dispatched: s.obs.dispatched, Attempts: s.obs.attempts})
	next := make(chan struct{})
	close(*s.m.published.Swap(&next))
}

// status builds the StatusResponse of a snapshot.
func (s *state) status() *pb.StatusResponse {
	tally := s.core.Tally()
	stats := s.core.Stats()
	tasks, calls, flow := queuedHeld(tally.Tasks), tally.Calls, queuedHeld(tally.Dataflow)
	resp := &pb.StatusResponse{
		Waiting: uint64(tasks.Waiting + flow.Waiting + calls.Waiting), Ready: uint64(tasks.Ready + flow.Ready + calls.Ready),
		Staging: uint64(tasks.Staging + flow.Staging + calls.Staging), Running: uint64(tasks.Running + flow.Running + calls.Running),
		Finished: uint64(tasks.Finished + flow.Finished + calls.Finished), Succeeded: s.succeeded, Failed: s.failed,
		Version:          s.m.cfg.Version,
		Tasks:            taskCounts(tasks, s.succeeded-s.callsSucceeded-s.flowSucceeded, s.failed-s.callsFailed-s.flowFailed),
		Dataflow:         taskCounts(flow, s.flowSucceeded, s.flowFailed),
		Calls:            taskCounts(calls, s.callsSucceeded, s.callsFailed),
		Instances:        taskCounts(tally.Instances, 0, 0),
		BytesFromManager: stats.Moved[core.FromManager], // not store.served() too: the same fetches
		BytesFromPeers:   stats.Moved[core.FromPeer], BytesFromUrls: stats.Moved[core.FromOrigin],
		BytesToManager: s.data.toManager, TransfersInFlight: stats.Transfers, FilesLost: stats.Lost, TasksRecreated: stats.Recreated,
		BytesPruned: stats.Pruned, TasksHandedBack: stats.HandedBack, EvictedForSpace: stats.EvictedForSpace,
		Checkpoints: stats.Checkpointed, BytesPrefetched: stats.Prefetched}
	for _, w := range s.core.Workers() {
		sess := s.sessions[w.ID]
		if sess == nil {
			continue
		}
		ws := &pb.WorkerStatus{Id: uint64(w.ID), Name: sess.hello.Name, Address: sess.addr,
			Total: protoResources(w.Total), Free: protoResources(w.Free), Draining: w.Draining, Simulated: sess.hello.Simulated,
			TasksDone: w.TasksDone, ConnectedUnixMs: sess.since.UnixMilli(),
			CacheBytes: w.CacheBytes, CacheFiles: uint64(w.CacheFiles), TransfersIn: uint64(w.TransfersIn), TransfersOut: uint64(w.TransfersOut),
			CacheNeeded: w.CacheNeeded, BytesPruned: w.Pruned, PeakCacheBytes: w.PeakCache, CacheEvictable: w.CacheReleased}
		for _, t := range w.Running {
			ws.Running = append(ws.Running, uint64(t))
		}
		for _, t := range w.Ahead {
			ws.Ahead = append(ws.Ahead, uint64(t))
		}
		for _, i := range w.Instances {
			ws.Instances = append(ws.Instances, uint64(i))
		}
		resp.Workers = append(resp.Workers, ws)
	}
	resp.Epoch = s.m.epoch
	if j := s.m.journal; j != nil {
		since, _ := j.Since()
		snap := j.Snapshot()
		resp.Journal = &pb.JournalStatus{Path: j.Path(), Durable: uint64(j.Durable()), SinceSnapshot: uint64(since),
			SnapshotFolded: uint64(snap.Upto), SnapshotRecords: uint64(snap.Records), SnapshotBytes: uint64(snap.Bytes)}
		if !snap.At.IsZero() {
			resp.Journal.SnapshotUnixMs = snap.At.UnixMilli()
		}
		if err := j.CompactErr(); err != nil {
			resp.Journal.SnapshotError = err.Error()
		}
		resp.Journal.FileBytes = uint64(j.DiskBytes())
		if err := j.Err(); err != nil {
			resp.Journal.Error = err.Error()
		}
	}
	resp.Libraries = s.libraryStatus()
	s.unplaceableStatus(resp)
	for _, d := range s.core.Demand() {
		resp.Demand = append(resp.Demand, &pb.ShapeDemand{Shape: protoResources(d.Shape), Waiting: uint64(d.Waiting),
			Running: uint64(d.Running), Instances: uint64(d.Instances), InstancesWanted: uint64(d.InstancesWanted)})
	}
	return resp
}

// queuedHeld counts the tasks held ahead on a worker as queued, not
// running: they wait for a core there, and their RUNNING event comes when
// they start (core.Started).
func queuedHeld(n core.StateCounts) core.StateCounts {
	n.Ready, n.Running, n.Held = n.Ready+n.Held, n.Running-n.Held, 0
	return n
}

func taskCounts(n core.StateCounts, succeeded, failed uint64) *pb.TaskCounts {
	return &pb.TaskCounts{Waiting: uint64(n.Waiting), Ready: uint64(n.Ready), Staging: uint64(n.Staging),
		Running: uint64(n.Running), Finished: uint64(n.Finished), Succeeded: succeeded, Failed: failed}
}

// MaxUnplaceableListed bounds the unplaceable tasks a snapshot lists with
// their reasons; it counts them all.
const MaxUnplaceableListed = 100

// unplaceableStatus adds to resp the tasks no connected worker could run:
// how many, and some of them with their reasons.
func (s *state) unplaceableStatus(resp *pb.StatusResponse) {
	n, some := s.core.UnplaceableTasks(MaxUnplaceableListed)
	resp.Unplaceable = uint64(n)
	now := time.Now()
	for _, u := range some {
		since := now
		if u.Since >= 0 {
			since = s.origin.Add(u.Since)
		}
		ut := &pb.UnplaceableTask{TaskId: uint64(u.Task), Why: u.Why, SinceUnixMs: since.UnixMilli()}
		if rec := s.tasks[u.Task]; rec != nil {
			ut.Name = rec.name()
		}
		resp.UnplaceableTasks = append(resp.UnplaceableTasks, ut)
	}
	resp.Adrift = uint64(s.core.Adrift())
	for _, u := range s.core.Unknown() { // few: only at-most-once tasks whose attempt was lost
		ut := &pb.UnknownTask{TaskId: uint64(u.Task), Attempt: u.Attempt, Why: u.Why}
		if rec := s.tasks[u.Task]; rec != nil {
			ut.Name = rec.name()
		}
		resp.UnknownTasks = append(resp.UnknownTasks, ut)
	}
}
