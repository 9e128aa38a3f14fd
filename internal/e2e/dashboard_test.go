package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"trellis"
	"trellis/internal/txnlog"
)

var screenshots = flag.String("screenshots", "", "directory where TestDashboardInChromium saves a screenshot of each page (docs/ keeps them)")

// scrape reads the manager's /metrics with the given secret and returns
// each sample's value by its name and labels, as the text format writes
// them: `trellis_queue{modality="task",state="ready"}`.
func (c *cluster) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+c.addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.secret())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: HTTP %d, want 200", resp.StatusCode)
	}
	samples := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	return samples
}

// TestMetricsCountWhatRan: a manager process's /metrics, scraped after
// tasks of known outcomes and sizes ran on a worker process, shows them:
// results by kind, bytes by route, the worker and its cores, an empty
// queue; and it refuses a scrape without the secret.
func TestMetricsCountWhatRan(t *testing.T) {
	c := newCluster(t)
	cl := c.client()
	c.worker("w1", nil, "--cores", "2", "--memory", "1024")
	c.waitWorkers(cl, 1)

	dir := t.TempDir()
	in := filepath.Join(dir, "in.bin")
	if err := os.WriteFile(in, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	ok1 := trellis.NewTask("wc -c < in.bin").AddInput(trellis.LocalFile(in), "in.bin")
	ok2 := trellis.NewTask("head -c 100000 /dev/zero > out.bin").AddOutput(trellis.Output(filepath.Join(dir, "out.bin")), "out.bin")
	ok3 := trellis.NewTask("true")
	bad := trellis.NewTask("exit 3")
	slow := trellis.NewTask("sleep 30")
	slow.TimeLimit = 500 * time.Millisecond
	// Dataflow tasks: a temp file's producer, and its consumer, which fails.
	tmp := trellis.Temp()
	produce := trellis.NewTask("echo data > t.txt").AddOutput(tmp, "t.txt")
	consume := trellis.NewTask("cat t.txt; exit 5").AddInput(tmp, "t.txt")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hs, err := cl.Submit(ctx, ok1, ok2, ok3, bad, slow, produce, consume)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		waitResult(t, h, time.Minute)
	}

	got := c.scrape(t)
	want := map[string]float64{
		`trellis_ended_total{modality="task",result="success"}`:         3,
		`trellis_ended_total{modality="task",result="failed"}`:          1,
		`trellis_ended_total{modality="task",result="timed_out"}`:       1,
		`trellis_ended_total{modality="call",result="success"}`:         0,
		`trellis_queue{modality="task",state="ready"}`:                  0,
		`trellis_queue{modality="task",state="running"}`:                0,
		`trellis_transfer_bytes_total{route="manager_to_worker"}`:       1 << 20,
		`trellis_transfer_bytes_total{route="worker_to_manager"}`:       100000,
		`trellis_workers{state="active"}`:                               1,
		`trellis_workers{state="draining"}`:                             0,
		`trellis_worker_resources{resource="cores",use="total"}`:        2,
		`trellis_worker_resources{resource="cores",use="used"}`:         0,
		`trellis_worker_resources{resource="memory_bytes",use="total"}`: 1 << 30,
		`trellis_transfers_in_flight`:                                   0,
		`trellis_dispatched_total{modality="task"}`:                     5,
		`trellis_attempts_total{modality="task",result="success"}`:      3,
		`trellis_attempts_total{modality="task",result="timed_out"}`:    1,
		`trellis_ended_total{modality="dataflow",result="success"}`:     1,
		`trellis_ended_total{modality="dataflow",result="failed"}`:      1,
		`trellis_queue{modality="dataflow",state="waiting"}`:            0,
		`trellis_dispatched_total{modality="dataflow"}`:                 2,
		`trellis_attempts_total{modality="dataflow",result="success"}`:  1,
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("/metrics %s = %v (present: %v), want %v", name, g, ok, w)
		}
	}
	if _, ok := got["trellis_journal_records"]; ok {
		t.Errorf("/metrics has trellis_journal_records, want none without --state")
	}

	// trellis status agrees: the input went to the worker once.
	st, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.BytesFromManager != 1<<20 {
		t.Errorf("status: %d bytes from the manager, want %d (one fetch of in.bin)", st.BytesFromManager, 1<<20)
	}

	// A running task shows in the queue and in the cores used.
	h, err := cl.Submit(ctx, trellis.NewTask("sleep 30"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the task to run", func() bool {
		got := c.scrape(t)
		return got[`trellis_queue{modality="task",state="running"}`] == 1 &&
			got[`trellis_worker_resources{resource="cores",use="used"}`] == 1
	})
	if err := cl.Cancel(ctx, h[0].ID); err != nil {
		t.Fatal(err)
	}

	for _, auth := range []string{"", "Bearer wrong"} {
		req, _ := http.NewRequest("GET", "http://"+c.addr+"/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if code, body := do(t, req); code != http.StatusUnauthorized || !strings.Contains(body, "wrong or missing secret") {
			t.Errorf("GET /metrics with Authorization %q: HTTP %d %q, want 401 naming the secret", auth, code, body)
		}
	}
}

