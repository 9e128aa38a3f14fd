package coretest

// Data: files the core stages (temp outputs, URLs, unpacked archives), what
// the fake workers really hold, their answers to Fetch actions, and the
// invariants on transfers, lineage and lost files. All of it is off unless
// a data field of Config is set, so that runs without it replay as before.

import (
	"fmt"
	"slices"
	"strings"

	"trellis/internal/core"
)

// dataFile is the model of a file a task reads or writes, beyond the
// client's uploads: how it was declared and where it really is.
type dataFile struct {
	id      core.FileID
	kind    core.FileKind
	temp    bool        // Produced and declared: kept on workers, reported Kept
	from    core.FileID // Derived: the file it is unpacked from
	want    int32       // replicas asked for
	size    int64
	bad     bool            // a URL whose origin always fails
	manager bool            // at the manager's store: uploaded (External), or a report put a copy there
	inline  bool            // manager: small enough to travel inside the Run message
	at      []core.WorkerID // live workers that really hold it
	lost    []string        // reasons of its FileLost actions
	// mustFail: consumers neither done nor running when the first FileLost
	// came; they can only end with InputMissing (or Cancelled).
	mustFail []*simTask
	lostStep int
	probe    *simTask // the probe task that read it after the run, if any

	level    core.Level
	sessions []string // that declared it
	unlinked bool     // an Unlink named it
	depth    int32    // task-level temp files: FileSpec.Depth
}

// fileSet is a set of files in insertion order, for deterministic picks.
type fileSet struct {
	pos  map[core.FileID]int
	list []core.FileID
}

func (fs *fileSet) has(f core.FileID) bool { _, ok := fs.pos[f]; return ok }

func (fs *fileSet) add(f core.FileID) bool {
	if fs.pos == nil {
		fs.pos = make(map[core.FileID]int)
	}
	if fs.has(f) {
		return false
	}
	fs.pos[f] = len(fs.list)
	fs.list = append(fs.list, f)
	return true
}

func (fs *fileSet) remove(f core.FileID) bool {
	i, ok := fs.pos[f]
	if !ok {
		return false
	}
	last := fs.list[len(fs.list)-1]
	fs.list[i], fs.pos[last] = last, i
	fs.list = fs.list[:len(fs.list)-1]
	delete(fs.pos, f)
	return true
}

// simFetch is a Fetch the core emitted and the harness has not answered.
type simFetch struct {
	a    core.Fetch
	pos  int   // in sim.fetches
	full bool  // its worker's cache could not make room for it (Config.BoundedCaches)
	size int64 // reserved
	// gone: a claim (FromCache) of a file its worker had evicted, which
	// the core has not heard of: the claim fails.
	gone bool
}

type workerFile struct {
	w core.WorkerID
	f core.FileID
}

// dataState is the harness's bookkeeping of files and transfers.
type dataState struct {
	decl      map[core.FileID]*dataFile
	temps     []core.FileID // temp outputs, in declaration order
	urls      []core.FileID
	externals []core.FileID
	derived   []core.FileID
	specs     []core.FileSpec // to declare before the next batch

	fetches      []*simFetch
	fetchOf      map[uint64]*simFetch
	fetchTo      map[workerFile]*simFetch
	peerOut      map[core.WorkerID]int
	managerOut   int
	originOut    map[core.FileID]int
	lastTransfer uint64
	answered     []uint64 // transfers the core no longer knows, for stale reports

	cur       *simFetch  // the fetch the current TransferDone answers
	noop      bool       // the current FilesDropped names no file the worker holds
	rerunning int        // tasks the core runs again (Rerun without Recreated or FileLost yet)
	reruns    []*simTask // those tasks, and some that ended since
	rejoins   []core.WorkerJoined
	probes    int

	sessions    []string // live client sessions (with LevelFraction)
	ended       map[string]bool
	nextSession int
}

func newDataState() dataState {
	return dataState{
		decl:      make(map[core.FileID]*dataFile),
		fetchOf:   make(map[uint64]*simFetch),
		fetchTo:   make(map[workerFile]*simFetch),
		peerOut:   make(map[core.WorkerID]int),
		originOut: make(map[core.FileID]int),
		ended:     make(map[string]bool),
	}
}

// dataOn reports whether the run uses staged files at all.
func (c Config) dataOn() bool {
	return c.TempFraction > 0 || c.ExternalFraction > 0 || c.OriginFraction > 0 || c.DerivedFraction > 0
}

var fileSizes = []int64{1 << 10, 1 << 16, 1 << 20, 50 << 20, 1 << 30}

