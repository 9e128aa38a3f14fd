package core

import (
	"fmt"
	"slices"
)

// Transfers bring staged files to the workers whose tasks need them. The
// core picks the source (a peer that holds the file, least loaded first;
// then the manager or the file's origin), bounds concurrent transfers per
// source, retries from elsewhere after a failure, and backs off from a peer
// that keeps failing.

// Limits on transfers.
const (
	PeerTransfers    = 4  // concurrent fetches from one peer
	ManagerTransfers = 16 // from the manager's store
	OriginTransfers  = 8  // of one URL from its origin
	FetchTries       = 4  // tries of one file to one worker before its tasks give up
	BackoffFailures  = 2  // consecutive failures of a peer before backing off
	BackoffTicks     = 5  // ticks a failing peer is avoided
	// MaxInlinePerDispatch bounds the bytes of inline inputs (FileSpec.Inline)
	// one dispatch carries; a task's inline inputs past it are staged.
	MaxInlinePerDispatch = 8 << 20
)

type transfer struct {
	id       uint64
	file     FileID
	to       WorkerID
	src      Source
	prefetch bool // for a consumer not placed yet (prefetch.go)
}

type blockedFetch struct {
	worker WorkerID
	file   FileID
}

// startFetch starts bringing e to w, or queues the fetch while every source
// is busy. A file with no source at all is lost.
func (c *Core) startFetch(w *worker, e *fileEntry) {
	if w.holds[e.id] == copyLoose {
		c.claim(w, e)
		return
	}
	if e.kind == Derived {
		from := c.files.files[e.from]
		if from == nil || from.holds(w.id) && w.holds[from.id] != copyLoose {
			c.begin(w, e, Source{Kind: FromDerive, From: e.from})
			return
		}
		// Bring the archive first; the derivation starts when it arrives.
		w.inflight[e.id] = 0
		w.derives[e.from] = append(w.derives[e.from], e.id)
		from.stagers = appendOnce(from.stagers, w.id)
		if _, busy := w.inflight[e.from]; !busy {
			c.startFetch(w, from)
		}
		return
	}
	src, ok, lost := c.pickSource(w, e)
	switch {
	case lost:
		delete(w.inflight, e.id)
		c.lose(e)
	case !ok:
		w.inflight[e.id] = 0 // queued
		c.blocked = append(c.blocked, blockedFetch{w.id, e.id})
	default:
		c.begin(w, e, src)
	}
}

func (c *Core) begin(w *worker, e *fileEntry, src Source) *transfer {
	c.nextTransfer++
	tr := &transfer{id: c.nextTransfer, file: e.id, to: w.id, src: src}
	c.transfers[tr.id] = tr
	w.inflight[e.id] = tr.id
	c.countSource(src, e.id, +1)
	c.emit(Fetch{Transfer: tr.id, Worker: w.id, File: e.id, Source: src, Size: e.size, Task: w.stagerOf(e.id)})
	return tr
}

// stagerOf returns the first task or call staging on w that waits for f,
// or for a file to be unpacked from f there; 0 if none does (library
// instances are not named).
func (w *worker) stagerOf(f FileID) TaskID {
	if id := firstStager(w.waiting[f]); id != 0 {
		return id
	}
	for _, d := range w.derives[f] {
		if id := firstStager(w.waiting[d]); id != 0 {
			return id
		}
	}
	return 0
}

func firstStager(ts []*task) TaskID {
	for _, t := range ts {
		if t.spec.Role != Instance {
			return t.spec.ID
		}
	}
	return 0
}

func (c *Core) countSource(src Source, f FileID, d int32) {
	switch src.Kind {
	case FromPeer:
		if p := c.workers[src.Peer]; p != nil {
			p.outgoing += d
		}
	case FromManager:
		c.managerOut += d
	case FromOrigin:
		c.originOut[f] += d
		if c.originOut[f] <= 0 {
			delete(c.originOut, f)
		}
	}
}

