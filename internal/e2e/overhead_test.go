package e2e

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"trellis"

	"trellis/internal/syncbuf"
)

var (
	overheadTasks   = flag.Int("overhead-tasks", 3000, "tasks per run of BenchmarkWatchOverhead")
	overheadBrowser = flag.Bool("overhead-browser", true, "BenchmarkWatchOverhead: keep the dashboard open in Chromium when watched (false: only /metrics and the transaction log)")
)

// BenchmarkWatchOverhead measures what watching a cluster costs it: a
// manager process and two worker processes of one core each run
// -overhead-tasks trivial tasks (`true`), submitted at once by a Go
// client, timed from submit to the last result. Plain: the manager has
// neither --dashboard nor --txn-log. Watched: it has both, a headless
// Chromium (signed in) keeps the dashboard's overview open, and a scraper
// reads /metrics every second. Each iteration is one round of both, in
// alternating order (plain first in odd rounds, watched first in even);
// run it with -benchtime Nx for N rounds. It reports the mean tasks/s of
// each and watched / plain; every run is logged.
func BenchmarkWatchOverhead(b *testing.B) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		b.Skip("chromium is not installed (apt-get install -y chromium): the overhead with the dashboard open cannot be measured")
	}
	var plain, watched, plainCPU, watchedCPU []float64
	round := 0
	for b.Loop() {
		round++
		order := []bool{false, true}
		if round%2 == 0 {
			order = []bool{true, false}
		}
		for _, watch := range order {
			perS, cpu, notes, err := overheadRun(b, browser, watch, *overheadTasks)
			if err != nil {
				b.Fatalf("round %d (watched %v): %v", round, watch, err)
			}
			kind := "plain"
			if watch {
				kind = "watched"
				watched, watchedCPU = append(watched, perS), append(watchedCPU, cpu)
			} else {
				plain, plainCPU = append(plain, perS), append(plainCPU, cpu)
			}
			b.Logf("round %d %-7s %8.1f tasks/s, manager CPU %6.0f ms %s", round, kind, perS, cpu, notes)
		}
	}
	p, w := mean(plain), mean(watched)
	b.ReportMetric(p, "plain_tasks/s")
	b.ReportMetric(w, "watched_tasks/s")
	b.ReportMetric(w/p, "watched/plain")
	b.ReportMetric(mean(plainCPU), "plain_manager_cpu_ms")
	b.ReportMetric(mean(watchedCPU), "watched_manager_cpu_ms")
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// overheadRun starts a manager (watched or not) and two workers, runs n
// tasks, and returns tasks per second and the manager process's CPU time
// (user and system, ms) over the run: a figure less shaken by the other
// processes of a loaded machine than the wall clock.
func overheadRun(b *testing.B, browser string, watch bool, n int) (float64, float64, string, error) {
	dir := b.TempDir()
	secret := "s3cret-overhead"
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		return 0, 0, "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args := []string{"manager", "--listen", "127.0.0.1:0", "--secret-file", secretFile, "--store", filepath.Join(dir, "store")}
	if watch {
		args = append(args, "--dashboard", "127.0.0.1:0", "--txn-log", filepath.Join(dir, "txn.jsonl"))
	}
	var out syncbuf.Buffer
	m := exec.CommandContext(ctx, binary, args...)
	m.Stdout, m.Stderr = &out, &out
	if err := m.Start(); err != nil {
		return 0, 0, "", err
	}
	defer func() { m.Process.Kill(); m.Wait() }()
	addr := waitLine(&out, "trellis manager listening on ")
	dash := ""
	if watch {
		dash = waitLine(&out, "trellis dashboard on ")
	}
	if addr == "" || watch && dash == "" {
		return 0, 0, "", fmt.Errorf("the manager did not say where it listens:\n%s", out.String())
	}
	for i := 1; i <= 2; i++ {
		w := exec.CommandContext(ctx, binary, "worker", addr, "--secret-file", secretFile, "--name", fmt.Sprintf("w%d", i),
			"--workdir", filepath.Join(dir, fmt.Sprintf("w%d", i)), "--cores", "1")
		w.Stdout, w.Stderr = io.Discard, io.Discard
		if err := w.Start(); err != nil {
			return 0, 0, "", err
		}
		defer func() { w.Process.Kill(); w.Wait() }()
	}
	cl, err := trellis.Dial(ctx, addr, trellis.WithSecret(secret))
	if err != nil {
		return 0, 0, "", err
	}
	defer cl.Close()
	for {
		st, err := cl.Status(ctx)
		if err == nil && len(st.Workers) == 2 {
			break
		}
		if ctx.Err() != nil {
			return 0, 0, "", fmt.Errorf("the workers did not connect: %v", ctx.Err())
		}
		time.Sleep(20 * time.Millisecond)
	}

	var scrapes atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	countOverviews := func() int { return 0 }
	browserPid := 0
	if watch && *overheadBrowser {
		bctx, err := openDashboard(ctx, browser, dash, secret)
		if err != nil {
			return 0, 0, "", err
		}
		defer chromedp.Cancel(bctx)
		// Count the overviews the page receives, without polling it.
		if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`window.overviews = 0; new MutationObserver(() => window.overviews++).observe(document.getElementById("live"), {childList: true}); true`)); err != nil {
			return 0, 0, "", fmt.Errorf("count the overviews in Chromium: %w", err)
		}
		countOverviews = func() int {
			n, _ := chromedp.Run(bctx, chromedp.Evaluate[int](`window.overviews`))
			return n
		}
		browserPid = chromedp.FromContext(bctx).Browser.Process().Pid
		// Let the browser's start settle (under 10% of a core over half a
		// second, or 10 s): a dashboard open before the run, not one opening.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			before := treeCPUMs(browserPid)
			time.Sleep(500 * time.Millisecond)
			if treeCPUMs(browserPid)-before < 50 {
				break
			}
		}
	}
	if watch {
		wg.Add(1)
		go func() { // exits when stop closes
			defer wg.Done()
			scrapeEverySecond(ctx, stop, "http://"+addr+"/metrics", secret, &scrapes)
		}()
	}

	tasks := make([]*trellis.Task, n)
	for i := range tasks {
		tasks[i] = trellis.NewTask("true")
	}
	cpu0, err := cpuMs(m.Process.Pid)
	if err != nil {
		return 0, 0, "", err
	}
	browser0 := treeCPUMs(browserPid)
	start := time.Now()
	hs, err := cl.Submit(ctx, tasks...)
	if err != nil {
		return 0, 0, "", err
	}
	for _, h := range hs {
		r, err := h.Wait(ctx)
		if err != nil {
			return 0, 0, "", err
		}
		if !r.OK() {
			return 0, 0, "", fmt.Errorf("task %d: %v", h.ID, r.Err())
		}
	}
	secs := time.Since(start).Seconds()
	cpu1, err := cpuMs(m.Process.Pid)
	if err != nil {
		return 0, 0, "", err
	}
	close(stop)
	wg.Wait()
	browserCPU := treeCPUMs(browserPid) - browser0
	notes := ""
	if watch {
		notes = fmt.Sprintf("(%d scrapes, %d overviews received in Chromium, Chromium CPU %.0f ms)", scrapes.Load(), countOverviews(), browserCPU)
	}
	return float64(n) / secs, cpu1 - cpu0, notes, nil
}

