package e2e

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"trellis"
)

// Kill the worker holding the only copy of a temp file before its consumer
// runs: the producer runs again, the consumer gets the right bytes and
// runs once (RECOVERY.md scenario 2).
func TestLineageAfterSIGKILL(t *testing.T) {
	c := newCluster(t)
	first := c.worker("first", nil, "--cores", "1")
	cl := c.client()
	c.waitWorkers(cl, 1)

	dir := t.TempDir()
	gate := filepath.Join(dir, "open")
	numbers := trellis.Temp()
	produced, counted := filepath.Join(dir, "produced"), filepath.Join(dir, "counted")
	produce := trellis.NewTask("echo run >> "+produced+" && seq 1 100000 > n.txt").AddOutput(numbers, "n.txt")
	produce.Deterministic = true // kept by lineage
	count := trellis.NewTask("echo run >> "+counted+" && wc -l < n.txt | tr -d ' ' > count.txt").AddInput(numbers, "n.txt")
	countOut := trellis.Output(filepath.Join(dir, "count.txt"))
	count.AddOutput(countOut, "count.txt")
	hs := gatedChain(t, cl, gate, produce, count)
	waitRunning(t, cl, 1, "the gate task to hold the only worker")
	first.signal(t, syscall.SIGKILL) // the only copy of numbers goes with it
	first.wait(t, 10*time.Second)
	c.worker("second", nil, "--cores", "1")
	os.WriteFile(gate, nil, 0o644)

	if r := waitResult(t, hs[2], time.Minute); !r.OK() {
		t.Fatalf("consumer: %v", r.Err())
	}
	if got, _ := os.ReadFile(countOut.Path()); string(got) != "100000\n" {
		t.Errorf("count.txt = %q, want 100000", got)
	}
	s, err := cl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.TasksRecreated != 1 || s.FilesLost != 0 {
		t.Errorf("status: %d tasks recreated, %d files lost; want 1 and 0", s.TasksRecreated, s.FilesLost)
	}
	if p, c := len(lines(t, produced)), len(lines(t, counted)); p != 2 || c != 1 {
		t.Errorf("the producer ran %d times and the consumer %d; want 2 and 1", p, c)
	}
}

// URL files: fetched by the worker itself; a 404 or a hanging server fails
// the task with the reason after bounded tries, and other tasks go on.
func TestURLFiles(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/words.txt":
			w.Write([]byte("alpha\nbeta\ngamma\n"))
		case "/hang":
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	}))
	defer origin.Close()
	c := newCluster(t)
	c.worker("w", nil, "--cores", "4", "--stall-timeout", "300ms")
	cl := c.client()
	c.waitWorkers(cl, 1)

	use := func(u string) *trellis.Task {
		tk := trellis.NewTask("wc -l < in")
		tk.AddInput(trellis.URL(u), "in")
		tk.Retries = 0
		return tk
	}
	hs, err := cl.Submit(context.Background(), use(origin.URL+"/words.txt"), use(origin.URL+"/nope"), use(origin.URL+"/hang"), trellis.NewTask("echo independent"))
	if err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, hs[0], 30*time.Second); !r.OK() || strings.TrimSpace(string(r.Stdout)) != "3" {
		t.Errorf("good url: %v, stdout %q", r.Err(), r.Stdout)
	}
	for i, want := range map[int]string{1: "404", 2: "no byte for 300ms"} {
		r := waitResult(t, hs[i], time.Minute)
		if r.Kind != trellis.InputMissing || !strings.Contains(r.Message, want) || !strings.Contains(r.Message, "after 4 tries") {
			t.Errorf("task %d: %v: %s; want input missing naming %q after 4 tries", i, r.Kind, r.Message, want)
		}
	}
	if r := waitResult(t, hs[3], 30*time.Second); !r.OK() {
		t.Errorf("independent task: %v", r.Err())
	}
	s, _ := cl.Status(context.Background())
	if s.BytesFromURLs != int64(len("alpha\nbeta\ngamma\n")) {
		t.Errorf("bytes from urls = %d, want %d", s.BytesFromURLs, len("alpha\nbeta\ngamma\n"))
	}
}