// pickSource chooses where w gets e: ok is false while every source is
// busy; lost says there is no source at all.
func (c *Core) pickSource(w *worker, e *fileEntry) (src Source, ok, lost bool) {
	var best *worker
	live := false
	for _, r := range e.replicas {
		p := c.workers[r]
		if p == nil || r == w.id {
			continue
		}
		live = true
		if p.backoffUntil > c.ticks || p.outgoing >= PeerTransfers {
			continue
		}
		if best == nil || p.outgoing < best.outgoing {
			best = p
		}
	}
	switch {
	case best != nil:
		return Source{Kind: FromPeer, Peer: best.id}, true, false
	case e.kind == Origin && c.originOut[e.id] < OriginTransfers:
		return Source{Kind: FromOrigin}, true, false
	case e.kind == Origin:
		return Source{}, false, false
	case e.manager && c.managerOut < ManagerTransfers:
		return Source{Kind: FromManager}, true, false
	case e.manager || live:
		return Source{}, false, false
	}
	return Source{}, false, true
}

// retryBlocked starts queued fetches whose sources have room now.
func (c *Core) retryBlocked() {
	if len(c.blocked) == 0 {
		return
	}
	queue := c.blocked
	c.blocked = nil
	for _, b := range queue {
		w := c.workers[b.worker]
		if w == nil {
			continue
		}
		if id, queued := w.inflight[b.file]; !queued || id != 0 {
			continue // no longer wanted, or already started
		}
		e := c.files.files[b.file]
		if len(w.waiting[b.file]) == 0 && len(w.derives[b.file]) == 0 && !c.wantsReplica(e, w) {
			delete(w.inflight, b.file)
			continue
		}
		c.startFetch(w, e)
	}
}

func (c *Core) transferDone(ev TransferDone) {
	tr := c.transfers[ev.Transfer]
	if tr == nil {
		return // stale: its worker left
	}
	delete(c.transfers, tr.id)
	c.countSource(tr.src, tr.file, -1)
	defer c.retryBlocked()
	w := c.workers[tr.to]
	e := c.files.files[tr.file]
	if w == nil || e == nil {
		return
	}
	delete(w.inflight, tr.file)
	if ev.OK {
		if tr.src.Kind != FromCache {
			c.moved[tr.src.Kind] += ev.Size
		}
		if tr.prefetch {
			c.prefetched += ev.Size
		}
		delete(w.tries, tr.file)
		if ev.Size > 0 {
			e.size = ev.Size
		}
		if tr.src.Kind == FromPeer {
			if p := c.workers[tr.src.Peer]; p != nil {
				p.failures = 0
			}
		}
		c.arrived(w, e)
		return
	}
	if tr.src.Kind == FromCache {
		// The worker evicted its released copy before the claim reached
		// it (and reports it dropped): stage the file anew, or recreate it.
		c.dropReplica(w, e)
		if len(w.waiting[tr.file]) > 0 || len(w.derives[tr.file]) > 0 {
			c.startFetch(w, e)
		}
		return
	}
	if ev.SourceFault && tr.src.Kind == FromPeer {
		if p := c.workers[tr.src.Peer]; p != nil {
			if p.failures++; p.failures >= BackoffFailures {
				p.backoffUntil = c.ticks + BackoffTicks
			}
		}
	}
	if tr.prefetch && len(w.waiting[tr.file]) == 0 && len(w.derives[tr.file]) == 0 {
		return // a prefetch that no task waits for yet: not tried again, and no try of its consumer spent
	}
	w.tries[tr.file]++
	why := fmt.Sprintf("fetch from %s: %s", tr.src.Kind, ev.Why)
	if !ev.SourceFault || w.tries[tr.file] >= FetchTries {
		if w.tries[tr.file] >= FetchTries {
			why = fmt.Sprintf("%s (after %d tries)", why, w.tries[tr.file])
		}
		delete(w.tries, tr.file)
		c.fetchFailed(w, tr.file, why, ev.CacheFull && !ev.SourceFault)
		return
	}
	if len(w.waiting[tr.file]) > 0 || len(w.derives[tr.file]) > 0 || c.wantsReplica(e, w) {
		c.startFetch(w, e)
	}
}

// arrived records that w holds e now and wakes what waited for it there.
func (c *Core) arrived(w *worker, e *fileEntry) {
	c.addReplica(w, e, copyHeld)
	if w.pins[e.id] == 0 && w.holds[e.id] == copyHeld {
		c.releasing = append(c.releasing, workerFile{w.id, e.id}) // no task here reads it now
	}
	c.satisfy(w, e)
	c.replicate(e)
}

