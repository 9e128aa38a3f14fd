package core

import (
	"fmt"
	"slices"
	"sort"
)

// The catalog knows every file tasks read but the caller's inline content:
// who produces it, where its replicas are (the workers and the manager's
// store), and who waits for it. A file not in it is available everywhere
// without staging (content inside the task).

type fileState uint8

const (
	filePending fileState = iota + 1 // its producer has not succeeded (or is recreating it)
	fileReady
	fileFailed // can never be had: producer failed for good, or external file missing
)

type fileEntry struct {
	id       FileID
	kind     FileKind
	producer TaskID // 0 for files no task produces
	from     FileID // Derived: the file it is made from
	want     int32  // replicas wanted (Produced temp files)
	state    fileState
	why      string   // for fileFailed
	waiters  []TaskID // consumers waiting while pending
	size     int64
	replicas []WorkerID // workers holding it, ascending
	manager  bool       // a copy is at the manager's store
	inline   bool       // manager: small enough to travel inside the Run message
	needers  int32      // unfinished tasks that read it
	stagers  []WorkerID // workers where tasks may wait for it (cleaned lazily)

	level    Level
	keep     keepRule // Produced: whether its producer's worker keeps it
	sessions []string // live sessions that declared it
	orphan   bool     // every session that declared it has ended
	// retired: its level says workers may drop it and no unfinished task
	// reads it; every replica it gains is unlinked at once (see retire).
	retired bool
	depth   int32    // LevelTask: see FileSpec.Depth
	readers []TaskID // Produced: the tasks that read it once a depth was declared (see pinned)

	// Checkpoints (checkpoint.go).
	nondet   bool     // Produced: by a nondeterministic task
	ckpt     Keep     // Produced: its producer's Keep
	ckptFrom WorkerID // the worker a Checkpoint of it was asked from; 0 when none is
}

// keepRule says whether the worker that produces a file keeps a copy.
type keepRule uint8

const (
	keepNever  keepRule = iota // an output never declared: sent to the manager only
	keepAlways                 // a declared Produced file not sent to the manager (temp)
	keepIfRead                 // sent to the manager; kept too while a task reads it
)

// staged reports whether tasks must have the file brought to their worker
// before they run (as opposed to receiving it inside the Run message).
func (e *fileEntry) staged() bool {
	switch e.kind {
	case Origin, Derived:
		return true
	case External, Produced:
		return !e.inlined()
	}
	return false
}

// inlined reports whether the file travels from the manager inside the Run
// message of the tasks that read it.
func (e *fileEntry) inlined() bool { return e.inline && e.manager && e.state == fileReady }

func (e *fileEntry) holds(w WorkerID) bool {
	i := sort.Search(len(e.replicas), func(i int) bool { return e.replicas[i] >= w })
	return i < len(e.replicas) && e.replicas[i] == w
}

func (e *fileEntry) addReplica(w WorkerID) bool {
	i := sort.Search(len(e.replicas), func(i int) bool { return e.replicas[i] >= w })
	if i < len(e.replicas) && e.replicas[i] == w {
		return false
	}
	e.replicas = append(e.replicas, 0)
	copy(e.replicas[i+1:], e.replicas[i:])
	e.replicas[i] = w
	return true
}

func (e *fileEntry) dropReplica(w WorkerID) bool {
	i := sort.Search(len(e.replicas), func(i int) bool { return e.replicas[i] >= w })
	if i == len(e.replicas) || e.replicas[i] != w {
		return false
	}
	e.replicas = append(e.replicas[:i], e.replicas[i+1:]...)
	return true
}

type catalog struct {
	barred   []barredRead // barred tasks that began to wait for ready files in this step (see checkpoint.go)
	files    map[FileID]*fileEntry
	sessions map[string][]FileID // live sessions, with the files they declared
	maxDepth int32               // the largest depth declared (see above)
}

func newCatalog() catalog {
	return catalog{files: make(map[FileID]*fileEntry), sessions: make(map[string][]FileID)}
}

// declare records what the caller says of files, and that session (if
// any) declared them. A declaration never downgrades what the catalog
// learned (state, replicas).
func (c *catalog) declare(session string, specs []FileSpec) {
	for _, s := range specs {
		e := c.files[s.ID]
		if e == nil {
			e = &fileEntry{id: s.ID, state: fileReady}
			if s.Kind == Produced {
				e.state = filePending
			}
			c.files[s.ID] = e
		}
		if s.Level != 0 {
			e.level, e.depth = s.Level, min(max(s.Depth, 0), MaxDepth)
			c.maxDepth = max(c.maxDepth, e.depth)
		}
		if session != "" && !slices.Contains(e.sessions, session) {
			e.sessions = append(e.sessions, session)
			e.orphan = false
			c.sessions[session] = append(c.sessions[session], e.id)
		}
		if s.Kind == 0 {
			continue // its level and session only
		}
		if s.Kind == Produced {
			e.keep = keepAlways
			if s.Upload {
				e.keep = keepIfRead
			}
		}
		if e.kind == 0 || e.producer == 0 {
			e.kind = s.Kind
		}
		e.from = s.From
		e.want = max(s.Replicas, 1)
		if s.Size > 0 {
			e.size = s.Size
		}
		if e.kind == External {
			e.manager, e.inline = true, s.Inline
		}
	}
}