// treeCPUMs is the CPU time that process pid and its descendants used so
// far, in milliseconds (0 for pid 0): Chromium runs as several processes.
func treeCPUMs(pid int) float64 {
	if pid == 0 {
		return 0
	}
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var p int
		if _, err := fmt.Sscan(e.Name(), &p); err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		var ppid int
		fmt.Sscan(f[1], &ppid)
		children[ppid] = append(children[ppid], p)
	}
	var total float64
	for todo := []int{pid}; len(todo) > 0; todo = todo[1:] {
		if ms, err := cpuMs(todo[0]); err == nil {
			total += ms
		}
		todo = append(todo, children[todo[0]]...)
	}
	return total
}

// cpuMs is the CPU time (user and system) process pid used so far, in
// milliseconds, from /proc/PID/stat.
func cpuMs(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command (which may hold spaces) in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	var utime, stime float64
	if _, err := fmt.Sscan(f[11], &utime); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat utime: %w", pid, err)
	}
	if _, err := fmt.Sscan(f[12], &stime); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat stime: %w", pid, err)
	}
	return (utime + stime) * 10, nil // clock ticks of 10 ms (USER_HZ 100)
}

// openDashboard signs a headless Chromium in to the dashboard at base and
// leaves it on the overview.
func openDashboard(ctx context.Context, browser, base, secret string) (context.Context, error) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, _ := chromedp.NewExecAllocator(ctx, opts...) // ends with ctx
	bctx, _ := chromedp.NewContext(actx)               // ended by chromedp.Cancel
	err := chromedp.Do(bctx, chromedp.Navigate(base+"/login"), chromedp.WaitVisible(chromedp.ID("secret")),
		chromedp.SendKeys(chromedp.ID("secret"), secret), chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("queue")))
	if err != nil {
		return nil, fmt.Errorf("open the dashboard in Chromium: %w", err)
	}
	return bctx, nil
}

// scrapeEverySecond reads url with the secret once a second until stop
// closes, counting the successful reads.
func scrapeEverySecond(ctx context.Context, stop <-chan struct{}, url, secret string, n *atomic.Int64) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			n.Add(1)
		}
	}
}

// waitLine waits up to 20 s for a line of out starting with prefix and
// returns the rest of it ("" if none came).
func waitLine(out *syncbuf.Buffer, prefix string) string {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(out.String()))
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				return rest
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ""
}