// newFile makes a file of kind in the model, to declare before the next batch.
func (s *sim) newFile(kind core.FileKind, temp bool) *dataFile {
	s.nextFile++
	df := &dataFile{id: s.nextFile, kind: kind, temp: temp, size: pick(s.rng, fileSizes) + int64(s.rng.IntN(1000))}
	s.d.decl[df.id] = df
	return df
}

// genOutputs records t's outputs in the model; temp ones are declared.
func (s *sim) genOutputs(outputs []core.FileID) {
	for _, f := range outputs {
		df := &dataFile{id: f, kind: core.Produced, want: 1}
		s.d.decl[f] = df
		if s.rng.Float64() >= s.cfg.TempFraction {
			// A plain output: at the manager once its producer succeeds;
			// half of them small enough to travel inline.
			df.size = 1 << 20
			if s.rng.IntN(2) == 0 {
				df.inline, df.size = true, 100
			}
			continue
		}
		df.temp = true
		df.size = pick(s.rng, fileSizes) + int64(s.rng.IntN(1000))
		if s.cfg.MaxReplicas > 1 && s.rng.IntN(3) == 0 {
			df.want = int32(2 + s.rng.IntN(s.cfg.MaxReplicas-1))
		}
		s.d.temps = append(s.d.temps, f)
		spec := core.FileSpec{ID: f, Kind: core.Produced, Replicas: df.want, Level: s.level(df)}
		if spec.Level == core.LevelTask && s.cfg.MaxDepth > 0 {
			df.depth = s.rng.Int32N(s.cfg.MaxDepth + 1)
			spec.Depth = df.depth
		}
		s.d.specs = append(s.d.specs, spec)
	}
}

// pickExternal returns a file at the manager's store for a task to read: a
// new one now and then, otherwise one that other tasks read too. A third
// are small enough to travel inline.
func (s *sim) pickExternal() core.FileID {
	r := s.rng
	if len(s.d.externals) > 0 && r.IntN(3) != 0 {
		return s.redeclare(s.d.externals[r.IntN(len(s.d.externals))])
	}
	df := s.newFile(core.External, false)
	df.manager, df.inline = true, r.IntN(3) == 0
	s.d.externals = append(s.d.externals, df.id)
	s.d.specs = append(s.d.specs, core.FileSpec{ID: df.id, Kind: core.External, Size: df.size, Inline: df.inline, Level: s.level(df)})
	return df.id
}

// pickURL returns a URL for a task to read: a new one now and then,
// otherwise one that other tasks read too.
func (s *sim) pickURL() core.FileID {
	r := s.rng
	if len(s.d.urls) > 0 && r.IntN(3) != 0 {
		return s.redeclare(s.d.urls[r.IntN(len(s.d.urls))])
	}
	df := s.newFile(core.Origin, false)
	df.bad = r.Float64() < s.cfg.BadURLFraction
	spec := core.FileSpec{ID: df.id, Kind: core.Origin, Level: s.level(df)}
	if r.IntN(2) == 0 {
		spec.Size = df.size
	}
	s.d.urls = append(s.d.urls, df.id)
	s.d.specs = append(s.d.specs, spec)
	return df.id
}

// pickDerived returns an unpacked archive for a task to read: of a URL or of
// an output of an earlier task.
func (s *sim) pickDerived() core.FileID {
	r := s.rng
	if len(s.d.derived) > 0 && r.IntN(2) == 0 {
		return s.d.derived[r.IntN(len(s.d.derived))]
	}
	var from core.FileID
	if n := len(s.pickable); n > 0 && r.IntN(2) == 0 {
		from = s.pickable[n-1-r.IntN(min(n, 64))]
	} else {
		from = s.pickURL()
	}
	df := s.newFile(core.Derived, false)
	df.from = from
	s.d.derived = append(s.d.derived, df.id)
	s.d.specs = append(s.d.specs, core.FileSpec{ID: df.id, Kind: core.Derived, From: from, Level: s.level(df)})
	return df.id
}

// depsOf returns the files t depends on: its inputs, and the files its
// unpacked inputs are unpacked from.
func (s *sim) depsOf(inputs []core.FileID) []core.FileID {
	deps := slices.Clone(inputs)
	for _, f := range inputs {
		for df := s.d.decl[f]; df != nil && df.kind == core.Derived; df = s.d.decl[df.from] {
			deps = append(deps, df.from)
		}
	}
	return deps
}

// Real holdings.

func (s *sim) hold(w *simWorker, f core.FileID) {
	if !w.holds.add(f) {
		return
	}
	if df := s.d.decl[f]; df != nil {
		df.at = append(df.at, w.id)
	}
}

