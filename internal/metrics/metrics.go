package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"trellis/internal/manager"
	tproto "trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// Snapshotter gives the snapshot a scrape reads: *manager.Manager.
type Snapshotter interface {
	Snapshot(ctx context.Context) (*manager.Snapshot, error)
}

// Handler serves /metrics from src: the manager's metrics and the Go
// runtime's and process's of the manager itself.
func Handler(src Snapshotter) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(src), prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError, Timeout: 10 * time.Second})
}

// scrapeTimeout bounds the wait for a fresh snapshot from a busy loop.
const scrapeTimeout = 5 * time.Second

var (
	queueDesc = prometheus.NewDesc("trellis_queue",
		"Tasks (plain and dataflow), calls and library instances now in each state.", []string{"modality", "state"}, nil)
	unplaceableDesc = prometheus.NewDesc("trellis_unplaceable",
		"Tasks and calls that no connected worker could run (counted in state ready).", nil, nil)
	endedDesc = prometheus.NewDesc("trellis_ended_total",
		"Tasks and calls ended since the manager started, by result kind.", []string{"modality", "result"}, nil)
	bytesDesc = prometheus.NewDesc("trellis_transfer_bytes_total",
		"Bytes of files moved, by route.", []string{"route"}, nil)
	transfersDesc = prometheus.NewDesc("trellis_transfers_in_flight",
		"File transfers to workers in flight.", nil, nil)
	lostDesc = prometheus.NewDesc("trellis_files_lost_total",
		"Temporary files lost for good: no worker held them and they could not be recreated.", nil, nil)
	recreatedDesc = prometheus.NewDesc("trellis_tasks_recreated_total",
		"Producers run again to recreate lost files.", nil, nil)
	workersDesc = prometheus.NewDesc("trellis_workers",
		"Connected workers, by state.", []string{"state"}, nil)
	resourceDesc = prometheus.NewDesc("trellis_worker_resources",
		"Resources of the connected workers, summed: their total and the part tasks and instances use.", []string{"resource", "use"}, nil)
	cacheDesc = prometheus.NewDesc("trellis_worker_cache_bytes",
		"Bytes of files the connected workers hold in their caches, summed.", nil, nil)
	instancesDesc = prometheus.NewDesc("trellis_library_instances",
		"Instances of a library, by state: waiting for a place or set-up, or ready for calls.", []string{"library", "state"}, nil)
	slotsDesc = prometheus.NewDesc("trellis_library_slots",
		"Call slots of a library's instances, by use.", []string{"library", "use"}, nil)
	callsWaitingDesc = prometheus.NewDesc("trellis_library_calls_waiting",
		"Calls of a library waiting for a free slot.", []string{"library"}, nil)
	callsDoneDesc = prometheus.NewDesc("trellis_library_calls_done_total",
		"Calls of a library done.", []string{"library"}, nil)
	setupsDesc = prometheus.NewDesc("trellis_library_setups_total",
		"Set-ups of a library's instances that succeeded.", []string{"library"}, nil)
	brokenDesc = prometheus.NewDesc("trellis_library_broken",
		"1 while a library is broken (its calls fail at once), else 0.", []string{"library"}, nil)
	dispatchedDesc = prometheus.NewDesc("trellis_dispatched_total",
		"Attempts of tasks and calls sent to workers.", []string{"modality"}, nil)
	attemptsDesc = prometheus.NewDesc("trellis_attempts_total",
		"Attempts of tasks and calls ended, by result kind: those after which the task waited again (worker_lost, ...) and the last.", []string{"modality", "result"}, nil)
	journalDesc = prometheus.NewDesc("trellis_journal_records",
		"Records of the manager's journal on disk (with --state only).", nil, nil)
	callSecondsDesc = prometheus.NewDesc("trellis_call_seconds",
		"Function calls that succeeded, by time from their placement on a worker to their result at the manager.", nil, nil)
	coldStartDesc = prometheus.NewDesc("trellis_library_cold_start_seconds",
		"Library instances, by time from their start on a worker to the end of their set-up (ready for calls).", nil, nil)
	snapshotDesc = prometheus.NewDesc("trellis_snapshot_version",
		"Steps of the manager's loop that the scraped snapshot reflects.", nil, nil)
)

// Collector turns a manager snapshot into metrics at each scrape.
type Collector struct {
	src Snapshotter
}

// NewCollector returns a collector reading snapshots from src.
func NewCollector(src Snapshotter) *Collector { return &Collector{src: src} }

// Describe sends the descriptions of every metric Collect may send.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{queueDesc, unplaceableDesc, endedDesc, bytesDesc, transfersDesc, lostDesc,
		recreatedDesc, workersDesc, resourceDesc, cacheDesc, instancesDesc, slotsDesc, callsWaitingDesc,
		callsDoneDesc, setupsDesc, brokenDesc, dispatchedDesc, attemptsDesc, journalDesc, callSecondsDesc, coldStartDesc, snapshotDesc} {
		ch <- d
	}
}

// Collect reads one snapshot and sends its metrics; when none can be had
// it sends an invalid metric, which the handler reports as the error.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	snap, err := c.src.Snapshot(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(snapshotDesc, err)
		return
	}
	collect(ch, snap)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

