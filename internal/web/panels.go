package web

import (
	"fmt"
	"html"
	"html/template"
	"sort"
	"strconv"
	"strings"
	"time"

	"trellis/internal/manager"
	pb "trellis/internal/proto/trellisv1"
)

// What the overview aggregates so that it stays small with many workers
// and tasks: the first overviewWorkers workers and a row of totals (the
// rest are on /workers, workersPage a page), and a timeline of the
// attempts that the newest timelineTasks tasks made in the last
// timelineWindow, for the same workers.
const (
	overviewWorkers = 50
	workersPage     = 100
	timelineTasks   = 2000
	timelineWindow  = time.Minute
	timelineWidth   = 1000 // SVG user units across the window
	rowHeight       = 14   // per worker, in SVG user units
)

func workerRows(ws []*pb.WorkerStatus) []worker {
	rows := make([]worker, len(ws))
	for i, w := range ws {
		t, f := w.GetTotal(), w.GetFree()
		rows[i] = worker{W: w, CoresUsed: t.GetCores() - f.GetCores(),
			MemoryUsedMB: t.GetMemoryMb() - f.GetMemoryMb(), DiskUsedMB: t.GetDiskMb() - f.GetDiskMb(), GPUUsed: t.GetGpus() - f.GetGpus()}
	}
	return rows
}

// totals sums the workers into one row.
func totals(ws []*pb.WorkerStatus) worker {
	sum := &pb.WorkerStatus{Total: &pb.Resources{}}
	var used worker
	for _, w := range ws {
		t, f := w.GetTotal(), w.GetFree()
		sum.Total.Cores += t.GetCores()
		sum.Total.MemoryMb += t.GetMemoryMb()
		sum.Total.DiskMb += t.GetDiskMb()
		sum.Total.Gpus += t.GetGpus()
		used.CoresUsed += t.GetCores() - f.GetCores()
		used.MemoryUsedMB += t.GetMemoryMb() - f.GetMemoryMb()
		used.DiskUsedMB += t.GetDiskMb() - f.GetDiskMb()
		used.GPUUsed += t.GetGpus() - f.GetGpus()
		sum.Running = append(sum.Running, w.GetRunning()...)
		sum.TasksDone += w.GetTasksDone()
		sum.CacheBytes += w.GetCacheBytes()
		sum.CacheFiles += w.GetCacheFiles()
		sum.TransfersIn += w.GetTransfersIn()
		sum.TransfersOut += w.GetTransfersOut()
	}
	used.W = sum
	return used
}

// workerPage is a page of /workers.
type workerPage struct {
	Workers    []worker
	Totals     worker
	All        int
	Page, Last int
	First      int // the number of the page's first worker, from 1
}

func newWorkerPage(snap *manager.Snapshot, page int) workerPage {
	ws := snap.Status.GetWorkers()
	p := workerPage{Totals: totals(ws), All: len(ws), Page: page, Last: max(1, (len(ws)+workersPage-1)/workersPage)}
	from := min((page-1)*workersPage, len(ws))
	p.First = from + 1
	p.Workers = workerRows(ws[from:min(from+workersPage, len(ws))])
	return p
}

// timeline is the overview's live timeline, drawn as inline SVG.
type timeline struct {
	Width, Height int
	Rows          []timelineRow
	Ticks         []timelineTick
	Tasks         int // attempts drawn
}

type timelineRow struct {
	Name string
	Y    int
	Bars []timelineBar
}

type timelineBar struct {
	X, W, Y, H float64
	Fill       string
	Title      string
	Href       string
	Running    bool
	N          int // attempts it stands for (mergeBars)

	// The (last) attempt it draws: Title and Href are written from it
	// once bars are joined, for the bars that remain only.
	task    *manager.TaskInfo
	attempt uint32
	result  string
}

type timelineTick struct {
	X     float64
	Label string
}

// Colours of the timeline's modalities (the plot's, chart.kindColours).
var modalityFill = map[string]string{"task": "#1f77b4", "dataflow": "#17becf", "call": "#ff7f0e"}

// modalityName is the modality of a task the index knows: call, dataflow
// (once dispatched) or task.
func modalityName(t *manager.TaskInfo) string {
	switch {
	case t.Spec.GetCall() != nil:
		return "call"
	case t.Dataflow:
		return "dataflow"
	}
	return "task"
}

