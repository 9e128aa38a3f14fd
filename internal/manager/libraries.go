package manager

import (
	"fmt"
	"sort"
	"time"

	goproto "google.golang.org/protobuf/proto"

	"trellis/internal/core"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/txnlog"
)

// libRecord is an installed library.
type libRecord struct {
	id        core.LibID
	spec      *pb.LibrarySpec
	callsDone uint64
	removed   bool // by trellis library remove, until installed again
	// Cold starts observed (an instance from its start on a worker to
	// ready for calls): how many, their sum, and the last.
	coldStarts          uint64
	coldSum, coldLatest time.Duration
}

// install registers (or replaces) a library and tells the core. stored
// says which of its inputs are at the store. The record keeps its own copy
// of the spec, built here and not written into afterwards.
func (s *state) install(req *pb.InstallLibraryRequest, stored storedFiles) error {
	if err := checkInline("library "+req.Library.Name, req.Library.Inputs); err != nil {
		return err
	}
	s.declare("", req.Files, stored)
	spec := goproto.CloneOf(req.Library)
	fillInline(spec.Inputs)
	ev := core.LibraryInstalled{Resources: coreResources(spec.Resources), Slots: max(spec.Slots, 1),
		Max: spec.MaxInstances, Eager: spec.Eager, EveryWorker: spec.EveryWorker}
	var uploads []core.FileSpec // inputs at the manager's store, for the core to stage
	for _, in := range spec.Inputs {
		if in.Content == nil && !s.declared(in.Name) && !s.producedFile(in.Name) {
			up, ok := s.atManager(in.Name, stored)
			if !ok {
				return fmt.Errorf("library %s: input %q (file %s) is not at the manager", spec.Name, in.Path, in.Name)
			}
			uploads = append(uploads, up)
		}
		ev.Inputs = append(ev.Inputs, s.fileID(in.Name))
	}
	if len(uploads) > 0 {
		s.step(core.FilesDeclared{Files: uploads})
	}
	rec := s.libs[spec.Name]
	if rec == nil {
		rec = &libRecord{id: core.LibID(len(s.libs) + 1)}
		s.libs[spec.Name] = rec
		s.libByID[rec.id] = rec
	}
	rec.spec, rec.removed = spec, false
	ev.Lib = rec.id
	s.m.log.Info("library installed", "library", spec.Name, "slots", ev.Slots, "eager", spec.Eager)
	s.step(ev)
	return nil
}

// removeLibrary journals the removal of an installed library and tells
// the core, which stops its instances and fails its calls. It answers on
// reply once the record is durable.
func (s *state) removeLibrary(name string, reply chan<- error) {
	rec := s.libs[name]
	if rec == nil || rec.removed {
		reply <- fmt.Errorf("library %q is not installed: trellis library list shows those that are", name)
		return
	}
	seq := s.record(&pb.JournalRecord{Rec: &pb.JournalRecord_LibraryRemoved{LibraryRemoved: &pb.RemoveLibraryRequest{Name: name}}})
	s.removed(rec)
	s.hold(seq, func() { reply <- nil })
}

// removed marks rec removed and tells the core, live or from the journal.
// The Stop actions it leads to wait for the record like every effect.
func (s *state) removed(rec *libRecord) {
	rec.removed = true
	s.m.log.Info("library removed", "library", rec.spec.Name)
	s.step(core.LibraryRemoved{Lib: rec.id, Why: fmt.Sprintf("library %s was removed (trellis library remove): install it again to call it", rec.spec.Name)})
}

// startLibrary sends an instance of a library to the worker the core chose.
func (s *state) startLibrary(a core.Dispatch) {
	rec := s.libByID[a.Lib]
	sess := s.sessions[a.Worker]
	if rec == nil || sess == nil {
		return
	}
	s.instanceStarted(uint64(a.Instance), a.Worker)
	if s.m.txn != nil {
		s.instLibs[uint64(a.Instance)] = rec.spec.Name
	}
	s.txn(txnlog.Record{Event: txnlog.InstanceStarted, Instance: uint64(a.Instance), Library: rec.spec.Name, Attempt: a.Attempt, Worker: sess.hello.Name})
	spec := goproto.CloneOf(rec.spec) // the installed spec stays as it is (starts are rare)
	spec.Inputs = s.runInputs(rec.spec.Inputs, a.Inline())
	s.sendTo(a.Worker, &pb.ManagerMessage{Msg: &pb.ManagerMessage_StartLibrary{StartLibrary: &pb.StartLibrary{
		Instance: uint64(a.Instance), Attempt: a.Attempt, Library: spec}}})
}

// libraryEnded turns a worker's report into the core's event.
func libraryEnded(id core.WorkerID, e *pb.LibraryEnded) core.InstanceEnded {
	kind := coreKind(e.Kind)
	msg := e.Message
	if tail := lastLine(e.Stderr); tail != "" && kind != core.Success {
		msg = fmt.Sprintf("%s (stderr: %s)", msg, tail)
	}
	return core.InstanceEnded{Instance: core.InstanceID(e.Instance), Attempt: e.Attempt, Worker: id, Outcome: core.Outcome{Kind: kind, Message: msg}}
}

func lastLine(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			b = b[i+1:]
			break
		}
	}
	if len(b) > 300 {
		b = b[len(b)-300:]
	}
	return string(b)
}

// libraryStatus describes the installed libraries, by name.
func (s *state) libraryStatus() []*pb.LibraryStatus {
	var out []*pb.LibraryStatus
	for _, info := range s.core.Libraries() {
		rec := s.libByID[info.Lib]
		if rec == nil || rec.removed {
			continue
		}
		ls := &pb.LibraryStatus{Name: rec.spec.Name, CallsWaiting: uint64(info.Waiting), CallsDone: rec.callsDone,
			InstancesStarted: uint64(info.Started), Broken: info.Broken, ColdStartMsLatest: rec.coldLatest.Milliseconds()}
		if rec.coldStarts > 0 {
			ls.ColdStartMsMean = (rec.coldSum / time.Duration(rec.coldStarts)).Milliseconds()
		}
		for _, inst := range info.Instances {
			is := &pb.InstanceStatus{Id: uint64(inst.ID), Ready: inst.Ready, Busy: inst.Busy, Slots: inst.Slots}
			if sess := s.sessions[inst.Worker]; sess != nil {
				is.Worker = sess.hello.Name
			}
			ls.Instances = append(ls.Instances, is)
		}
		out = append(out, ls)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