func (s *sim) unhold(w *simWorker, f core.FileID) {
	w.fetched.remove(f)
	if !w.holds.remove(f) {
		return
	}
	if df := s.d.decl[f]; df != nil {
		if i := slices.Index(df.at, w.id); i >= 0 {
			df.at = slices.Delete(df.at, i, i+1)
		}
	}
	s.ckptUnheld(w, f)
}

// available reports whether f can be had without running anything: a live
// worker holds it, or the manager does.
func (s *sim) available(f core.FileID) bool {
	df := s.d.decl[f]
	return df == nil || df.manager || len(df.at) > 0
}

func (s *sim) allAvailable(fs []core.FileID) bool {
	for _, f := range fs {
		if !s.available(f) {
			return false
		}
	}
	return true
}

// workerGone forgets what w held and the fetches to it, which the core
// drops with it.
func (s *sim) workerGone(w *simWorker) {
	for _, f := range slices.Clone(w.holds.list) {
		s.unhold(w, f)
	}
	w.evicted, w.loose, w.fetched = fileSet{}, fileSet{}, fileSet{}
	for i := 0; i < len(s.d.fetches); {
		if f := s.d.fetches[i]; f.a.Worker == w.id {
			s.removeFetch(f)
			continue
		}
		i++
	}
}

// Fetches.

func (s *sim) removeFetch(f *simFetch) {
	if w := s.workers[f.a.Worker]; w != nil {
		w.reserved -= f.size
	}
	last := s.d.fetches[len(s.d.fetches)-1]
	s.d.fetches[f.pos], last.pos = last, f.pos
	s.d.fetches = s.d.fetches[:len(s.d.fetches)-1]
	delete(s.d.fetchOf, f.a.Transfer)
	delete(s.d.fetchTo, workerFile{f.a.Worker, f.a.File})
	switch f.a.Source.Kind {
	case core.FromPeer:
		if s.d.peerOut[f.a.Source.Peer]--; s.d.peerOut[f.a.Source.Peer] == 0 {
			delete(s.d.peerOut, f.a.Source.Peer)
		}
	case core.FromManager:
		s.d.managerOut--
	case core.FromOrigin:
		if s.d.originOut[f.a.File]--; s.d.originOut[f.a.File] == 0 {
			delete(s.d.originOut, f.a.File)
		}
	}
	if len(s.d.answered) < historySize {
		s.d.answered = append(s.d.answered, f.a.Transfer)
	} else {
		s.d.answered[int(f.a.Transfer)%historySize] = f.a.Transfer
	}
}

// applyFetch checks a Fetch against what the workers really hold and the
// limits on concurrent transfers, and records it.
// checkFetchTask fails unless the task a fetch names is one that could
// be staging: submitted, not finished (or run again), not running, and
// reading the file (or one unpacked from it).
func (s *sim) checkFetchTask(a core.Fetch) {
	t := s.task(a.Task)
	switch {
	case t == nil || !t.submitted || t.rejected:
		s.failf("%+v names a task never accepted", a)
	case t.done && !t.rerunning:
		s.failf("%+v names a task that ended", a)
	case t.worker != nil:
		s.failf("%+v names a task running on worker %d", a, t.worker.id)
	case !slices.Contains(t.deps, a.File):
		s.failf("%+v names a task that does not read the file (it reads %v)", a, t.deps)
	}
	s.stats.FetchesForTasks++
}