// TestDashboardInChromium: a real headless Chromium signs in to the
// dashboard of a manager process with a worker process, sees on the
// overview what the manager's snapshot says, sees it change live when a
// task ends (server-sent events, no reload), pages through the task list
// and opens a failed task's page: where it ran, how it ended, its stderr.
func TestDashboardInChromium(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (apt-get install -y chromium): the dashboard's browser test cannot run")
	}
	c := newCluster(t, "--dashboard", "127.0.0.1:0")
	var base string
	waitFor(t, 10*time.Second, "the dashboard address", func() bool {
		for _, line := range strings.Split(c.manager.Output(), "\n") {
			if a, ok := strings.CutPrefix(line, "trellis dashboard on "); ok {
				base = a
				return true
			}
		}
		return false
	})
	cl := c.client()
	c.worker("w1", nil, "--cores", "2", "--memory", "1024")
	c.waitWorkers(cl, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tasks := []*trellis.Task{named("bad", "echo oops-on-stderr >&2; exit 2")}
	for i := range 3 {
		tasks = append(tasks, named(fmt.Sprintf("good%d", i), fmt.Sprintf("echo hello %d", i)))
	}
	// Two dataflow tasks: a producer of a temp file and its consumer.
	words := trellis.Temp()
	tasks = append(tasks, named("produce", "echo a b c > w.txt").AddOutput(words, "w.txt"),
		named("consume", "wc -w < w.txt").AddInput(words, "w.txt"))
	hs, err := cl.Submit(ctx, tasks...)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		waitResult(t, h, time.Minute)
	}
	bad := hs[0].ID

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// text reads an element's text in one step in the page: the live
	// overview replaces its nodes each second, so a node found first and
	// read next may be gone in between.
	text := func(sel chromedp.CSS) string {
		t.Helper()
		q, _ := json.Marshal(string(sel))
		v, err := chromedp.Run(bctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%s)?.textContent ?? "").trim()`, q)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return v
	}
	shoot := func(name string) {
		t.Helper()
		if *screenshots == "" {
			return
		}
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)) // 100: PNG
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(*screenshots, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Sign in: the overview sends the browser to the sign-in page first.
	do("open the overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("secret")))
	if url, err := chromedp.Run(bctx, chromedp.Location()); err != nil || url != base+"/login" {
		t.Errorf("the overview without a session went to %s (%v), want %s/login", url, err, base)
	}
	shoot("dashboard-login.png")
	do("sign in with a wrong secret", chromedp.SendKeys(chromedp.ID("secret"), "wrong"), chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("login-error")))
	do("sign in", chromedp.SendKeys(chromedp.ID("secret"), c.secret()), chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("queue")))
	if cookies, err := chromedp.Run(bctx, chromedp.Evaluate[string]("document.cookie")); err != nil || cookies != "" {
		t.Errorf("scripts see the cookies %q (%v), want none (HttpOnly)", cookies, err)
	}

	// The overview shows what the snapshot says.
	st, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"q-task-finished": strconv.Itoa(st.Tasks.Finished), "q-task-succeeded": strconv.Itoa(st.Tasks.Succeeded),
		"q-task-failed": strconv.Itoa(st.Tasks.Failed), "q-task-running": strconv.Itoa(st.Tasks.Running), "workers-count": strconv.Itoa(len(st.Workers)),
		"q-dataflow-finished": strconv.Itoa(st.Dataflow.Finished), "q-dataflow-succeeded": strconv.Itoa(st.Dataflow.Succeeded),
		"q-dataflow-running": strconv.Itoa(st.Dataflow.Running), "q-call-finished": strconv.Itoa(st.Calls.Finished)}
	for id, w := range want {
		if got := text(chromedp.CSS("#" + id)); got != w {
			t.Errorf("overview #%s = %q, want %q (the snapshot's)", id, got, w)
		}
	}
	if st.Tasks.Finished != 4 || st.Tasks.Failed != 1 || st.Dataflow.Finished != 2 || st.Dataflow.Succeeded != 2 || st.Finished != 6 {
		t.Errorf("snapshot: %d tasks finished, %d failed; %d dataflow tasks finished, %d succeeded; %d in all; want 4, 1; 2, 2; 6",
			st.Tasks.Finished, st.Tasks.Failed, st.Dataflow.Finished, st.Dataflow.Succeeded, st.Finished)
	}
	w1 := st.Workers[0]
	if got, w := text(`tr.worker[data-name="w1"] td.cores`), fmt.Sprintf("%g / %g", w1.Total.Cores-w1.Free.Cores, w1.Total.Cores); got != w {
		t.Errorf("overview: w1 cores %q, want %q", got, w)
	}

	// A task that ends later shows without a reload.
	more, err := cl.Submit(ctx, named("later", "echo later"))
	if err != nil {
		t.Fatal(err)
	}
	waitResult(t, more[0], time.Minute)
	waitFor(t, 20*time.Second, "the overview to show 5 tasks finished", func() bool {
		return text("#q-task-finished") == "5"
	})
	// The timeline draws the seven attempts of the last minute, live.
	waitFor(t, 20*time.Second, "the timeline to show 7 attempts", func() bool {
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`Array.from(document.querySelectorAll("#timeline rect.attempt")).reduce((n, r) => n + Number(r.dataset.n), 0)`))
		return err == nil && n == 7
	})
	shoot("dashboard-overview.png")

	// The files page shows the data figures of the snapshot; the workers
	// page lists the worker.
	do("open the files page", chromedp.Navigate(base+"/files"), chromedp.WaitVisible(chromedp.ID("caches")))
	if got, want := text("#f-recreated"), strconv.Itoa(st.TasksRecreated); got != want {
		t.Errorf("files page: %q producers run again, want %q", got, want)
	}
	shoot("dashboard-files.png")
	do("open the workers page", chromedp.Navigate(base+"/workers"), chromedp.WaitVisible(chromedp.ID("workers")))
	if got := text("#workers-all"); got != "1" {
		t.Errorf("workers page: %q workers, want 1", got)
	}
	shoot("dashboard-workers.png")

	// The task list links to a failed task's page.
	do("open the task list", chromedp.Navigate(base+"/tasks"), chromedp.WaitVisible(chromedp.ID("tasks")))
	if total := text("#tasks-total"); total != "7" {
		t.Errorf("task list: %q tasks, want 7", total)
	}
	shoot("dashboard-tasks.png")
	do("open the failed task", chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[href="/tasks/%d"]`, bad))),
		chromedp.WaitVisible(chromedp.ID("task-state")))
	state, result, stderr, worker := text("#task-state"), text("#task-result"), text("#stderr"), text("#attempts td.worker")
	if state != "done" || result != "failed" || stderr != "oops-on-stderr" || worker != "w1" {
		t.Errorf("task page of %d: state %q, result %q, stderr %q, worker %q; want done, failed, oops-on-stderr, w1", bad, state, result, stderr, worker)
	}
	shoot("dashboard-task.png")
}

