package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"syscall"
	"time"

	"connectrpc.com/connect"
	goproto "google.golang.org/protobuf/proto"

	"trellis"
	"trellis/internal/journal"
	"trellis/internal/manager"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
	"trellis/local"
)

// RecoveryResult is the output of `trellis bench recovery`.
type RecoveryResult struct {
	Bench   string `json:"bench"`
	Tasks   int    `json:"tasks"` // per round
	Calls   int    `json:"calls"` // per round
	Workers int    `json:"workers"`
	Rounds  int    `json:"rounds"`
	// JournalOverheadTasks: command tasks per second without the journal
	// divided by with it (--state), the median of the rounds; each round
	// runs both, one after the other, in an order that alternates.
	JournalOverheadTasks float64 `json:"journal_overhead_tasks"`
	JournalOverheadCalls float64 `json:"journal_overhead_calls"`
	// TasksRounds and CallsRounds: each round's per-second figures,
	// [without, with].
	TasksRounds [][2]float64 `json:"tasks_rounds"`
	CallsRounds [][2]float64 `json:"calls_rounds"`
	// JournalCPUTasks and JournalCPUCalls: this process's CPU time (user
	// and system: client, manager and workers; not the tasks' or the
	// library's processes) per task or call with the journal divided by
	// without, the median of the rounds. Less moved by other load on the
	// machine than the per-second figures. TasksCPURounds and
	// CallsCPURounds: each round's µs per task or call, [without, with].
	JournalCPUTasks float64      `json:"journal_cpu_tasks"`
	JournalCPUCalls float64      `json:"journal_cpu_calls"`
	TasksCPURounds  [][2]float64 `json:"tasks_cpu_rounds"`
	CallsCPURounds  [][2]float64 `json:"calls_cpu_rounds"`
	// JournalBytesPerTask: bytes of journal records (their data, as
	// written) per command task, from submit to end; JournalFileBytesPerTask
	// the journal's files' size on disk per task (Journal.DiskBytes).
	JournalBytesPerTask     float64 `json:"journal_bytes_per_task"`
	JournalFileBytesPerTask float64 `json:"journal_file_bytes_per_task"`
	// JournalBytesPerTaskCompacted: the same records folded as compaction
	// folds them (manager.FoldJournal), per task: what a snapshot of that
	// run holds.
	JournalBytesPerTaskCompacted float64 `json:"journal_bytes_per_task_compacted"`
	// RestartS: with RestartTasks queued tasks journaled, the time from
	// opening the state directory again (replay) to the first Run a
	// worker receives; a process's start and a worker's reconnect delay
	// are not in it.
	// RestartS and ReplayS are measured after the journal was compacted
	// into a snapshot (as a long-running manager's is);
	// RestartUncompactedS and ReplayUncompactedS before, on the same
	// records. RestartSnapshotBytes is the snapshot's size.
	RestartTasks         int     `json:"restart_tasks"`
	RestartS             float64 `json:"restart_s"`
	ReplayS              float64 `json:"replay_s"` // of which: Listen, which replays the journal
	RestartUncompactedS  float64 `json:"restart_uncompacted_s"`
	ReplayUncompactedS   float64 `json:"replay_uncompacted_s"`
	RestartSnapshotBytes int64   `json:"restart_snapshot_bytes"`
	RestartCompactS      float64 `json:"restart_compact_s"` // the compaction of that journal (off the manager's loop)
	// RestartEndedS and RestartEndedUncompactedS: the same restart with
	// RestartEndedTasks of the tasks ended (a dispatch and an end record
	// each), after and before compaction.
	RestartEndedTasks        int     `json:"restart_ended_tasks"`
	RestartEndedS            float64 `json:"restart_ended_s"`
	RestartEndedUncompactedS float64 `json:"restart_ended_uncompacted_s"`
	// RerunAfterCrash: of the tasks of a map/reduce workflow whose result
	// the client had when the manager process was killed (SIGKILL), how
	// many ran again after it restarted on its --state (see
	// rerunAfterCrash); CrashTasks and CrashFinishedBefore say how many
	// tasks there were and how many had finished.
	RerunAfterCrash     int `json:"rerun_after_crash"`
	CrashTasks          int `json:"crash_tasks"`
	CrashFinishedBefore int `json:"crash_finished_before"`
	// NotMeasured names the keys this benchmark does not measure.
	NotMeasured []string `json:"not_measured,omitempty"`
}