func (s *sim) applyFetch(a core.Fetch) {
	w := s.workers[a.Worker]
	df := s.d.decl[a.File]
	switch {
	case w == nil:
		s.failf("%+v to a departed or unknown worker", a)
	case df == nil:
		s.failf("%+v of a file the harness never made", a)
	case a.Transfer <= s.d.lastTransfer:
		s.failf("%+v: transfer ID not above the last one, %d", a, s.d.lastTransfer)
	case s.d.fetchTo[workerFile{a.Worker, a.File}] != nil:
		s.failf("%+v while transfer %d of the file to that worker is in flight", a, s.d.fetchTo[workerFile{a.Worker, a.File}].a.Transfer)
	case w.holds.has(a.File) && a.Source.Kind != core.FromCache:
		s.failf("%+v of a file the worker already holds", a)
	}
	if a.Task != 0 {
		s.checkFetchTask(a)
	}
	s.d.lastTransfer = a.Transfer
	switch a.Source.Kind {
	case core.FromPeer:
		p := s.workers[a.Source.Peer]
		switch {
		case p == nil:
			s.failf("%+v from a departed or unknown peer", a)
		case p == w:
			s.failf("%+v from the worker itself", a)
		case !s.believed(p, a.File):
			s.failf("%+v from a peer that does not hold the file (holders %v)", a, df.at)
		}
		if s.d.peerOut[p.id]++; s.d.peerOut[p.id] > core.PeerTransfers {
			s.failf("%+v: %d fetches from peer %d, the limit is %d", a, s.d.peerOut[p.id], p.id, core.PeerTransfers)
		}
	case core.FromManager:
		if !df.manager {
			s.failf("%+v: the manager has no copy (kind %d, holders %v)", a, df.kind, df.at)
		}
		if s.d.managerOut++; s.d.managerOut > core.ManagerTransfers {
			s.failf("%+v: %d fetches from the manager, the limit is %d", a, s.d.managerOut, core.ManagerTransfers)
		}
	case core.FromOrigin:
		if df.kind != core.Origin {
			s.failf("%+v from an origin, of a file of kind %d", a, df.kind)
		}
		if s.d.originOut[a.File]++; s.d.originOut[a.File] > core.OriginTransfers {
			s.failf("%+v: %d fetches of the URL from its origin, the limit is %d", a, s.d.originOut[a.File], core.OriginTransfers)
		}
	case core.FromDerive:
		if df.kind != core.Derived || a.Source.From != df.from {
			s.failf("%+v: the file is of kind %d, unpacked from %d", a, df.kind, df.from)
		}
		if !w.holds.has(df.from) {
			s.failf("%+v: the worker does not hold %d to unpack it", a, df.from)
		}
	case core.FromCache:
		if !w.loose.has(a.File) {
			s.failf("%+v claims a copy the core did not release (or held again since)", a)
		}
	default:
		s.failf("%+v: unknown source", a)
	}
	f := &simFetch{a: a, pos: len(s.d.fetches)}
	if w != nil {
		w.loose.remove(a.File) // the Fetch holds it,
		// and answers for an eviction not reported yet.
		f.gone = w.evicted.remove(a.File) && a.Source.Kind == core.FromCache
		if a.Source.Kind != core.FromCache && s.cfg.BoundedCaches && df != nil && a.Size > 0 {
			if f.full = !s.reserve(w, df.size); !f.full {
				f.size = df.size
			}
		}
	}
	s.d.fetches = append(s.d.fetches, f)
	s.d.fetchOf[a.Transfer] = f
	s.d.fetchTo[workerFile{a.Worker, a.File}] = f
	s.stats.Fetches++
}

// answerFetch has a fake worker report how a random pending fetch ended:
// it fails if its source does not really have the file, and now and then
// at random while faults are on.
func (s *sim) answerFetch(faults bool) {
	r := s.rng
	f := s.d.fetches[r.IntN(len(s.d.fetches))]
	if s.reportEvicted(s.workers[f.a.Worker]) {
		return // first, as the worker reports evictions before a fetch's end
	}
	a := f.a
	w := s.workers[a.Worker]
	df := s.d.decl[a.File]
	ev := core.TransferDone{Transfer: a.Transfer, OK: true, Size: df.size}
	fail := func(source bool, why string) {
		ev.OK, ev.SourceFault, ev.Size, ev.Why = false, source, 0, why
	}
	switch a.Source.Kind {
	case core.FromPeer:
		if p := s.workers[a.Source.Peer]; p == nil {
			fail(true, "peer gone")
		} else if !p.holds.has(a.File) {
			fail(true, "peer no longer holds it")
		}
	case core.FromManager:
		if !df.manager {
			fail(true, "not at the manager")
		}
	case core.FromOrigin:
		if df.bad {
			fail(true, "404 Not Found")
		}
	case core.FromDerive:
		if !w.holds.has(df.from) {
			fail(true, "archive gone")
		}
	case core.FromCache:
		if !w.holds.has(a.File) {
			fail(true, "evicted before the claim")
		}
	}
	if ev.OK && f.full {
		fail(false, "disk full")
		ev.CacheFull = true
	}
	if ev.OK && faults && r.Float64() < s.cfg.TransferFailRate && a.Source.Kind != core.FromCache {
		if r.IntN(3) == 0 {
			fail(false, "disk full")
		} else {
			fail(true, "connection reset")
		}
	}
	s.removeFetch(f)
	if ev.OK {
		s.hold(w, a.File)
		w.fetched.add(a.File)
	} else {
		s.stats.FetchFailures++
	}
	s.d.cur = f
	s.do(ev)
	s.d.cur = nil
}