// claim records that task id will produce outputs. A file has one producer.
func (c *catalog) claim(id TaskID, outputs []FileID) error {
	for _, f := range outputs {
		if e := c.files[f]; e != nil && e.producer != 0 {
			return fmt.Errorf("output file %d is already produced by task %d", f, e.producer)
		}
	}
	for _, f := range outputs {
		e := c.files[f]
		if e == nil {
			e = &fileEntry{id: f, kind: Produced, want: 1}
			c.files[f] = e
		}
		e.kind, e.producer, e.state = Produced, id, filePending
	}
	return nil
}

// deps calls visit with each file t depends on: its inputs, and for an
// unpacked (Derived) input the files it is unpacked from, which must be
// had before it can be made.
func (c *catalog) deps(t *task, visit func(e *fileEntry)) {
	for _, f := range t.spec.Inputs {
		for e, n := c.files[f], 0; e != nil && n <= maxUnpackChain; n++ {
			visit(e)
			if e.kind != Derived {
				break
			}
			e = c.files[e.from]
		}
	}
}

// failedDep returns why a file t reads (or one it is unpacked from) can
// never be had, or "" if none is lost for good.
func (c *catalog) failedDep(t *task) (why string) {
	c.deps(t, func(e *fileEntry) {
		if why == "" && e.state == fileFailed {
			why = e.why
		}
	})
	return why
}

// maxUnpackChain bounds the files followed from an unpacked input, should
// declarations form a loop.
const maxUnpackChain = 8

// await registers t as a waiter on each of its pending inputs (and the files
// its unpacked inputs come from) and returns how many it waits for, or a
// reason why it can never run.
func (c *catalog) await(t *task) (missing int32, why string) {
	c.deps(t, func(e *fileEntry) {
		e.needers++ // on every one, as release forgets every one
		e.retired = false
		if c.maxDepth > 0 && e.kind == Produced && !slices.Contains(e.readers, t.spec.ID) {
			e.readers = append(e.readers, t.spec.ID)
		}
		if why != "" {
			return
		}
		switch {
		case e.state == fileReady && t.barred() && e.uncommitted():
			e.waiters = append(e.waiters, t.spec.ID) // until it is checkpointed
			c.barred = append(c.barred, barredRead{t.spec.ID, e})
			missing++
		case e.state == fileReady:
		case e.state == fileFailed:
			why = e.why
		case e.producer == t.spec.ID:
			why = fmt.Sprintf("task %d reads its own output file %d", t.spec.ID, e.id)
		default:
			e.waiters = append(e.waiters, t.spec.ID)
			missing++
		}
	})
	if why != "" {
		return 0, why
	}
	return missing, ""
}

// allReady reports whether every file in fs exists now. A file the
// catalog does not know is external: it exists.
func (c *catalog) allReady(fs []FileID) bool {
	for _, f := range fs {
		if e := c.files[f]; e != nil && e.state != fileReady {
			return false
		}
	}
	return true
}

// release forgets that t needs its inputs (t finished), and returns those
// that no unfinished task reads any more.
func (c *catalog) release(t *task) []*fileEntry {
	var unread []*fileEntry
	c.deps(t, func(e *fileEntry) {
		if e.needers > 0 {
			if e.needers--; e.needers == 0 {
				unread = append(unread, e)
			}
		}
	})
	return unread
}

// endSession forgets session, and returns the files it declared that no
// live session declares any more.
func (c *catalog) endSession(session string) []*fileEntry {
	var orphans []*fileEntry
	for _, f := range c.sessions[session] {
		e := c.files[f]
		if i := slices.Index(e.sessions, session); i >= 0 {
			e.sessions = slices.Delete(e.sessions, i, i+1)
			if len(e.sessions) == 0 {
				e.orphan = true
				orphans = append(orphans, e)
			}
		}
	}
	delete(c.sessions, session)
	return orphans
}

// failed marks outputs as never to be produced and returns their waiters.
func (c *catalog) failed(outputs []FileID, why string) []TaskID {
	var woken []TaskID
	for _, f := range outputs {
		if e := c.files[f]; e != nil {
			e.state = fileFailed
			e.why = why
			woken = append(woken, e.waiters...)
			e.waiters = nil
		}
	}
	return woken
}

// missing marks an external file as absent. A file that a task produces is
// left alone: its producer decides.
func (c *catalog) missing(f FileID, why string) {
	if e := c.files[f]; e == nil {
		c.files[f] = &fileEntry{id: f, kind: External, state: fileFailed, why: why}
	} else if e.producer == 0 {
		e.state, e.why = fileFailed, why
	}
}

// Producer returns the task that claimed f as an output, if one did. A
// file keeps its producer for the core's life, after the task is forgotten
// too, so that no other task claims it.
func (c *Core) Producer(f FileID) (TaskID, bool) {
	if e := c.files.files[f]; e != nil && e.producer != 0 {
		return e.producer, true
	}
	return 0, false
}
