package manager

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/core"
	"trellis/internal/inproc"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// fakeFileServer stands for the file servers of workers: /w<N>/<name>
// answers the file's name as its content. A request waits until release
// is closed, or until its client gives up; the server counts the requests
// in progress at once.
type fakeFileServer struct {
	*httptest.Server
	release chan struct{}
	once    sync.Once // closes release

	mu      sync.Mutex // guards now, max, changed
	now     int
	max     int
	changed chan struct{} // closed and replaced when now changes
}

func newFakeFileServer(t *testing.T) *fakeFileServer {
	f := &fakeFileServer{release: make(chan struct{}), changed: make(chan struct{})}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.add(1)
		defer f.add(-1)
		select {
		case <-f.release:
			fmt.Fprint(w, filepath.Base(r.URL.Path))
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { f.open(); f.Close() }) // Close waits for the requests
	return f
}

// open lets every request, in progress or to come, answer.
func (f *fakeFileServer) open() { f.once.Do(func() { close(f.release) }) }

func (f *fakeFileServer) add(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now += n
	f.max = max(f.max, f.now)
	close(f.changed)
	f.changed = make(chan struct{})
}

// waitFor waits until n requests are in progress at once.
func (f *fakeFileServer) waitFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		f.mu.Lock()
		now, changed := f.now, f.changed
		f.mu.Unlock()
		if now == n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("requests in progress at the file server: got %d, want %d", now, n)
		}
	}
}

func (f *fakeFileServer) job(w core.WorkerID, name string) ckptJob {
	return ckptJob{name: name, worker: w, url: fmt.Sprintf("%s/w%d/%s", f.URL, w, name)}
}