// reserve makes room for a fetch of size bytes to w, as its cache would
// when the fetch starts (Config.BoundedCaches): it evicts files the core
// released, oldest release first, and reports whether they fit; if not,
// it evicts nothing. Only fetched files count, and each fetch reserves its
// size until it is answered.
func (s *sim) reserve(w *simWorker, size int64) bool {
	limit := w.total.DiskMB << 20
	used := w.reserved
	for _, g := range w.holds.list {
		if w.fetched.has(g) {
			used += s.d.decl[g].size
		}
	}
	if used+size <= limit {
		w.reserved += size
		return true
	}
	var victims []core.FileID
	free := used + size - limit
	for _, g := range w.loose.list {
		if free <= 0 {
			break
		}
		if w.holds.has(g) && w.fetched.has(g) {
			victims = append(victims, g)
			free -= s.d.decl[g].size
		}
	}
	if free > 0 {
		return false
	}
	for _, g := range victims {
		s.unhold(w, g)
		w.evicted.add(g)
		s.stats.Evicted++
	}
	w.reserved += size
	return true
}

// unheard returns the files w evicted that the core has not heard of yet:
// those to report, and those evicted before a claim of them came (the
// claim will fail).
func (s *sim) unheard(w *simWorker) []core.FileID {
	out := slices.Clone(w.evicted.list)
	for _, f := range s.d.fetches {
		if f.a.Worker == w.id && f.gone {
			out = append(out, f.a.File)
		}
	}
	return out
}

// believed reports whether the core must believe that w holds f: it does,
// or evicted it unheard of.
func (s *sim) believed(w *simWorker, f core.FileID) bool {
	return w.holds.has(f) || slices.Contains(s.unheard(w), f)
}

// evictReleased has a random worker evict a random copy the core
// released, unreported until its next report (Config.EvictRate).
func (s *sim) evictReleased() {
	if len(s.live) == 0 {
		return
	}
	w := s.live[s.rng.IntN(len(s.live))]
	var loose []core.FileID
	for _, f := range w.loose.list {
		if w.holds.has(f) && w.fetched.has(f) {
			loose = append(loose, f)
		}
	}
	if len(loose) == 0 {
		return
	}
	f := loose[s.rng.IntN(len(loose))]
	s.unhold(w, f)
	w.evicted.add(f)
	s.stats.Evicted++
}

// reportEvicted has w report the files it evicted (FilesDropped), as a
// worker does before it reports the end of a fetch or an attempt. It
// reports whether there were any.
func (s *sim) reportEvicted(w *simWorker) bool {
	if w == nil || w.gone || len(w.evicted.list) == 0 {
		return false
	}
	ev := core.FilesDropped{Worker: w.id, Files: slices.Clone(w.evicted.list)}
	for _, f := range ev.Files {
		w.loose.remove(f)
	}
	w.evicted = fileSet{}
	s.do(ev)
	return true
}

// addressee returns the worker that action a (an Unlink or a Release)
// names, or nil, and fails if it is gone or a names no file.
func (s *sim) addressee(a core.Action, wid core.WorkerID, files []core.FileID) *simWorker {
	w := s.workers[wid]
	if w == nil {
		s.failf("%+v to a departed or unknown worker", a)
		return nil
	}
	if len(files) == 0 {
		s.failf("%+v names no file", a)
	}
	return w
}

// applyRelease checks a Release: the worker holds (or evicted, unknown to
// the core) each file, and no task running there reads it.
func (s *sim) applyRelease(a core.Release) {
	w := s.addressee(a, a.Worker, a.Files)
	if w == nil {
		return
	}
	for _, f := range a.Files {
		if !w.holds.has(f) && !w.evicted.has(f) {
			s.failf("%+v of file %d, which the worker does not hold", a, f)
		}
		for _, t := range w.running {
			if slices.Contains(t.deps, f) {
				s.failf("%+v of file %d, which task %d running there reads", a, f, t.spec.ID)
			}
		}
		if w.holds.has(f) {
			w.loose.add(f)
		}
		s.stats.Released++
	}
}

// dropReplica has a random worker evict a random file it holds.
func (s *sim) dropReplica() {
	if len(s.live) == 0 {
		return
	}
	w := s.live[s.rng.IntN(len(s.live))]
	if len(w.holds.list) == 0 {
		return
	}
	ev := core.FilesDropped{Worker: w.id}
	for range 1 + s.rng.IntN(2) {
		if len(w.holds.list) == 0 {
			break
		}
		f := w.holds.list[s.rng.IntN(len(w.holds.list))]
		s.unhold(w, f)
		ev.Files = append(ev.Files, f)
	}
	s.stats.Dropped += len(ev.Files)
	s.do(ev)
}

