package trellis

import (
	"context"
	"errors"
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
	"github.com/google/go-cmp/cmp"

	"trellis/internal/clientconn"
	pb "trellis/internal/proto/trellisv1"
)

// fakeManager answers a client's calls in process and sends it the task
// events a test chooses; its file store is an HTTP server whose GETs the
// test can hold.
type fakeManager struct {
	clientconn.RPC // nil: calls the test does not expect panic

	mu     sync.Mutex // guards nextID, keys, seq
	nextID uint64
	keys   map[uint64]string // task keys by ID
	seq    uint64            // of the last event made

	events chan *pb.TaskEvents // what the session's event stream sends

	files   map[string]string        // served content, by name
	held    map[string]chan struct{} // GETs of these names wait for the channel to close
	entered chan string              // names whose GET has begun
	submit  func() error             // if set, Submit returns its error before accepting
}

func newFakeManager() *fakeManager {
	return &fakeManager{events: make(chan *pb.TaskEvents, 16), files: make(map[string]string), keys: make(map[uint64]string),
		held: make(map[string]chan struct{}), entered: make(chan string, 16)}
}

func (f *fakeManager) Status(context.Context, *connect.Request[pb.StatusRequest]) (*connect.Response[pb.StatusResponse], error) {
	return connect.NewResponse(&pb.StatusResponse{}), nil
}

func (f *fakeManager) EndSession(context.Context, *connect.Request[pb.EndSessionRequest]) (*connect.Response[pb.EndSessionResponse], error) {
	return connect.NewResponse(&pb.EndSessionResponse{}), nil
}

func (f *fakeManager) Submit(_ context.Context, req *connect.Request[pb.SubmitRequest]) (*connect.Response[pb.SubmitResponse], error) {
	if f.submit != nil {
		if err := f.submit(); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &pb.SubmitResponse{}
	for _, t := range req.Msg.Tasks {
		f.nextID++
		f.keys[f.nextID] = t.Key
		resp.TaskIds = append(resp.TaskIds, f.nextID)
	}
	return connect.NewResponse(resp), nil
}

func (f *fakeManager) Ack(context.Context, *connect.Request[pb.AckRequest]) (*connect.Response[pb.AckResponse], error) {
	return connect.NewResponse(&pb.AckResponse{}), nil
}

// event makes the session's next event, of task id.
func (f *fakeManager) event(id uint64, state pb.TaskState, outcome *pb.Outcome) *pb.TaskEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	return &pb.TaskEvent{TaskId: id, Key: f.keys[id], Seq: f.seq, State: state, Attempt: 1, Outcome: outcome}
}

func (f *fakeManager) running(id uint64) *pb.TaskEvent {
	return f.event(id, pb.TaskState_TASK_STATE_RUNNING, nil)
}

func (f *fakeManager) succeeded(id uint64) *pb.TaskEvent {
	return f.event(id, pb.TaskState_TASK_STATE_DONE, &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS})
}

func (f *fakeManager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/files/")
	content, ok := f.files[name]
	if r.Method != http.MethodGet || !ok {
		http.Error(w, "not here", http.StatusNotFound)
		return
	}
	f.entered <- name
	if hold := f.held[name]; hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	fmt.Fprint(w, content)
}

// fakeEvents is the session's event stream from a fakeManager.
type fakeEvents struct {
	ctx     context.Context
	ch      chan *pb.TaskEvents
	cur     *pb.TaskEvents
	started bool
}

// Receive returns an empty message first, as the Watch RPC does, then
// what the test sends.
func (e *fakeEvents) Receive() bool {
	if !e.started {
		e.started, e.cur = true, &pb.TaskEvents{Manager: "fake"}
		return true
	}
	select {
	case e.cur = <-e.ch:
		return true
	case <-e.ctx.Done():
		return false
	}
}
func (e *fakeEvents) Msg() *pb.TaskEvents { return e.cur }
func (e *fakeEvents) Err() error          { return e.ctx.Err() }
func (e *fakeEvents) Close() error        { return nil }

// dialFake starts f's file server and a client of f.
func dialFake(t *testing.T, f *fakeManager, opts ...Option) *Client {
	t.Helper()
	return dialFakeRPC(t, f, f, opts...)
}