// A worker whose cache disk is full fails the task with "disk exhausted"
// and leaves nothing half-written in its cache.
func TestDiskExhausted(t *testing.T) {
	big := strings.Repeat("x", 3<<20)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(big)) }))
	defer origin.Close()
	c := newCluster(t)
	workdir := filepath.Join(t.TempDir(), "small")
	c.worker("small", nil, "--cores", "1", "--disk", "2", "--workdir", workdir)
	cl := c.client()
	c.waitWorkers(cl, 1)
	tk := trellis.NewTask("wc -c < in").AddInput(trellis.URL(origin.URL+"/big"), "in")
	tk.Retries = 0
	hs, err := cl.Submit(context.Background(), tk)
	if err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, hs[0], 30*time.Second)
	if r.Kind != trellis.InputMissing || !strings.Contains(r.Message, "disk exhausted") {
		t.Errorf("got %v: %s; want input missing: disk exhausted", r.Kind, r.Message)
	}
	filepath.Walk(filepath.Join(workdir, "cache"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > 0 && filepath.Base(p) != "index.json" {
			t.Errorf("cache holds %s (%d bytes) after a failed fetch", p, fi.Size())
		}
		return nil
	})
}

// Forever-level files survive a worker restart: the worker reports them
// when it reconnects, and tasks use them without fetching again.
func TestForeverCacheSurvivesRestart(t *testing.T) {
	hits := 0
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		w.Write([]byte("kept forever\n"))
	}))
	defer origin.Close()
	c := newCluster(t)
	workdir := filepath.Join(t.TempDir(), "w")
	w := c.worker("w", nil, "--workdir", workdir)
	cl := c.client()
	c.waitWorkers(cl, 1)
	data := trellis.URL(origin.URL + "/data").Cache(trellis.CacheForever)
	read := func() *trellis.Result {
		hs, err := cl.Submit(context.Background(), trellis.NewTask("cat in").AddInput(data, "in"))
		if err != nil {
			t.Fatal(err)
		}
		return waitResult(t, hs[0], 30*time.Second)
	}
	if r := read(); !r.OK() || string(r.Stdout) != "kept forever\n" {
		t.Fatalf("first read: %v, %q", r.Err(), r.Stdout)
	}
	w.signal(t, syscall.SIGTERM)
	w.wait(t, 20*time.Second)
	c.waitWorkers(cl, 0)
	c.worker("w", nil, "--workdir", workdir)
	waitFor(t, 20*time.Second, "the restarted worker to report its cache", func() bool {
		s, err := cl.Status(context.Background())
		return err == nil && len(s.Workers) == 1 && s.Workers[0].CacheFiles == 1
	})
	if r := read(); !r.OK() || string(r.Stdout) != "kept forever\n" {
		t.Fatalf("read after restart: %v, %q", r.Err(), r.Stdout)
	}
	if hits != 1 {
		t.Errorf("the origin was asked %d times; want 1 (the restarted worker kept the file)", hits)
	}
}

// A worker deletes a task-level input from its cache once the last task
// that reads it finished, and a workflow-level one once the client that
// declared it closed its session.
func TestCacheLevelsUnlink(t *testing.T) {
	c := newCluster(t)
	workdir := filepath.Join(t.TempDir(), "w")
	c.worker("w", nil, "--workdir", workdir)
	cl := c.client()
	c.waitWorkers(cl, 1)

	dir := t.TempDir()
	write := func(name string, b byte) string {
		p := filepath.Join(dir, name)
		// Over the inline limit, so that it is cached, not sent in the task.
		if err := os.WriteFile(p, bytes.Repeat([]byte{b}, 100<<10), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	task := trellis.LocalFile(write("task", 'x')).Cache(trellis.CacheTask)
	flow := trellis.LocalFile(write("flow", 'y')).Cache(trellis.CacheWorkflow)
	hs, err := cl.Submit(context.Background(),
		trellis.NewTask("wc -c < a").AddInput(task, "a").AddInput(flow, "b"),
		trellis.NewTask("wc -c < a").AddInput(task, "a"))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if r := waitResult(t, h, 30*time.Second); !r.OK() || strings.TrimSpace(string(r.Stdout)) != "102400" {
			t.Fatalf("task %s: %v, stdout %q, want 102400", h.Name, r.Err(), r.Stdout)
		}
	}
	cached := func(f *trellis.File) bool {
		_, err := os.Stat(filepath.Join(workdir, "cache", "files", f.Name()))
		return err == nil
	}
	waitFor(t, 10*time.Second, "the worker to delete the task-level file", func() bool { return !cached(task) })
	if !cached(flow) {
		t.Fatal("the workflow-level file left the worker's cache before its session ended")
	}
	cl.Close()
	waitFor(t, 10*time.Second, "the worker to delete the workflow-level file", func() bool { return !cached(flow) })
}
