// Package chart reads a transaction log (package txnlog) into what a run
// did, worker by worker, and draws it (trellis plot): a timeline of
// attempts per worker coloured by modality, the cores in use against the
// cores online, bytes moved over time by route, where the time went, and
// a library's cold starts against its warm calls.
//
// Analyse is pure: records in, a Run out, in the records' order. The
// drawing functions only render a Run.
package chart

import (
	"sort"
	"time"

	"trellis/internal/txnlog"
)

// Kinds of spans on the timeline.
const (
	KindTask     = "task"     // a task's command running
	KindCall     = "call"     // a function call running
	KindDataflow = "dataflow" // a dataflow task's command running (it reads a file a task produces or writes a temp file)
	KindStarting = "starting" // an attempt sent to its worker (its inputs there), until its command starts
	KindSetUp    = "set-up"   // a library instance starting, until ready for calls
	KindTransfer = "transfer" // a file travelling to the worker
)

// Span is one bar of the timeline: something on a worker from Start to
// End, in seconds from the run's start.
type Span struct {
	Kind       string
	Start, End float64
	Lane       int  // the row within its worker's band, so that spans do not overlap
	Open       bool // the log ends (or its worker left) before it did
}

// Worker is one worker's band of the timeline.
type Worker struct {
	Name  string
	Spans []Span // by start
	Lanes int
}

// Point is one step of a curve: Value from time T on (seconds from start).
type Point struct {
	T, Value float64
}

// Library is what a run shows of a library: its instances' cold starts
// and its calls' latencies (placement to result), in seconds.
type Library struct {
	Name       string
	ColdStarts []float64
	Calls      []float64
}

// Summary is where time went, summed over every attempt, in seconds.
type Summary struct {
	Tasks, Calls int     // submitted
	Attempts     int     // placed
	Queued       float64 // from submission (or a requeue) until its inputs start to travel (task_staging), or its dispatch if none travel
	Staging      float64 // from its first input starting to travel to its dispatch (or its requeue or end)
	Starting     float64 // from dispatch (task_running) to the command's start
	Running      float64 // commands and calls running
	Transfers    float64 // files travelling, summed over transfers (they overlap Queued)
	Bytes        int64   // moved by transfers that succeeded
	Duration     float64 // from the first record to the last
}

// Run is a transaction log read as what the run did.
type Run struct {
	Start     time.Time
	Workers   []Worker           // by first appearance
	CoresUsed []Point            // cores held by placed attempts
	CoresUp   []Point            // cores of the connected workers
	Bytes     map[string][]Point // by route: bytes moved so far
	Libraries []Library          // by name
	Summary   Summary
}

type attemptKey struct {
	task    uint64
	attempt uint32
}

type placed struct {
	worker string
	at     float64
	cores  float64
}

