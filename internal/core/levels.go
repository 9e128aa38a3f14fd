package core

import (
	"slices"
	"sort"
)

// Cache levels decide when workers drop a file (see Level). The core
// unlinks a file from every worker that holds it, and forgets those
// replicas as it would on FilesDropped, once no unfinished task reads it
// and its level lets it go:
//   - task level: when the last unfinished task that reads it ends;
//   - workflow level: when every session that declared it has ended
//     (SessionEnded), or, if tasks still read it then, when the last of
//     them ends.
//
// Worker and forever levels, and files never declared with a level, are
// never unlinked. A file is retired from then on: a copy it gains later
// (a fetch in flight that lands, an output its producer reports kept) is
// unlinked at once, until a new task reads it. That task stages it again
// as it would a dropped file: from another copy, the manager or its origin,
// or, for a produced file with no copy left, by running its producer again
// (Rerun) while the core retains it. Unlinking the last copy of a produced
// temp file that a later submit reads is what the client asked for by its
// level: that submit recreates it or fails with FileLost.

// Pruning is the task level with a depth: a temp file whose level is
// LevelTask and whose Depth is N stays until no unfinished task reads it
// nor, N levels down, any output of a task that read it (the readers of
// its readers). Depth bounds how far back a lost file must re-run its
// producers: those of files still held are not re-run. Readers are those
// the core still knows (unfinished or retained for lineage).

// MaxDepth is the largest FileSpec.Depth; a larger one counts as MaxDepth.
const MaxDepth = 16

// pinned reports whether e must stay for its depth: an output of a task
// that read it, e.depth levels down, is still read by an unfinished task.
func (c *Core) pinned(e *fileEntry) bool {
	return e.depth > 0 && c.readBelow(e, e.depth)
}

// readBelow reports whether an unfinished task reads an output of a task
// that read e, or (n > 1) one further below, n levels down.
func (c *Core) readBelow(e *fileEntry, n int32) bool {
	for _, r := range e.readers {
		t := c.tasks[r]
		if t == nil {
			t = c.retained[r]
		}
		if t == nil {
			continue // forgotten: its outputs are not in workers only
		}
		for _, f := range t.spec.Outputs {
			o := c.files.files[f]
			if o == nil {
				continue
			}
			if o.needers > 0 || n > 1 && c.readBelow(o, n-1) {
				return true
			}
		}
	}
	return false
}

// above adds to files those of their ancestors that a depth may have kept
// for them: the inputs of their producers, up to the largest depth declared, whose depth
// reaches them. Call it with files no unfinished task reads any more.
func (c *Core) above(files []*fileEntry) []*fileEntry {
	if c.files.maxDepth == 0 {
		return files // no depth keeps any file
	}
	level := files
	seen := make(map[*fileEntry]bool)
	for d := int32(1); d <= c.files.maxDepth && len(level) > 0; d++ {
		var next []*fileEntry
		for _, e := range level {
			if seen[e] {
				continue
			}
			seen[e] = true
			if e.producer == 0 {
				continue
			}
			p := c.tasks[e.producer]
			if p == nil {
				p = c.retained[e.producer]
			}
			if p == nil {
				continue
			}
			for _, f := range p.spec.Inputs {
				a := c.files.files[f]
				if a == nil || a.kind != Produced {
					continue
				}
				next = append(next, a)
				if a.level == LevelTask && a.depth >= d && a.needers == 0 && !a.retired {
					files = append(files, a)
				}
			}
		}
		level = next
	}
	return files
}

// expired reports whether e's level lets workers drop it once no task reads it.
func (e *fileEntry) expired() bool {
	switch e.level {
	case LevelTask:
		return true
	case LevelWorkflow:
		return e.orphan
	}
	return false
}

// retire unlinks each of files that has expired and that no unfinished
// task reads from the workers that hold it, with one Unlink per worker.
func (c *Core) retire(files []*fileEntry) {
	if c.deferRetire {
		c.retiring = append(c.retiring, files...)
		return
	}
	var by map[WorkerID][]FileID
	files = c.above(files)
	for _, e := range files {
		if e.needers > 0 || !e.expired() || c.pinned(e) {
			continue
		}
		e.retired = true
		for _, wid := range slices.Clone(e.replicas) {
			w := c.workers[wid]
			if w == nil {
				continue // leaving: its replicas go with it
			}
			if by == nil {
				by = make(map[WorkerID][]FileID)
			}
			by[wid] = append(by[wid], e.id)
			w.pruned += e.size
			c.pruned += e.size
			c.dropReplica(w, e) // no task needs it: no lineage
		}
	}
	for _, w := range byWorker(by) {
		c.emit(Unlink{Worker: w, Files: by[w]})
	}
	if len(by) > 0 {
		c.unpark = c.unpark || len(c.parked) > 0 // room for a producer that waits for it
	}
}

// byWorker returns the workers of by, in ID order, so that actions per
// worker come out deterministically.
func byWorker(by map[WorkerID][]FileID) []WorkerID {
	ws := make([]WorkerID, 0, len(by))
	for w := range by {
		ws = append(ws, w)
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i] < ws[j] })
	return ws
}

// releaseFiles forgets that t reads its inputs (t ended) and unlinks those
// that no task reads any more, if their level lets them go.
func (c *Core) releaseFiles(t *task) {
	if unread := c.files.release(t); len(unread) > 0 {
		c.retire(unread)
	}
}

// sessionEnded unlinks the workflow-level files that only ended sessions
// declared, unless a task still reads them (see releaseFiles).
func (c *Core) sessionEnded(session string) {
	c.endLeasesIf("session ended", func(l *lease) bool { return l.session == session })
	c.retire(c.files.endSession(session))
}

// keep returns the outputs of t that its worker keeps in its cache (see
// Dispatch.Keep).
func (c *Core) keep(t *task) []FileID {
	var keep []FileID
	for _, f := range t.spec.Outputs {
		e := c.files.files[f]
		if e == nil {
			continue
		}
		switch {
		case e.keep == keepAlways, e.keep == keepIfRead && e.needers > 0:
			keep = append(keep, f)
		}
	}
	return keep
}