// startCheckpointer runs a checkpointer into a temporary directory; its
// reports arrive on the channel returned.
func startCheckpointer(t *testing.T) (*checkpointer, string, chan evCheckpointed) {
	dir := t.TempDir()
	c := newCheckpointer(dir, nil)
	evs := make(chan evCheckpointed, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // exits when ctx ends (at the test's cleanup)
		defer close(done)
		c.run(ctx, func(ctx context.Context, ev any) error {
			evs <- ev.(evCheckpointed)
			return nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return c, dir, evs
}

func nextReport(t *testing.T, evs chan evCheckpointed) evCheckpointed {
	t.Helper()
	select {
	case ev := <-evs:
		return ev
	case <-time.After(time.Minute):
		t.Fatal("no checkpoint report within a minute")
		return evCheckpointed{}
	}
}

// TestCheckpointPullsInParallel: pulls from two workers are in progress at
// the file server at once, and both land in the checkpoint directory.
func TestCheckpointPullsInParallel(t *testing.T) {
	srv := newFakeFileServer(t)
	c, dir, evs := startCheckpointer(t)
	c.add(srv.job(1, "a"))
	c.add(srv.job(2, "b"))
	srv.waitFor(t, 2)
	srv.open()
	got := map[string]bool{}
	for range 2 {
		ev := nextReport(t, evs)
		if ev.err != nil {
			t.Fatalf("pull of %s: %v", ev.name, ev.err)
		}
		got[ev.name] = true
		data, err := os.ReadFile(filepath.Join(dir, ev.name))
		if err != nil || string(data) != ev.name {
			t.Errorf("checkpoint %s holds %q (%v), want %q", ev.name, data, err, ev.name)
		}
	}
	if !got["a"] || !got["b"] {
		t.Errorf("reports: got %v, want a and b", got)
	}
}

// TestCheckpointPullsBoundedAndCancelled: with more pulls than the bound,
// only ckptParallel reach the file server at once; a worker's loss ends
// its pulls in progress (each reports a failure) and drops its queued
// ones, while another worker's pull goes on.
func TestCheckpointPullsBoundedAndCancelled(t *testing.T) {
	srv := newFakeFileServer(t)
	c, _, evs := startCheckpointer(t)
	for i := range ckptParallel + 2 {
		c.add(srv.job(7, fmt.Sprint("f", i)))
	}
	srv.waitFor(t, ckptParallel)
	c.add(srv.job(8, "other"))
	c.mu.Lock()
	queued := len(c.queue)
	c.mu.Unlock()
	if queued != 3 {
		t.Fatalf("queued pulls with %d in progress: got %d, want 3", ckptParallel, queued)
	}

	c.cancelWorker(7)
	for range ckptParallel {
		ev := nextReport(t, evs)
		if ev.worker != 7 || ev.err == nil {
			t.Fatalf("report after worker 7's loss: got %s from worker %d (err %v), want a failure from worker 7", ev.name, ev.worker, ev.err)
		}
	}
	srv.waitFor(t, 1) // worker 8's pull, and none of worker 7's queued ones
	c.mu.Lock()
	for _, j := range c.queue {
		if j.worker == 7 {
			t.Errorf("pull of %s from worker 7 still queued after its loss", j.name)
		}
	}
	c.mu.Unlock()
	srv.open()
	if ev := nextReport(t, evs); ev.name != "other" || ev.err != nil {
		t.Errorf("last report: got %s (err %v), want other, pulled", ev.name, ev.err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.max != ckptParallel {
		t.Errorf("most pulls at the file server at once: got %d, want %d", srv.max, ckptParallel)
	}
}

// TestCheckpointPullsThroughTheManager: two workers each end a task kept
// by an async checkpoint; the manager's pulls from both file servers are
// in progress at once; the first worker's loss ends its pull, and the
// other's checkpoint lands in the checkpoint directory.
func TestCheckpointPullsThroughTheManager(t *testing.T) {
	dir := t.TempDir()
	m, ctx := runManager(t, Config{Listen: "127.0.0.1:0", Secret: "s", CheckpointDir: dir})
	srvs := []*fakeFileServer{newFakeFileServer(t), newFakeFileServer(t)}
	var ws []*inproc.End[*pb.WorkerMessage, *pb.ManagerMessage]
	for _, srv := range srvs {
		w := m.ConnectWorker(ctx)
		t.Cleanup(func() { w.Close() })
		hello := &pb.Hello{Name: "w", Protocol: proto.Protocol, Resources: &pb.Resources{Cores: 1, MemoryMb: 1000, DiskMb: 1000},
			FileServer: strings.TrimPrefix(srv.URL, "http://")}
		if err := w.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Hello{Hello: hello}}); err != nil {
			t.Fatal(err)
		}
		if first, err := w.Receive(); err != nil || first.GetWelcome() == nil {
			t.Fatalf("first message %v, %v; want a welcome", first, err)
		}
		ws = append(ws, w)
	}
	var tasks []*pb.TaskSpec
	var decls []*pb.FileDecl
	for _, name := range []string{"ck-a", "ck-b"} {
		tasks = append(tasks, &pb.TaskSpec{Name: name, Key: name, Command: "true", Resources: &pb.Resources{Cores: 1},
			Outputs: []*pb.FileRef{{Name: name, Path: "o"}}, Keep: pb.Keep_KEEP_CHECKPOINT_ASYNC})
		decls = append(decls, &pb.FileDecl{Name: name, Kind: pb.FileKind_FILE_KIND_TEMP, Level: pb.CacheLevel_CACHE_LEVEL_WORKFLOW})
	}
	if _, err := m.Handler().Submit(ctx, connect.NewRequest(&pb.SubmitRequest{Session: "s1", Tasks: tasks, Files: decls})); err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(ws)) // the output each worker made
	for i, w := range ws {
		run := nextRun(t, w)
		names[i] = run.Spec.Outputs[0].Name
		done := &pb.AttemptDone{TaskId: run.TaskId, Attempt: run.Attempt, Outcome: &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS,
			Outputs: []*pb.FileInfo{{Name: names[i], Size: int64(len(names[i])), Kept: true}}}}
		if err := w.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Done{Done: done}}); err != nil {
			t.Fatal(err)
		}
	}
	srvs[0].waitFor(t, 1)
	srvs[1].waitFor(t, 1) // both pulls at once, each at its worker's file server

	ws[0].Close()
	srvs[0].waitFor(t, 0) // the lost worker's pull ended
	srvs[1].open()
	path := filepath.Join(dir, names[1])
	for deadline := time.Now().Add(time.Minute); ; {
		if data, err := os.ReadFile(path); err == nil {
			if string(data) != names[1] {
				t.Fatalf("checkpoint %s holds %q, want %q", names[1], data, names[1])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint %s not in %s within a minute", names[1], dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(dir, names[0])); err == nil {
		t.Errorf("checkpoint %s of the lost worker was written", names[0])
	}
}