func histogram(ch chan<- prometheus.Metric, d *prometheus.Desc, h manager.Histogram) {
	buckets := make(map[float64]uint64, len(h.Buckets))
	var n uint64
	for i, b := range h.Buckets {
		n += h.Counts[i]
		buckets[b] = n
	}
	ch <- prometheus.MustNewConstHistogram(d, h.Count, h.Sum, buckets)
}

// byKind sends one counter per result kind of counts.
func byKind(ch chan<- prometheus.Metric, d *prometheus.Desc, counts *[pb.ResultKind_RESULT_KIND_CANCELLED + 1]uint64, modality string) {
	for k, n := range counts {
		if k == int(pb.ResultKind_RESULT_KIND_UNSPECIFIED) && n == 0 {
			continue
		}
		counter(ch, d, float64(n), modality, tproto.ResultLabel(pb.ResultKind(k)))
	}
}

func collect(ch chan<- prometheus.Metric, snap *manager.Snapshot) {
	st := snap.Status
	gauge(ch, snapshotDesc, float64(snap.Version))
	histogram(ch, callSecondsDesc, snap.Latency.Calls)
	histogram(ch, coldStartDesc, snap.Latency.ColdStarts)
	for _, m := range []struct {
		name string
		n    *pb.TaskCounts
	}{{"task", st.GetTasks()}, {"dataflow", st.GetDataflow()}, {"call", st.GetCalls()}, {"instance", st.GetInstances()}} {
		gauge(ch, queueDesc, float64(m.n.GetWaiting()), m.name, "waiting")
		gauge(ch, queueDesc, float64(m.n.GetReady()), m.name, "ready")
		gauge(ch, queueDesc, float64(m.n.GetStaging()), m.name, "staging")
		gauge(ch, queueDesc, float64(m.n.GetRunning()), m.name, "running")
	}
	gauge(ch, unplaceableDesc, float64(st.GetUnplaceable()))
	for i, modality := range manager.Modalities {
		byKind(ch, endedDesc, &snap.Ended[i], modality)
		byKind(ch, attemptsDesc, &snap.Attempts[i], modality)
		counter(ch, dispatchedDesc, float64(snap.Dispatched[i]), modality)
	}
	if j := st.GetJournal(); j != nil {
		gauge(ch, journalDesc, float64(j.GetDurable()))
	}
	counter(ch, bytesDesc, float64(st.GetBytesFromManager()), "manager_to_worker")
	counter(ch, bytesDesc, float64(st.GetBytesFromPeers()), "peer_to_worker")
	counter(ch, bytesDesc, float64(st.GetBytesFromUrls()), "url_to_worker")
	counter(ch, bytesDesc, float64(st.GetBytesToManager()), "worker_to_manager")
	gauge(ch, transfersDesc, float64(st.GetTransfersInFlight()))
	counter(ch, lostDesc, float64(st.GetFilesLost()))
	counter(ch, recreatedDesc, float64(st.GetTasksRecreated()))

	var active, draining, cache float64
	var total, free [4]float64 // cores, memory, disk, GPUs
	for _, w := range st.GetWorkers() {
		if w.GetDraining() {
			draining++
		} else {
			active++
		}
		cache += float64(w.GetCacheBytes())
		for i, r := range []*pb.Resources{w.GetTotal(), w.GetFree()} {
			v := &total
			if i == 1 {
				v = &free
			}
			v[0] += r.GetCores()
			v[1] += float64(r.GetMemoryMb()) * (1 << 20)
			v[2] += float64(r.GetDiskMb()) * (1 << 20)
			v[3] += float64(r.GetGpus())
		}
	}
	gauge(ch, workersDesc, active, "active")
	gauge(ch, workersDesc, draining, "draining")
	gauge(ch, cacheDesc, cache)
	for i, res := range []string{"cores", "memory_bytes", "disk_bytes", "gpus"} {
		gauge(ch, resourceDesc, total[i], res, "total")
		gauge(ch, resourceDesc, total[i]-free[i], res, "used")
	}

	for _, lib := range st.GetLibraries() {
		var waiting, ready, busy, slots float64
		for _, in := range lib.GetInstances() {
			if in.GetReady() {
				ready++
			} else {
				waiting++
			}
			busy += float64(in.GetBusy())
			slots += float64(in.GetSlots())
		}
		name := lib.GetName()
		gauge(ch, instancesDesc, waiting, name, "waiting")
		gauge(ch, instancesDesc, ready, name, "ready")
		gauge(ch, slotsDesc, busy, name, "busy")
		gauge(ch, slotsDesc, slots-busy, name, "free")
		gauge(ch, callsWaitingDesc, float64(lib.GetCallsWaiting()), name)
		counter(ch, callsDoneDesc, float64(lib.GetCallsDone()), name)
		counter(ch, setupsDesc, float64(lib.GetInstancesStarted()), name)
		broken := 0.0
		if lib.GetBroken() != "" {
			broken = 1
		}
		gauge(ch, brokenDesc, broken, name)
	}
}