// rejoin remembers that lost worker w comes back, under a new ID, with
// some of the files it held: those the core has not declared lost (by the
// time it joins) and whose producer does not run again now (it may by the
// time it joins: the core must then cope with a copy of a file it is
// recreating).
func (s *sim) rejoin(w *simWorker) {
	ev := s.randomWorker()
	ev.Resources = w.total
	ev.GPUs = slices.Clone(w.devices)
	ev.Resources.GPUs = int64(len(ev.GPUs))
	for _, f := range w.holds.list {
		df := s.d.decl[f]
		if s.rng.IntN(2) == 0 || len(df.lost) > 0 {
			continue
		}
		if fi := s.files[f]; fi != nil && fi.producer.rerunning {
			continue
		}
		ev.Cached = append(ev.Cached, core.CachedFile{File: f, Size: df.size})
	}
	s.d.rejoins = append(s.d.rejoins, ev)
}

// Lineage actions.

func (s *sim) applyRerun(a core.Rerun) {
	t := s.task(a.Task)
	switch {
	case t == nil || !t.done || t.doneKind != core.Success:
		s.failf("%+v of a task without a Done success", a)
	case t.rerunning:
		s.failf("%+v of a task that already runs again", a)
	case t.forgotten:
		s.failf("%+v of a task the core forgot", a)
	}
	if fi := s.files[a.File]; fi == nil || fi.producer != t {
		s.failf("%+v: the task does not produce the file", a)
	}
	if df := s.d.decl[a.File]; s.available(a.File) {
		s.failf("%+v, but the file is at workers %v (manager %v)", a, df.at, df.manager)
	}
	s.setRerunning(t, true)
	s.d.reruns = append(s.d.reruns, t)
	s.stats.Reruns++
}

// checkReruns ends, in the model, the runs again that ended in this step
// with no action: those whose outputs all have a copy again (a worker came
// back with it), so that none is lost.
func (s *sim) checkReruns() {
	for i := 0; i < len(s.d.reruns); {
		t := s.d.reruns[i]
		if _, _, known := s.c.TaskState(t.spec.ID); t.rerunning && known {
			i++
			continue
		}
		s.d.reruns = slices.Delete(s.d.reruns, i, i+1)
		if !t.rerunning {
			continue // Recreated or FileLost
		}
		for _, f := range t.spec.Outputs {
			if !s.available(f) {
				s.failf("task %d no longer runs again, with neither Recreated nor a FileLost of its output %d, which is nowhere", t.spec.ID, f)
			}
		}
		if t.worker != nil {
			f := s.fates[t.spec.ID]
			if f == nil || !f.lost || f.seen {
				s.failf("task %d no longer runs again, but the model expects %+v", t.spec.ID, f)
			}
			f.seen = true
			s.release(t)
		}
		s.setRerunning(t, false)
	}
}

func (s *sim) applyRecreated(a core.Recreated) {
	t := s.task(a.Task)
	switch {
	case t == nil || !t.rerunning:
		s.failf("%+v of a task that was not told to run again", a)
	case t.worker == nil || t.attempt != a.Attempt || t.worker.id != a.Worker:
		s.failf("%+v of an attempt that is not running", a)
	}
	f := s.fates[t.spec.ID]
	if f == nil || !f.recreated || f.seen {
		s.failf("%+v: the model expects %+v", a, f)
	}
	f.seen = true
	t.last = a.Worker
	s.release(t)
	s.setRerunning(t, false)
	s.stats.Recreated++
}

func (s *sim) applyFileLost(a core.FileLost) {
	df := s.d.decl[a.File]
	fi := s.files[a.File]
	switch {
	case df == nil || fi == nil || df.kind != core.Produced:
		s.failf("%+v of a file no task produces", a)
	case a.Why == "":
		s.failf("%+v without a reason", a)
	case !fi.producer.done || fi.producer.doneKind != core.Success:
		s.failf("%+v, whose producer never succeeded (done %v, %s)", a, fi.producer.done, fi.producer.doneKind)
	case s.available(a.File):
		s.failf("%+v, but the file is at workers %v (manager %v)", a, df.at, df.manager)
	case len(df.lost) > 0:
		s.failf("%+v: the file was reported lost already, at step %d: %q", a, df.lostStep, df.lost[0])
	}
	if p := fi.producer; p.rerunning {
		// The run that was to recreate it ended for good.
		if p.worker != nil {
			f := s.fates[p.spec.ID]
			if f == nil || !f.lost || f.seen {
				s.failf("%+v ends the running attempt %d of task %d: the model expects %+v", a, p.attempt, p.spec.ID, f)
			}
			f.seen = true
			s.release(p)
		}
		s.setRerunning(p, false)
	}
	if len(df.lost) == 0 {
		s.stats.FilesLost++
		df.lostStep = s.step
		for _, c := range fi.consumers {
			if !c.done && c.worker == nil {
				df.mustFail = append(df.mustFail, c)
			}
		}
	}
	df.lost = append(df.lost, a.Why)
}