// satisfy wakes what waited for e on w, which holds it now.
func (c *Core) satisfy(w *worker, e *fileEntry) {
	if id, queued := w.inflight[e.id]; queued && id == 0 {
		delete(w.inflight, e.id) // a fetch waiting for a source: not needed now
	}
	waiting := w.waiting[e.id]
	delete(w.waiting, e.id)
	for _, t := range waiting {
		if t.state == Staging && t.worker == w {
			if t.staging--; t.staging == 0 {
				c.run(t)
			}
		}
	}
	derived := w.derives[e.id]
	delete(w.derives, e.id)
	for _, d := range derived {
		if !e.holds(w.id) { // unlinked as it arrived: no task reads it, nor d
			delete(w.inflight, d)
			continue
		}
		if de := c.files.files[d]; de != nil {
			c.begin(w, de, Source{Kind: FromDerive, From: e.id})
		}
	}
}

// fetchFailed gives up on bringing f to w: the tasks waiting for it there
// (and for files derived from it) are retried elsewhere or fail.
func (c *Core) fetchFailed(w *worker, f FileID, why string, full bool) {
	need := int64(0)
	if e := c.files.files[f]; e != nil {
		need = e.size
	}
	files := []FileID{f}
	for len(files) > 0 {
		f, files = files[0], files[1:]
		for _, d := range w.derives[f] {
			delete(w.inflight, d)
			files = append(files, d)
		}
		delete(w.derives, f)
		waiting := append([]*task(nil), w.waiting[f]...)
		for _, t := range waiting {
			if t.state == Staging && t.worker == w {
				c.release(t)
				if full && need > 0 { // of unknown size, it may never fit: fail over as before
					c.waitForSpace(t, need, w.id, "input")
				} else {
					c.retryOrFinish(t, Outcome{Kind: InputMissing, Message: why}, true)
				}
			}
		}
		delete(w.waiting, f)
	}
}

// addReplica records that w holds e, as how says. A retired file (see
// retire) is unlinked from w at once.
func (c *Core) addReplica(w *worker, e *fileEntry, how copyState) {
	if old := w.holds[e.id]; old != copyNone && old != copyKept {
		w.setCopy(e, how) // held again by a fetch, or kept as an output
	}
	if e.addReplica(w.id) {
		w.setCopy(e, how)
		w.cacheBytes += e.size
		w.peakCache = max(w.peakCache, w.cacheBytes)
		if e.retired && e.needers == 0 {
			c.retire([]*fileEntry{e})
		}
	}
}

// wantsReplica reports whether e should have a copy on w for replication.
func (c *Core) wantsReplica(e *fileEntry, w *worker) bool {
	return e != nil && e.kind == Produced && int(e.want) > len(e.replicas) && !e.holds(w.id)
}

// replicate starts copies of e until it has the replicas it wants,
// counting those in flight, on open workers that lack it.
func (c *Core) replicate(e *fileEntry) {
	if e.kind != Produced || int(e.want) <= 1 || len(e.replicas) == 0 {
		return
	}
	have := len(e.replicas)
	for _, w := range c.open {
		if _, busy := w.inflight[e.id]; busy {
			have++
		}
	}
	for i := 0; have < int(e.want) && i < len(c.open); i++ {
		w := c.open[i]
		if e.holds(w.id) {
			continue
		}
		if _, busy := w.inflight[e.id]; busy {
			continue
		}
		c.startFetch(w, e)
		have++
	}
	if have < int(e.want) {
		c.short[e.id] = struct{}{} // too few workers: again when one joins
	} else if len(c.short) > 0 {
		delete(c.short, e.id)
	}
}

// replicateShort places the copies that files lacked for want of workers
// (see replicate), once a worker joins.
func (c *Core) replicateShort() {
	ids := make([]FileID, 0, len(c.short))
	for f := range c.short {
		ids = append(ids, f)
	}
	slices.Sort(ids)
	for _, f := range ids {
		delete(c.short, f)
		if e := c.files.files[f]; e != nil && e.state == fileReady && !e.retired {
			c.replicate(e)
		}
	}
}
