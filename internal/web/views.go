package web

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"trellis/internal/manager"
	tproto "trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

var funcs = template.FuncMap{
	"bytes": humanBytes,
	"mb":    func(mb int64) string { return humanBytes(mb << 20) },
	"time":  func(t time.Time) string { return t.UTC().Format("15:04:05.000") },
	"state": stateName,
	"add":   func(a, b int) int { return a + b },
	"cores": func(c float64) string { return fmt.Sprintf("%g", c) },
	"text":  func(b []byte) string { return string(b) },
	"int":   func(v int32) int { return int(v) },
	"kind":  tproto.ResultLabel,
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGT"[i-1])
}

func upper(s string) string { return strings.ToUpper(s) }

func stateName(s pb.TaskState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "TASK_STATE_"))
}

// overview is what the overview page shows of a snapshot.
type overview struct {
	Version   uint64
	Built     time.Time
	Modality  []modality
	Workers   []worker // the first overviewWorkers
	All       int      // workers connected
	Totals    worker   // all of them summed
	Libraries []*pb.LibraryStatus
	Routes    []route
	Timeline  timeline
	St        *pb.StatusResponse
}

type modality struct {
	Name string
	N    *pb.TaskCounts
}

type worker struct {
	W                                 *pb.WorkerStatus
	CoresUsed                         float64
	MemoryUsedMB, DiskUsedMB, GPUUsed int64
}

type route struct {
	Name  string
	Bytes int64
}

// newOverview builds the overview of snap; recent are the newest tasks of
// the index, for the timeline.
func newOverview(snap *manager.Snapshot, recent []*manager.TaskInfo) overview {
	st := snap.Status
	ws := st.GetWorkers()
	o := overview{Version: snap.Version, Built: snap.Built, Libraries: st.GetLibraries(), St: st,
		Modality: []modality{{"task", st.GetTasks()}, {"dataflow", st.GetDataflow()}, {"call", st.GetCalls()}, {"instance", st.GetInstances()}},
		Routes:   routes(st), All: len(ws), Totals: totals(ws),
		Workers: workerRows(ws[:min(len(ws), overviewWorkers)])}
	names := make([]string, len(o.Workers))
	for i, w := range o.Workers {
		names[i] = w.W.GetName()
	}
	o.Timeline = newTimeline(names, recent, snap.Built)
	return o
}

// taskList is a page of the task list.
type taskList struct {
	Tasks      []*manager.TaskInfo
	Total      int
	State      string // filter; "" for all
	Page, Last int
}

func newTaskList(p manager.TaskPage, state pb.TaskState, page int) taskList {
	l := taskList{Tasks: p.Tasks, Total: p.Total, Page: page, Last: max(1, (p.Total+pageSize-1)/pageSize)}
	if state != pb.TaskState_TASK_STATE_UNSPECIFIED {
		l.State = stateName(state)
	}
	return l
}

// taskView is the task page.
type taskView struct {
	T      *manager.TaskInfo
	State  string
	Result string
	Inputs []input
}

// input is one of a task's inputs and the task that writes it, if the
// index holds one.
type input struct {
	Path, Name string
	From       *manager.TaskInfo
}

func newTaskView(t *manager.TaskInfo, producer func(name string) *manager.TaskInfo) taskView {
	v := taskView{T: t, State: stateName(t.State)}
	for _, in := range t.Spec.GetInputs() {
		v.Inputs = append(v.Inputs, input{Path: in.GetPath(), Name: in.GetName(), From: producer(in.GetName())})
	}
	if t.Outcome != nil {
		v.Result = tproto.ResultLabel(t.Outcome.GetKind())
	}
	return v
}