// dialFakeRPC is dialFake with rpc answering the client's calls.
func dialFakeRPC(t *testing.T, f *fakeManager, rpc clientconn.RPC, opts ...Option) *Client {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	tr := clientconn.Transport{RPC: rpc, Watch: func(ctx context.Context, _ *pb.WatchRequest) (clientconn.Events, error) {
		return &fakeEvents{ctx: ctx, ch: f.events}, nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, srv.Listener.Addr().String(), append(opts, WithTransport(tr))...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestDownloadDoesNotHoldOtherHandles: while one task's output download is
// held, another task's result is delivered; the held one is delivered once
// its output is at the client; WithEvents sees each task's events in order.
func TestDownloadDoesNotHoldOtherHandles(t *testing.T) {
	f := newFakeManager()
	var mu sync.Mutex
	var seen []string
	c := dialFake(t, f, WithEvents(func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, fmt.Sprintf("%s %s", ev.Name, ev.State))
	}))
	dir := t.TempDir()
	slowOut, fastOut := Output(filepath.Join(dir, "slow.txt")), Output(filepath.Join(dir, "fast.txt"))
	f.files[slowOut.Name()], f.files[fastOut.Name()] = "slow content\n", "fast content\n"
	release := make(chan struct{})
	f.held[slowOut.Name()] = release
	slow := NewTask("produce slow").AddOutput(slowOut, "o")
	slow.Name = "slow"
	fast := NewTask("produce fast").AddOutput(fastOut, "o")
	fast.Name = "fast"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hs, err := c.Submit(ctx, slow, fast)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	f.events <- &pb.TaskEvents{Events: []*pb.TaskEvent{f.running(hs[0].ID), f.running(hs[1].ID), f.succeeded(hs[0].ID)}}
	select {
	case name := <-f.entered:
		if name != slowOut.Name() {
			t.Fatalf("first GET of %s; want %s", name, slowOut.Name())
		}
	case <-ctx.Done():
		t.Fatal("the slow output's download did not start")
	}
	f.events <- &pb.TaskEvents{Events: []*pb.TaskEvent{f.succeeded(hs[1].ID)}}
	r, err := hs[1].Wait(ctx)
	if err != nil || !r.OK() {
		t.Fatalf("fast task while the slow download is held: %v, %v; want success", r, err)
	}
	select {
	case <-hs[0].Done():
		t.Fatal("the slow task is done while its output is still downloading")
	default:
	}
	close(release)
	if r, err := hs[0].Wait(ctx); err != nil || !r.OK() {
		t.Fatalf("slow task: %v, %v; want success", r, err)
	}
	for path, want := range map[string]string{slowOut.Path(): "slow content\n", fastOut.Path(): "fast content\n"} {
		if got, err := os.ReadFile(path); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"slow running", "fast running", "fast done", "slow done"}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("WithEvents saw (-want +got):\n%s", diff)
	}
}

// TestOutputMode: an output written for the client has the mode os.Create
// gives, not a temporary file's 0600.
func TestOutputMode(t *testing.T) {
	dir := t.TempDir()
	probe, err := os.Create(filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	probe.Close()
	fi, err := os.Stat(probe.Name())
	if err != nil {
		t.Fatal(err)
	}
	want := fi.Mode().Perm()
	for _, size := range []int{10, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("out-%d", size))
			if err := writeLocal(path, strings.NewReader(strings.Repeat("x", size))); err != nil {
				t.Fatalf("writeLocal: %v", err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != want {
				t.Errorf("mode of %s = %v; want %v, as os.Create makes", path, got, want)
			}
		})
	}
}

// TestSubmitRetryHonoursContext: a submit that the manager refuses as
// unavailable is retried, but not past the caller's context.
func TestSubmitRetryHonoursContext(t *testing.T) {
	f := newFakeManager()
	tries := make(chan struct{}, 8)
	f.submit = func() error {
		tries <- struct{}{}
		return connect.NewError(connect.CodeUnavailable, errors.New("restarting"))
	}
	c := dialFake(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { // exits when Submit returns
		_, err := c.Submit(ctx, NewTask("true"))
		errc <- err
	}()
	<-tries // the first try failed: Submit now waits before the next
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Submit after cancel = %v; want an error wrapping context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Submit did not return after its context was cancelled")
	}
}