// TestTxnLog: a manager process started with --txn-log writes, within a
// second or so of each change, one JSON line per task and worker state
// change: the worker joining, each task submitted, placed and done with
// its result, the worker leaving when it is killed.
func TestTxnLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "txn.jsonl")
	c := newCluster(t, "--txn-log", path)
	cl := c.client()
	w := c.worker("w1", nil, "--cores", "2")
	c.waitWorkers(cl, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hs, err := cl.Submit(ctx, named("good", "echo good"), named("bad", "exit 4"))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		waitResult(t, h, time.Minute)
	}
	w.signal(t, syscall.SIGKILL)
	c.waitWorkers(cl, 0)

	var recs []txnlog.Record
	waitFor(t, 10*time.Second, "the log to show the worker leaving", func() bool {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		recs, err = txnlog.Read(f)
		if err != nil {
			t.Fatal(err)
		}
		return len(recs) > 0 && recs[len(recs)-1].Event == txnlog.WorkerLeft
	})
	var got []string
	for i, r := range recs {
		if i > 0 && r.Time.Before(recs[i-1].Time) {
			t.Errorf("record %d (%s) at %s, before the one ahead of it (%s)", i, r.Event, r.Time, recs[i-1].Time)
		}
		line := r.Event + " " + r.Worker
		if r.Task != 0 {
			line = fmt.Sprintf("%s task %d %s %s %s", r.Event, r.Task, r.Name, r.Worker, r.Result)
		}
		got = append(got, strings.TrimSpace(line))
	}
	want := []string{
		"worker_joined w1",
		"task_submitted task 1 good",
		"task_submitted task 2 bad",
		"task_running task 1  w1",
		"task_running task 2  w1",
	}
	if diff := cmp.Diff(want, got[:min(len(got), len(want))]); diff != "" {
		t.Errorf("the log's first records (-want +got):\n%s", diff)
	}
	dones := map[string]bool{}
	for _, line := range got[min(len(got), len(want)):] {
		dones[line] = true
	}
	for _, line := range []string{"task_done task 1  w1 success", "task_done task 2  w1 failed", "worker_left w1"} {
		if !dones[line] {
			t.Errorf("the log lacks %q after the first five records; it has:\n%s", line, strings.Join(got, "\n"))
		}
	}
}