// Analyse reads records (in the order of the log) into a Run.
func Analyse(recs []txnlog.Record) *Run {
	r := &Run{Bytes: make(map[string][]Point)}
	if len(recs) == 0 {
		return r
	}
	r.Start = recs[0].Time
	sec := func(t time.Time) float64 { return t.Sub(r.Start).Seconds() }

	seen := map[string]bool{}
	worker := func(name string) {
		if !seen[name] {
			seen[name] = true
			r.Workers = append(r.Workers, Worker{Name: name})
		}
	}
	type open struct {
		worker string
		span   Span
	}
	var spans []open                // every span, closed or not; ends filled in as the log goes
	openSpans := map[string][]int{} // worker -> indexes in spans still open

	addSpan := func(wname, kind string, start, end float64, isOpen bool) int {
		worker(wname)
		spans = append(spans, open{wname, Span{Kind: kind, Start: start, End: end, Open: isOpen}})
		i := len(spans) - 1
		if isOpen {
			openSpans[wname] = append(openSpans[wname], i)
		}
		return i
	}
	closeSpan := func(i int, end float64) {
		s := &spans[i].span
		if !s.Open {
			return
		}
		s.End, s.Open = end, false
		list := openSpans[spans[i].worker]
		for j, k := range list {
			if k == i {
				openSpans[spans[i].worker] = append(list[:j], list[j+1:]...)
				break
			}
		}
	}

	modality := map[uint64]string{}
	library := map[uint64]string{}
	waitingSince := map[uint64]float64{}
	stagingSince := map[uint64]float64{}
	attempts := map[attemptKey]placed{}
	startingSpan := map[attemptKey]int{}
	setUps := map[uint64]int{}         // instance -> its set-up span
	setUpStart := map[uint64]float64{} // instance -> start
	transfers := map[uint64]int{}      // transfer -> its span
	libs := map[string]*Library{}
	lib := func(name string) *Library {
		if libs[name] == nil {
			libs[name] = &Library{Name: name}
		}
		return libs[name]
	}
	var coresUsed, coresUp float64
	workerCores := map[string]float64{}
	bytes := map[string]int64{}
	sum := &r.Summary

	for _, rec := range recs {
		t := sec(rec.Time)
		switch rec.Event {
		case txnlog.TaskSubmitted:
			modality[rec.Task] = rec.Modality
			if rec.Library != "" {
				library[rec.Task] = rec.Library
			}
			waitingSince[rec.Task] = t
			if rec.Modality == "call" {
				sum.Calls++
			} else {
				sum.Tasks++
			}
		case txnlog.TaskPlaced, txnlog.TaskStaging: // placed: its staging begins
			if since, ok := waitingSince[rec.Task]; ok {
				sum.Queued += t - since
				delete(waitingSince, rec.Task)
				stagingSince[rec.Task] = t
			}
		case txnlog.TaskRunning:
			if rec.Modality != "" { // the manager knows a dataflow task once it places it
				modality[rec.Task] = rec.Modality
			}
			k := attemptKey{rec.Task, rec.Attempt}
			cores := rec.Cores
			attempts[k] = placed{rec.Worker, t, cores}
			coresUsed += cores
			r.CoresUsed = append(r.CoresUsed, Point{t, coresUsed})
			if since, ok := waitingSince[rec.Task]; ok {
				sum.Queued += t - since
				delete(waitingSince, rec.Task)
			}
			if since, ok := stagingSince[rec.Task]; ok {
				sum.Staging += t - since
				delete(stagingSince, rec.Task)
			}
			sum.Attempts++
			startingSpan[k] = addSpan(rec.Worker, KindStarting, t, t, true)
		case txnlog.TaskRequeued, txnlog.TaskDone:
			k := attemptKey{rec.Task, rec.Attempt}
			p, ok := attempts[k]
			if since, staging := stagingSince[rec.Task]; staging { // it gave up staging
				sum.Staging += t - since
				delete(stagingSince, rec.Task)
			}
			if rec.Event == txnlog.TaskRequeued {
				waitingSince[rec.Task] = t
			}
			if !ok {
				continue // ended before it was placed (cancelled, input missing)
			}
			delete(attempts, k)
			coresUsed -= p.cores
			r.CoresUsed = append(r.CoresUsed, Point{t, coresUsed})
			runFrom := t - float64(rec.RunMs)/1000
			if rec.RunMs == 0 && modality[rec.Task] == "call" {
				runFrom = p.at // a call's run is under a millisecond: all of it is the call
			}
			if runFrom < p.at {
				runFrom = p.at
			}
			if i, ok := startingSpan[k]; ok {
				closeSpan(i, runFrom)
				delete(startingSpan, k)
			}
			sum.Starting += runFrom - p.at
			kind := KindTask
			if modality[rec.Task] == KindDataflow {
				kind = KindDataflow
			}
			if modality[rec.Task] == "call" {
				kind = KindCall
				if name := library[rec.Task]; name != "" && rec.Result == "success" {
					l := lib(name)
					l.Calls = append(l.Calls, t-p.at)
				}
			}
			if t > runFrom {
				addSpan(p.worker, kind, runFrom, t, false)
			}
			sum.Running += t - runFrom
		case txnlog.InstanceStarted:
			lib(rec.Library)
			setUpStart[rec.Instance] = t
			setUps[rec.Instance] = addSpan(rec.Worker, KindSetUp, t, t, true)
		case txnlog.InstanceReady, txnlog.InstanceEnded:
			if i, ok := setUps[rec.Instance]; ok {
				closeSpan(i, t)
				delete(setUps, rec.Instance)
				if rec.Event == txnlog.InstanceReady {
					l := lib(rec.Library)
					l.ColdStarts = append(l.ColdStarts, t-setUpStart[rec.Instance])
				}
				delete(setUpStart, rec.Instance)
			}
		case txnlog.TransferStarted:
			transfers[rec.Transfer] = addSpan(rec.Worker, KindTransfer, t, t, true)
		case txnlog.TransferEnded:
			if i, ok := transfers[rec.Transfer]; ok {
				sum.Transfers += t - spans[i].span.Start
				closeSpan(i, t)
				delete(transfers, rec.Transfer)
			}
			if rec.Result == "success" && rec.Bytes > 0 {
				bytes[rec.Route] += rec.Bytes
				sum.Bytes += rec.Bytes
				r.Bytes[rec.Route] = append(r.Bytes[rec.Route], Point{t, float64(bytes[rec.Route])})
			}
		case txnlog.WorkerJoined:
			worker(rec.Worker)
			coresUp += rec.Cores - workerCores[rec.Worker]
			workerCores[rec.Worker] = rec.Cores
			r.CoresUp = append(r.CoresUp, Point{t, coresUp})
		case txnlog.WorkerLeft:
			for _, i := range append([]int(nil), openSpans[rec.Worker]...) {
				closeSpan(i, t)
			}
			coresUp -= workerCores[rec.Worker]
			delete(workerCores, rec.Worker)
			r.CoresUp = append(r.CoresUp, Point{t, coresUp})
		}
		sum.Duration = t
	}
	// What the log ends before: drawn to its end, marked open.
	for _, list := range openSpans {
		for _, i := range list {
			spans[i].span.End = sum.Duration
		}
	}

	byWorker := map[string][]Span{}
	for _, s := range spans {
		if s.span.End > s.span.Start || s.span.Open {
			byWorker[s.worker] = append(byWorker[s.worker], s.span)
		}
	}
	for i := range r.Workers {
		w := &r.Workers[i]
		w.Spans, w.Lanes = lanes(byWorker[w.Name])
	}
	names := make([]string, 0, len(libs))
	for name := range libs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		r.Libraries = append(r.Libraries, *libs[name])
	}
	return r
}

// lanes sorts spans by start and gives each the lowest lane free at its
// start, so that no two spans of a lane overlap.
func lanes(spans []Span) ([]Span, int) {
	sort.SliceStable(spans, func(i, j int) bool { return spans[i].Start < spans[j].Start })
	var ends []float64 // per lane, the end of its last span
	for i := range spans {
		lane := -1
		for l, end := range ends {
			if end <= spans[i].Start {
				lane = l
				break
			}
		}
		if lane < 0 {
			lane = len(ends)
			ends = append(ends, 0)
		}
		ends[lane] = spans[i].End
		spans[i].Lane = lane
	}
	return spans, len(ends)
}