// Recovery measures what the journal costs and how fast a manager
// restarts from it. See RecoveryResult.
func Recovery(ctx context.Context, tasks, calls, workers, rounds, restartTasks, crashMaps int, logf func(string, ...any)) (*RecoveryResult, error) {
	res := &RecoveryResult{Bench: "recovery", Tasks: tasks, Calls: calls, Workers: workers, Rounds: rounds, RestartTasks: restartTasks}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var taskRatios, callRatios, taskCPU, callCPU []float64
	for r := range rounds {
		var tr, cr, tc, cc [2]float64
		order := []bool{false, true}
		if r%2 == 1 {
			order = []bool{true, false}
		}
		for _, journaled := range order {
			i := 0
			if journaled {
				i = 1
			}
			logf("round %d: %d tasks, journal %v", r+1, tasks, journaled)
			perS, cpu, bytes, file, err := journalTasks(ctx, tasks, workers, journaled)
			if err != nil {
				return nil, err
			}
			tr[i], tc[i] = perS, cpu
			if journaled {
				res.JournalBytesPerTask, res.JournalFileBytesPerTask, res.JournalBytesPerTaskCompacted = bytes[0], file, bytes[1]
			}
			logf("round %d: %d calls, journal %v", r+1, calls, journaled)
			if cr[i], cc[i], err = journalCalls(ctx, self, calls, workers, journaled); err != nil {
				return nil, err
			}
		}
		res.TasksRounds, res.CallsRounds = append(res.TasksRounds, tr), append(res.CallsRounds, cr)
		res.TasksCPURounds, res.CallsCPURounds = append(res.TasksCPURounds, tc), append(res.CallsCPURounds, cc)
		taskRatios, callRatios = append(taskRatios, tr[0]/tr[1]), append(callRatios, cr[0]/cr[1])
		taskCPU, callCPU = append(taskCPU, tc[1]/tc[0]), append(callCPU, cc[1]/cc[0])
	}
	res.JournalOverheadTasks, res.JournalOverheadCalls = median(taskRatios), median(callRatios)
	res.JournalCPUTasks, res.JournalCPUCalls = median(taskCPU), median(callCPU)
	logf("restart: %d queued tasks journaled", restartTasks)
	if err := restarts(ctx, restartTasks, res); err != nil {
		return nil, err
	}
	if crashMaps <= 0 {
		res.NotMeasured = []string{"rerun_after_crash"}
		return res, nil
	}
	reduces := max(1, crashMaps/4)
	res.CrashTasks = crashMaps + reduces
	logf("rerun_after_crash: %d maps and %d reduces through a manager process with --state", crashMaps, reduces)
	if res.RerunAfterCrash, res.CrashFinishedBefore, err = rerunAfterCrash(ctx, self, crashMaps, reduces, logf); err != nil {
		return nil, err
	}
	return res, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// stateDir makes a --state directory for one run, or returns "".
func stateDir(journaled bool) (string, func(), error) {
	if !journaled {
		return "", func() {}, nil
	}
	dir, err := os.MkdirTemp("", "trellis-bench-state-")
	if err != nil {
		return "", nil, err
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// journalTasks runs n trivial tasks through an embedded cluster, with or
// without a journal, and returns tasks per second and, journaled, the
// journal's record bytes and file size per task.
func journalTasks(ctx context.Context, n, workers int, journaled bool) (perS, cpuPer float64, recordBytes [2]float64, fileBytes float64, err error) {
	dir, clean, err := stateDir(journaled)
	if err != nil {
		return 0, 0, recordBytes, 0, err
	}
	defer clean()
	c, err := local.Start(ctx, local.Config{Workers: workers, StateDir: dir})
	if err != nil {
		return 0, 0, recordBytes, 0, err
	}
	ts := make([]*trellis.Task, n)
	for i := range ts {
		ts[i] = trellis.NewTask("true")
	}
	cpu := selfCPU()
	secs, err := runAll(ctx, c, ts)
	cpuPer = (selfCPU() - cpu).Seconds() * 1e6 / float64(n)
	c.Close()
	if err != nil || !journaled {
		return float64(n) / secs, cpuPer, recordBytes, 0, err
	}
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		return 0, 0, recordBytes, 0, err
	}
	defer j.Close()
	disk := j.DiskBytes()
	var recs [][]byte
	if err := j.Replay(func(r journal.Record) error { recs = append(recs, append([]byte(nil), r.Data...)); return nil }); err != nil {
		return 0, 0, recordBytes, 0, err
	}
	folded, err := manager.FoldJournal(recs)
	if err != nil {
		return 0, 0, recordBytes, 0, err
	}
	size := func(recs [][]byte) float64 {
		total := 0
		for _, r := range recs {
			total += len(r)
		}
		return float64(total) / float64(n)
	}
	return float64(n) / secs, cpuPer, [2]float64{size(recs), size(folded)}, float64(disk) / float64(n), nil
}

// journalCalls runs n async calls of the benchmark's Go library through an
// embedded cluster, with or without a journal, once the library is warm.
func journalCalls(ctx context.Context, self string, n, workers int, journaled bool) (perS, cpuPer float64, err error) {
	dir, clean, err := stateDir(journaled)
	if err != nil {
		return 0, 0, err
	}
	defer clean()
	c, err := local.Start(ctx, local.Config{Workers: workers, StateDir: dir})
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	if err := c.Install(ctx, &trellis.Library{Name: "bench", Command: self + " " + BenchLibraryArg, Slots: 4, Resources: trellis.Resources{Cores: 0.5}}); err != nil {
		return 0, 0, err
	}
	if _, err := asyncCalls(ctx, c, "bench", min(n, warmUp)); err != nil {
		return 0, 0, err
	}
	cpu := selfCPU()
	secs, err := asyncCalls(ctx, c, "bench", n)
	if err != nil {
		return 0, 0, err
	}
	return float64(n) / secs, (selfCPU() - cpu).Seconds() * 1e6 / float64(n), nil
}

// selfCPU is the CPU time (user and system) this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// restarts journals n queued tasks (a manager with no worker: none runs),
// stops that manager, and times a new one on the same state directory
// (restart); then compacts the journal, as a manager's compactor does, and
// times another.
func restarts(ctx context.Context, n int, res *RecoveryResult) error {
	dir, err := os.MkdirTemp("", "trellis-bench-restart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := journalQueued(ctx, dir, n); err != nil {
		return err
	}
	var times [2]restartTimes
	if times, res.RestartCompactS, res.RestartSnapshotBytes, err = compactedRestart(ctx, dir); err != nil {
		return err
	}
	res.RestartUncompactedS, res.ReplayUncompactedS = times[0].total, times[0].replay
	res.RestartS, res.ReplayS = times[1].total, times[1].replay

	// The same with nine in ten tasks ended: each gets a dispatch and an
	// end record, written here as a run would have (the ends' outcomes
	// are made up: success, no outputs).
	ended, err := os.MkdirTemp("", "trellis-bench-restart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(ended)
	if err := journalQueued(ctx, ended, n); err != nil {
		return err
	}
	res.RestartEndedTasks = n * 9 / 10
	if err := journalEnds(ended, res.RestartEndedTasks); err != nil {
		return err
	}
	if times, _, _, err = compactedRestart(ctx, ended); err != nil {
		return err
	}
	res.RestartEndedUncompactedS, res.RestartEndedS = times[0].total, times[1].total
	return nil
}

type restartTimes struct{ total, replay float64 }

// compactedRestart times a restart on dir as it is, then compacts its
// journal as a manager's compactor does, and times another.
func compactedRestart(ctx context.Context, dir string) (times [2]restartTimes, compactS float64, bytes int64, err error) {
	if times[0].total, times[0].replay, err = restart(ctx, dir); err != nil {
		return times, 0, 0, err
	}
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		return times, 0, 0, err
	}
	start := time.Now()
	info, err := j.Compact(manager.FoldJournal)
	compactS = time.Since(start).Seconds()
	j.Close()
	if err != nil {
		return times, 0, 0, err
	}
	times[1].total, times[1].replay, err = restart(ctx, dir)
	return times, compactS, info.Bytes, err
}

// journalEnds appends a dispatch and a successful end for tasks 1..n (the
// first n submitted) to the journal in dir.
func journalEnds(dir string, n int) error {
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		return err
	}
	defer j.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for id := uint64(1); id <= uint64(n); id++ {
		for _, r := range []*pb.JournalRecord{
			{Rec: &pb.JournalRecord_Dispatched{Dispatched: &pb.JournalDispatched{TaskId: id, Attempt: 1, Worker: "bench", Epoch: 1}}},
			{Rec: &pb.JournalRecord_Done{Done: &pb.JournalTaskDone{TaskId: id, Attempt: 1, Worker: "bench",
				Outcome: &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS}}}},
		} {
			b, err := goproto.Marshal(r)
			if err != nil {
				return err
			}
			j.Append(b)
		}
		if id%10000 == 0 {
			j.Run(ctx) // a cancelled Run writes what is queued, then returns
		}
	}
	j.Run(ctx)
	return j.Err()
}