// cacheFull reports whether the current step answers a fetch that failed
// because its worker's cache was full (Config.BoundedCaches).
func (s *sim) cacheFull() bool {
	ev, ok := s.ev.(core.TransferDone)
	return ok && ev.CacheFull
}

// fetchFailedFor reports whether the current step answers a failed fetch
// of a file that t reads on the worker the fetch was to.
func (s *sim) fetchFailedFor(t *simTask) bool {
	f := s.d.cur
	if f == nil || t.worker != nil {
		return false
	}
	for _, in := range t.spec.Inputs {
		for df := s.d.decl[in]; df != nil; df = s.d.decl[df.from] {
			if df.id == f.a.File {
				return true
			}
			if df.kind != core.Derived {
				break
			}
		}
	}
	return false
}

// Checks.

// checkInputsOn fails unless every input of Dispatch a that the model
// knows is on w (held there), or travels inline from the manager's copy.
func (s *sim) checkInputsOn(a core.Dispatch, inputs []core.FileID, w *simWorker) {
	for _, f := range a.Inline() {
		if df := s.d.decl[f]; df == nil || !df.manager || !df.inline || !slices.Contains(inputs, f) {
			s.failf("Dispatch %+v inlines file %d, not an input the manager can send inline", a, f)
		}
	}
	for _, f := range inputs {
		df := s.d.decl[f]
		if df == nil || w.holds.has(f) || slices.Contains(a.Inline(), f) {
			continue
		}
		s.failf("Dispatch %+v: input %d (kind %d) is not on the worker (holders %v, manager %v)", a, f, df.kind, df.at, df.manager)
	}
}

// fileReady reports whether the core must consider f available to tasks
// that wait for it (as opposed to pending or lost). While its producer runs
// again, the model cannot tell which outputs the core waits for (a copy of
// the lost one may come back with a worker, and the core still waits for the
// run): it counts them all as pending, which only makes the check weaker.
func (s *sim) fileReady(fi *fileInfo, f core.FileID) bool {
	p := fi.producer
	if !p.done || p.doneKind != core.Success || p.rerunning {
		return false
	}
	if len(s.d.decl) == 0 {
		return true // no data in this run
	}
	if df := s.d.decl[f]; df != nil && len(df.lost) > 0 {
		return false
	}
	return true
}

// checkDataEnd checks, once everything has settled, that no transfer is
// left and, with files, that every temp file a task read is available, lost
// with a reason (its consumers failed with it), or never produced. Before
// the probes, a file that no task needs any more may be nowhere: the core
// recreates it only when a task needs it again.
func (s *sim) checkDataEnd(files bool) {
	if st := s.c.Stats(); st.Transfers != 0 {
		s.failf("%d transfers still in flight at the end", st.Transfers)
	}
	if n := s.c.Staging(); n != 0 {
		s.failf("%d tasks still staging at the end", n)
	}
	if len(s.d.fetches) != 0 || s.d.rerunning != 0 {
		s.failf("%d fetches unanswered, %d tasks running again at the end", len(s.d.fetches), s.d.rerunning)
	}
	for _, f := range s.d.temps {
		fi, df := s.files[f], s.d.decl[f]
		if !files || fi == nil || len(fi.consumers) == 0 {
			continue
		}
		if p := fi.producer; !p.done || p.doneKind != core.Success {
			continue
		}
		if len(df.lost) == 0 {
			if !s.available(f) && !df.unlinked { // an unlinked file is made again when a task reads it
				s.failf("temp file %d (producer %d) is read by %d tasks but is at no worker, not at the manager, and not reported lost",
					f, fi.producer.spec.ID, len(fi.consumers))
			}
			continue
		}
		// Consumers waiting when it was lost, or submitted since, fail
		// with its reason (or that of another input that failed, or, a
		// call, that of its library's LibraryBroken).
		for _, c := range fi.consumers {
			if c.submitStep <= df.lostStep && !slices.Contains(df.mustFail, c) {
				continue
			}
			if c.doneKind == core.Success && !slices.Contains(c.spec.Inputs, f) {
				continue // it reads a file unpacked from f, which a worker may hold still
			}
			if c.doneKind != core.Cancelled && !c.libBroken && (c.doneKind != core.InputMissing || !s.failedWith(c, c.doneMsg)) {
				s.failf("task %d reads file %d, lost at step %d (%q), but ended %s: %q", c.spec.ID, f, df.lostStep, df.lost, c.doneKind, c.doneMsg)
			}
		}
	}
}