// newTimeline draws the attempts of recent tasks that overlap the minute
// before now, one row per worker in names.
func newTimeline(names []string, tasks []*manager.TaskInfo, now time.Time) timeline {
	start := now.Add(-timelineWindow)
	tl := timeline{Width: timelineWidth, Height: rowHeight*len(names) + 16}
	rows := make(map[string]*timelineRow, len(names))
	tl.Rows = make([]timelineRow, len(names))
	for i, name := range names {
		tl.Rows[i] = timelineRow{Name: name, Y: i * rowHeight}
		rows[name] = &tl.Rows[i]
	}
	x := func(t time.Time) float64 {
		return float64(t.Sub(start)) / float64(timelineWindow) * timelineWidth
	}
	for i := len(tasks) - 1; i >= 0; i-- { // oldest first: bars come nearly in order for mergeBars's sort
		t := tasks[i]
		fill := modalityFill[modalityName(t)]
		for _, a := range t.Attempts {
			row := rows[a.Worker]
			end := a.Ended
			if end.IsZero() || end.After(now) {
				end = now
			}
			if row == nil || end.Before(start) || a.Started.After(now) {
				continue
			}
			x0, x1 := max(x(a.Started), 0), x(end)
			row.Bars = append(row.Bars, timelineBar{X: x0, W: max(x1-x0, 1), Y: float64(row.Y + 2), H: rowHeight - 4,
				Fill: fill, Running: a.Ended.IsZero(), N: 1, task: t, attempt: a.Attempt, result: a.Result})
			tl.Tasks++
		}
	}
	for i := range tl.Rows {
		bars := mergeBars(tl.Rows[i].Bars)
		for j := range bars {
			b := &bars[j]
			b.Href = "/tasks/" + strconv.FormatUint(b.task.ID, 10)
			b.Title = fmt.Sprintf("%s (task %d, attempt %d): %s", b.task.Spec.GetName(), b.task.ID, b.attempt, orRunning(b.result))
			if b.N > 1 {
				b.Title = fmt.Sprintf("%d attempts; the last: %s", b.N, b.Title)
			}
		}
		tl.Rows[i].Bars = bars
	}
	for s := 0; s <= int(timelineWindow/time.Second); s += 10 {
		tl.Ticks = append(tl.Ticks, timelineTick{X: float64(s) / timelineWindow.Seconds() * timelineWidth,
			Label: fmt.Sprintf("-%ds", int(timelineWindow.Seconds())-s)})
	}
	return tl
}

// SVG draws the timeline. It is written here rather than by a template:
// escaping 2,000 bars' attributes one by one costs ten times more.
func (tl timeline) SVG() template.HTML {
	var b strings.Builder
	b.Grow(200 + len(tl.Rows)*200 + tl.Tasks*180)
	fmt.Fprintf(&b, `<svg id="timeline" viewBox="-90 -2 %d %d" width="100%%" role="img" aria-label="attempts of the last minute per worker">`,
		tl.Width+100, tl.Height+4)
	for _, r := range tl.Rows {
		fmt.Fprintf(&b, "\n"+`<text x="-4" y="%d" text-anchor="end" font-size="10">%s</text><line x1="0" x2="%d" y1="%d" y2="%d" stroke="#eceff4"/>`,
			r.Y+11, html.EscapeString(r.Name), tl.Width, r.Y+rowHeight, r.Y+rowHeight)
		for _, bar := range r.Bars {
			stroke := ""
			if bar.Running {
				stroke = ` stroke="#1d2230"`
			}
			fmt.Fprintf(&b, "\n"+`<a href="%s"><rect class="attempt" data-n="%d" x="%.1f" y="%g" width="%.1f" height="%g" fill="%s"%s><title>%s</title></rect></a>`,
				bar.Href, bar.N, bar.X, bar.Y, bar.W, bar.H, bar.Fill, stroke, html.EscapeString(bar.Title))
		}
	}
	for _, t := range tl.Ticks {
		fmt.Fprintf(&b, "\n"+`<text x="%.0f" y="%d" text-anchor="middle" font-size="10" fill="#5a6478">%s</text>`, t.X, tl.Height, t.Label)
	}
	b.WriteString("\n</svg>")
	return template.HTML(b.String()) // every text in it escaped above
}

// mergeBars joins, in one row, bars of one colour that touch or lie less
// than a unit apart, so that a busy worker's back-to-back attempts are one
// bar: the page stays small (and the browser's work with it) however many
// attempts a minute holds. A joined bar says how many it holds and links
// to the last.
func mergeBars(bars []timelineBar) []timelineBar {
	if len(bars) < 2 {
		return bars
	}
	sort.SliceStable(bars, func(i, j int) bool { return bars[i].X < bars[j].X })
	out := bars[:1]
	for _, b := range bars[1:] {
		last := &out[len(out)-1]
		if b.Fill == last.Fill && b.X <= last.X+last.W+1 {
			last.W = max(last.W, b.X+b.W-last.X)
			last.N += b.N
			last.task, last.attempt, last.result = b.task, b.attempt, b.result
			last.Running = last.Running || b.Running
			continue
		}
		out = append(out, b)
	}
	return out
}

func orRunning(result string) string {
	if result == "" {
		return "running"
	}
	return result
}

// files is the files page: data moved, kept, lost and recreated.
type files struct {
	St      *pb.StatusResponse
	Routes  []route
	Workers []worker
	All     int
	Page    int
	Last    int
}

func newFiles(snap *manager.Snapshot, page int) files {
	wp := newWorkerPage(snap, page)
	return files{St: snap.Status, Routes: routes(snap.Status), Workers: wp.Workers, All: wp.All, Page: wp.Page, Last: wp.Last}
}

func routes(st *pb.StatusResponse) []route {
	return []route{{"manager to worker", st.GetBytesFromManager()}, {"peer to worker", st.GetBytesFromPeers()},
		{"URL to worker", st.GetBytesFromUrls()}, {"worker to manager", st.GetBytesToManager()}}
}