// journalQueued journals n queued tasks in dir, through a manager with no
// worker.
func journalQueued(ctx context.Context, dir string, n int) error {
	m, err := manager.Listen(manager.Config{Listen: "127.0.0.1:0", Secret: "bench", StateDir: dir})
	if err != nil {
		return err
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(mctx) }() // exits when stop is called
	const batch = 1000
	for i := 0; i < n; i += batch {
		req := &pb.SubmitRequest{Session: "bench"}
		for k := i; k < min(n, i+batch); k++ {
			req.Tasks = append(req.Tasks, &pb.TaskSpec{Name: "t", Key: fmt.Sprint(k), Command: "true", Resources: &pb.Resources{Cores: 1}})
		}
		if _, err := m.Handler().Submit(ctx, connect.NewRequest(req)); err != nil {
			stop()
			<-done
			return err
		}
	}
	stop()
	<-done
	return nil
}

// restart times a manager on the state directory dir from Listen (which
// replays the journal) to the first Run that a worker, joining at once,
// receives.
func restart(ctx context.Context, dir string) (total, replay float64, err error) {
	start := time.Now()
	m2, err := manager.Listen(manager.Config{Listen: "127.0.0.1:0", Secret: "bench", StateDir: dir})
	if err != nil {
		return 0, 0, err
	}
	replay = time.Since(start).Seconds()
	mctx2, stop2 := context.WithCancel(ctx)
	done2 := make(chan error, 1)
	go func() { done2 <- m2.Run(mctx2) }() // exits when stop2 is called
	defer func() { stop2(); <-done2 }()
	w := m2.ConnectWorker(mctx2)
	defer w.Close()
	hello := &pb.Hello{Name: "bench", Protocol: proto.Protocol, Incarnation: "bench", Resources: &pb.Resources{Cores: 1, MemoryMb: 1024, DiskMb: 1024}}
	if err := w.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Hello{Hello: hello}}); err != nil {
		return 0, 0, err
	}
	for {
		msg, err := w.Receive()
		if err != nil {
			return 0, 0, fmt.Errorf("restart: no Run came: %w", err)
		}
		for _, one := range append(msg.GetBatch().GetMsgs(), msg) {
			if one.GetRun() != nil {
				return time.Since(start).Seconds(), replay, nil
			}
		}
		if ctx.Err() != nil {
			return 0, 0, errors.New("restart: interrupted")
		}
	}
}