// TestLogsAfterTheRun: after a task ran, `trellis logs` (and
// Client.Logs) give the tails of its stdout and stderr byte for byte,
// say how it ended, and name an unknown task as such.
func TestLogsAfterTheRun(t *testing.T) {
	c := newCluster(t)
	cl := c.client()
	c.worker("w1", nil, "--cores", "1")
	c.waitWorkers(cl, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hs, err := cl.Submit(ctx, named("chatty", "seq 1 3000; echo to-stderr >&2; exit 3"))
	if err != nil {
		t.Fatal(err)
	}
	waitResult(t, hs[0], time.Minute)
	var seq strings.Builder
	for i := 1; i <= 3000; i++ {
		fmt.Fprintf(&seq, "%d\n", i)
	}

	l, err := cl.Logs(ctx, hs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(l.Stdout); n == 0 || n > 2048 || !strings.HasSuffix(seq.String(), string(l.Stdout)) || !l.StdoutTruncated {
		t.Errorf("Logs: stdout of %d bytes (truncated %v), want the last bytes (at most 2048) of seq 1 3000, truncated", n, l.StdoutTruncated)
	}
	if string(l.Stderr) != "to-stderr\n" || l.Result != "failed" || l.ExitCode != 3 || l.Worker != "w1" {
		t.Errorf("Logs: stderr %q, result %q, exit code %d, worker %q; want \"to-stderr\\n\", failed, 3, w1", l.Stderr, l.Result, l.ExitCode, l.Worker)
	}

	code, out := runTrellis(t, "logs", c.addr, strconv.FormatUint(hs[0].ID, 10), "--secret-file", c.secretFile)
	for _, want := range []string{"2999\n3000\n", "to-stderr\n", fmt.Sprintf("trellis: task %d (chatty) on w1: failed, exit code 3", hs[0].ID), "stdout is its tail"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("trellis logs: exit %d, want 0 and %q in:\n%s", code, want, out)
		}
	}
	code, out = runTrellis(t, "logs", c.addr, "999", "--secret-file", c.secretFile)
	if code == 0 || !strings.Contains(out, "task 999: this manager holds no logs of it") {
		t.Errorf("trellis logs of task 999: exit %d, want non-zero saying it holds no logs of it:\n%s", code, out)
	}
}

// TestLogsSurviveRestart: with --state, a task's output tails are in the
// journal's record of its end, so a manager started again on the same
// state serves them to trellis logs.
func TestLogsSurviveRestart(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	c := newCluster(t, "--state", state)
	cl := c.client()
	c.worker("w1", nil, "--cores", "1")
	c.waitWorkers(cl, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hs, err := cl.Submit(ctx, named("kept", "echo kept-on-disk; echo and-stderr >&2"))
	if err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, hs[0], time.Minute); !r.OK() {
		t.Fatalf("task kept: %v, want success", r.Err())
	}
	c.manager.signal(t, syscall.SIGKILL)
	c.manager.wait(t, 10*time.Second)
	c.manager = start(t, nil, "manager", "--listen", c.addr, "--secret-file", c.secretFile, "--state", state)
	waitFor(t, 20*time.Second, "the manager to listen again", func() bool {
		return strings.Contains(c.manager.Output(), "trellis manager listening on ")
	})
	code, out := runTrellis(t, "logs", c.addr, strconv.FormatUint(hs[0].ID, 10), "--secret-file", c.secretFile)
	for _, want := range []string{"kept-on-disk\n", "and-stderr\n", fmt.Sprintf("trellis: task %d (kept) on w1: success", hs[0].ID)} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("trellis logs after a restart on the same --state: exit %d, want 0 and %q in:\n%s", code, want, out)
		}
	}
}
