package manager

import (
	"time"

	"trellis/internal/core"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/txnlog"
)

// Observers: what the loop notes for /metrics and the transaction log as
// it acts, and never reads back to decide anything. Each note is a few
// array increments or one map entry per transfer or instance in flight.

// Latency buckets, in seconds, of Histograms.Calls and Histograms.ColdStarts.
var (
	CallBuckets      = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	ColdStartBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
)

// Histogram counts observations in fixed buckets: Counts[i] those at most
// Buckets[i] (not cumulative), Counts[len(Buckets)] those above the last.
type Histogram struct {
	Buckets []float64 // upper bounds, seconds; shared, do not modify
	Counts  []uint64
	Sum     float64 // seconds
	Count   uint64
}

func newHistogram(buckets []float64) Histogram {
	return Histogram{Buckets: buckets, Counts: make([]uint64, len(buckets)+1)}
}

func (h *Histogram) observe(d time.Duration) {
	v := d.Seconds()
	i := 0
	for i < len(h.Buckets) && v > h.Buckets[i] {
		i++
	}
	h.Counts[i]++
	h.Sum += v
	h.Count++
}

func (h Histogram) clone() Histogram {
	h.Counts = append([]uint64(nil), h.Counts...)
	return h
}

// Histograms are the latencies the loop observed over the manager's life.
type Histograms struct {
	// Calls: from a call's placement on a worker to its successful end, as
	// the manager sees it (the worker's round trip included).
	Calls Histogram
	// ColdStarts: from a library instance's start on a worker to its
	// set-up's end (ready for calls).
	ColdStarts Histogram
}

func newHistograms() Histograms {
	return Histograms{Calls: newHistogram(CallBuckets), ColdStarts: newHistogram(ColdStartBuckets)}
}

func (h *Histograms) clone() Histograms {
	return Histograms{Calls: h.Calls.clone(), ColdStarts: h.ColdStarts.clone()}
}

// observer is the loop's notes for observers.
type observer struct {
	hist       Histograms
	dispatched [2]uint64              // attempts sent to workers: [0] tasks, [1] calls
	attempts   Ended                  // attempts ended, requeued ones too, by result kind
	instStart  map[uint64]instStart   // instances started, until ready or ended
	transfers  map[uint64]txnTransfer // with a transaction log: transfers in flight
}

type instStart struct {
	at     time.Time
	worker core.WorkerID
}

// txnTransfer is what the transaction log keeps of a transfer in flight.
type txnTransfer struct {
	file, worker, route string
	to                  core.WorkerID
}

func newObserver() observer {
	return observer{hist: newHistograms(), instStart: make(map[uint64]instStart), transfers: make(map[uint64]txnTransfer)}
}

// instanceStarted notes an instance sent to a worker.
func (s *state) instanceStarted(inst uint64, w core.WorkerID) {
	s.obs.instStart[inst] = instStart{time.Now(), w}
}

// instanceReady notes an instance's set-up done: a cold start observed.
func (s *state) instanceReady(inst uint64) {
	if st, ok := s.obs.instStart[inst]; ok {
		s.obs.hist.ColdStarts.observe(time.Since(st.at))
		delete(s.obs.instStart, inst)
	}
}

// instanceGone forgets an instance that ended.
func (s *state) instanceGone(inst uint64) { delete(s.obs.instStart, inst) }

// workerGone forgets the instances and transfers of a worker that left.
func (s *state) workerGone(w core.WorkerID) {
	for inst, st := range s.obs.instStart {
		if st.worker == w {
			delete(s.obs.instStart, inst)
		}
	}
	for id, t := range s.obs.transfers {
		if t.to == w {
			delete(s.obs.transfers, id)
		}
	}
}

// dispatched notes an attempt sent to a worker.
func (s *state) dispatched(call bool) {
	if call {
		s.obs.dispatched[1]++
	} else {
		s.obs.dispatched[0]++
	}
}

// attemptEnded notes an attempt's end (attempt 0: the task never ran, not
// counted), whether the task ends or waits again.
func (s *state) attemptEnded(t core.TaskID, attempt uint32, k pb.ResultKind) {
	if attempt == 0 {
		return
	}
	rec := s.tasks[t]
	s.obs.attempts.count(rec != nil && rec.call() != nil, k)
}

// callDone notes a call's successful attempt that ran for d.
func (s *state) callDone(d time.Duration) {
	if d > 0 {
		s.obs.hist.Calls.observe(d)
	}
}

// Routes of transfers in the transaction log and on the dashboard.
const (
	RouteManager = "manager_to_worker"
	RoutePeer    = "peer_to_worker"
	RouteURL     = "url_to_worker"
	RouteUnpack  = "unpack"
)

func routeOf(k core.SourceKind) string {
	switch k {
	case core.FromManager:
		return RouteManager
	case core.FromPeer:
		return RoutePeer
	case core.FromOrigin:
		return RouteURL
	default:
		return RouteUnpack
	}
}

// transferTxn logs the start of a transfer, with a transaction log.
func (s *state) transferTxn(a core.Fetch) {
	if s.m.txn == nil {
		return
	}
	t := txnTransfer{file: s.data.names[a.File], route: routeOf(a.Source.Kind), to: a.Worker}
	if sess := s.sessions[a.Worker]; sess != nil {
		t.worker = sess.hello.Name
	}
	s.obs.transfers[a.Transfer] = t
	r := txnlog.Record{Event: txnlog.TransferStarted, Transfer: a.Transfer, File: t.file, Worker: t.worker, Route: t.route, Bytes: a.Size}
	if a.Source.Kind == core.FromPeer {
		if peer := s.sessions[a.Source.Peer]; peer != nil {
			r.Peer = peer.hello.Name
		}
	}
	s.txn(r)
}

// transferEndTxn logs the end of a transfer, with a transaction log.
func (s *state) transferEndTxn(id uint64, ok bool, size int64, why string) {
	if s.m.txn == nil {
		return
	}
	t, known := s.obs.transfers[id]
	if !known {
		return
	}
	delete(s.obs.transfers, id)
	r := txnlog.Record{Event: txnlog.TransferEnded, Transfer: id, File: t.file, Worker: t.worker, Route: t.route, Result: "success"}
	if ok {
		r.Bytes = size
	} else {
		r.Result, r.Reason = "failed", why
	}
	s.txn(r)
}