// failedWith reports whether msg is why t cannot run: the reason of the
// first FileLost of a file it depends on, the failure of such a file's
// producer or of a task it runs after, or a fetch that failed for good.
func (s *sim) failedWith(t *simTask, msg string) bool {
	if strings.HasPrefix(msg, "fetch ") { // "fetch from peer: ...": an input that could not be brought
		return true
	}
	for _, f := range t.deps {
		if df := s.d.decl[f]; df != nil && len(df.lost) > 0 && df.lost[0] == msg {
			return true
		}
		if fi := s.files[f]; fi != nil {
			p := fi.producer
			if p.done && p.doneKind != core.Success && msg == fmt.Sprintf("input produced by task %d is missing: that task ended with %s", p.spec.ID, p.doneKind) {
				return true
			}
		}
	}
	for _, id := range t.spec.After {
		if p := s.task(id); p.done && p.doneKind != core.Success && msg == fmt.Sprintf("after task %d, which ended with %s", id, p.doneKind) {
			return true
		}
	}
	return false
}

// probe submits, once the run has settled, a task for each temp file (or
// file unpacked from one) that is not available, and checks that each ends
// either with success, the file being made again, or with InputMissing and
// the reason of a FileLost of the file.
func (s *sim) probe() {
	var batch []core.Task
	add := func(f core.FileID, df *dataFile) {
		t := s.addTask(core.Task{
			ID:           core.TaskID(len(s.tasks) + 1),
			Resources:    core.Resources{MilliCores: 500, MemoryMB: 256},
			Retries:      3,
			RetryOnError: true,
			Inputs:       []core.FileID{f},
		})
		df.probe = t
		batch = append(batch, t.spec)
	}
	for _, f := range s.d.temps {
		fi := s.files[f]
		if fi == nil || !fi.producer.done || fi.producer.doneKind != core.Success || s.available(f) {
			continue
		}
		add(f, s.d.decl[f])
	}
	for _, f := range s.d.derived {
		df := s.d.decl[f]
		if root := s.d.decl[df.from]; root.kind == core.Produced && root.probe != nil {
			add(f, df)
		}
	}
	if len(batch) == 0 {
		return
	}
	s.d.probes = len(batch)
	s.stats.Probes = len(batch)
	s.next += len(batch)
	s.do(core.TasksSubmitted{Tasks: batch})
	s.quiesce()
	for _, t := range s.tasks[len(s.tasks)-len(batch):] {
		s.checkProbe(t)
	}
}

// checkProbe checks how probe task t ended: with success (its file made
// again), with InputMissing and the reason of the first FileLost of its
// file (or of the file that file is unpacked from), or with an outcome a
// fake worker reported at random (FailRate; see outcome), which says
// nothing of the file.
func (s *sim) checkProbe(t *simTask) {
	f := t.spec.Inputs[0]
	root := s.d.decl[f]
	for root.kind == core.Derived {
		root = s.d.decl[root.from]
	}
	switch t.doneKind {
	case core.Success:
		s.stats.ProbesRecreated++
	case core.InputMissing:
		if t.doneMsg == workerFetchFailed || strings.HasPrefix(t.doneMsg, workerFetchFailed+" (after ") {
			return // FailRate: the worker's own report, retried as any failure until the retries ran out
		}
		if len(root.lost) == 0 || root.lost[0] != t.doneMsg {
			s.failf("probe task %d of file %d ended %s %q; the file's FileLost reasons: %q", t.spec.ID, f, t.doneKind, t.doneMsg, root.lost)
		}
		s.stats.ProbesLost++
	case core.Failed, core.TimedOut, core.ResourceExceeded, core.WorkerLost, core.Cancelled:
		// FailRate: the command failed, whatever its input.
	default:
		s.failf("probe task %d of file %d ended %s", t.spec.ID, f, t.doneKind)
	}
}

func (s *sim) describeData() string {
	var b strings.Builder
	st := s.c.Stats()
	fmt.Fprintf(&b, "\n\tcore: staging %d, transfers %d; harness: fetches %d, running again %d", s.c.Staging(), st.Transfers, len(s.d.fetches), s.d.rerunning)
	for _, info := range s.c.Workers() {
		if len(info.Running) > 0 || info.TransfersIn > 0 || info.TransfersOut > 0 {
			fmt.Fprintf(&b, "\n\tworker %d: running %v, in %d, out %d, files %d, draining %v", info.ID, info.Running, info.TransfersIn, info.TransfersOut, info.CacheFiles, info.Draining)
		}
	}
	return b.String()
}
