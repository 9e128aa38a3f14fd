package worker

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"trellis/internal/certs"
	"trellis/internal/inproc"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/worker/resources"
)

// managerEnd is a fake manager's end of a worker's stream: the test sends
// messages on it and reads what the worker says, heartbeats and batches
// aside.
type managerEnd struct {
	*inproc.End[*pb.ManagerMessage, *pb.WorkerMessage]
	got        chan *pb.WorkerMessage // flattened, without heartbeats
	sizes      chan int               // how many messages each write carried, heartbeats left out
	heartbeats chan struct{}
	eof        chan error // how the worker's side ended
}

func newManagerEnd(end *inproc.End[*pb.ManagerMessage, *pb.WorkerMessage]) *managerEnd {
	m := &managerEnd{End: end, got: make(chan *pb.WorkerMessage, 1024), sizes: make(chan int, 1024), heartbeats: make(chan struct{}, 1), eof: make(chan error, 1)}
	go func() { // exits when the worker's side ends
		for {
			msg, err := end.Receive()
			if err != nil {
				end.Close() // as the manager does once the worker half-closed
				m.eof <- err
				return
			}
			if msg.GetHeartbeat() == nil {
				select {
				case m.sizes <- len(flatten(msg)):
				default:
				}
			}
			for _, one := range flatten(msg) {
				if one.GetHeartbeat() != nil {
					select {
					case m.heartbeats <- struct{}{}:
					default:
					}
					continue
				}
				m.got <- one
			}
		}
	}()
	return m
}

func flatten(msg *pb.WorkerMessage) []*pb.WorkerMessage {
	if b := msg.GetBatch(); b != nil {
		return b.Msgs
	}
	return []*pb.WorkerMessage{msg}
}

// next returns the worker's next message.
func (m *managerEnd) next(t testing.TB) *pb.WorkerMessage {
	t.Helper()
	select {
	case msg := <-m.got:
		return msg
	case err := <-m.eof:
		m.eof <- err
		select { // the reader queued everything before the end
		case msg := <-m.got:
			return msg
		default:
		}
		t.Fatalf("stream ended (%v); want a message", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no message from the worker in 20s")
	}
	return nil
}

// send sends msg to the worker.
func (m *managerEnd) send(t testing.TB, msg *pb.ManagerMessage) {
	t.Helper()
	if err := m.Send(msg); err != nil {
		t.Fatalf("send %v: %v", msg, err)
	}
}

// harness runs one worker against fake manager ends (one per connection)
// and a fake store that serves files.
type harness struct {
	w     *Worker
	ends  chan *managerEnd
	runc  chan error
	files map[string]string // the store: cache name -> content
}

func startWorker(t testing.TB, ctx context.Context, tune func(*Config)) *harness {
	t.Helper()
	h := &harness{ends: make(chan *managerEnd, 4), runc: make(chan error, 1), files: make(map[string]string)}
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		content, ok := h.files[strings.TrimPrefix(r.URL.Path, "/files/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(content))
	}))
	t.Cleanup(store.Close)
	cfg := Config{
		Manager:   strings.TrimPrefix(store.URL, "http://"),
		Name:      "w1",
		Resources: resources.Resources{MilliCores: 4000, MemoryMB: 1024, DiskMB: 1024},
		Workdir:   t.TempDir(), FileServer: "127.0.0.1:0",
		Connect: func(ctx context.Context) Stream {
			// The fake ends the stream when the worker half-closes it, or
			// the test does; not when ctx ends, so that the test sees what
			// a worker that shuts down says.
			wend, mend := inproc.Pipe[*pb.WorkerMessage, *pb.ManagerMessage]()
			t.Cleanup(mend.Close)
			h.ends <- newManagerEnd(mend)
			return wend
		},
	}
	if tune != nil {
		tune(&cfg)
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	go func() { h.runc <- w.Run(ctx) }() // exits when Run returns; the test waits for it in cleanup
	t.Cleanup(func() {
		select {
		case <-h.runc:
		case <-time.After(30 * time.Second):
			t.Error("the worker did not stop in 30s")
		}
	})
	return h
}

// connect takes the worker's next connection and welcomes it.
func (h *harness) connect(t testing.TB, heartbeatMs int64) (*managerEnd, *pb.Hello) {
	t.Helper()
	return h.welcome(t, &pb.Welcome{WorkerId: 1, HeartbeatMs: heartbeatMs})
}

// connectRun is connect by a manager of run runID in its epoch.
func (h *harness) connectRun(t *testing.T, runID string, epoch uint64) (*managerEnd, *pb.Hello) {
	t.Helper()
	return h.welcome(t, &pb.Welcome{WorkerId: 1, HeartbeatMs: 60_000, RunId: runID, Epoch: epoch})
}

// welcome takes the worker's next connection and answers its hello.
func (h *harness) welcome(t testing.TB, welcome *pb.Welcome) (*managerEnd, *pb.Hello) {
	t.Helper()
	var m *managerEnd
	select {
	case m = <-h.ends:
	case <-time.After(20 * time.Second):
		t.Fatal("the worker did not connect in 20s")
	}
	hello := m.next(t).GetHello()
	if hello == nil {
		t.Fatal("the worker's first message is not a hello")
	}
	m.send(t, &pb.ManagerMessage{Msg: &pb.ManagerMessage_Welcome{Welcome: welcome}})
	return m, hello
}

func run(task uint64, command string, inputs ...*pb.FileRef) *pb.ManagerMessage {
	return &pb.ManagerMessage{Msg: &pb.ManagerMessage_Run{Run: &pb.Run{TaskId: task, Attempt: 1,
		Spec: &pb.TaskSpec{Command: command, Inputs: inputs, Resources: &pb.Resources{Cores: 1}}}}}
}

// inPlace is a run with one input and one output, at the same path.
func inPlace(task uint64, command string, in, out *pb.FileRef) *pb.ManagerMessage {
	msg := run(task, command, in)
	msg.GetRun().Spec.Outputs = []*pb.FileRef{out}
	return msg
}

// doneWith is the report of a successful run with outputs.
func doneWith(task uint64, outputs ...*pb.FileInfo) *pb.WorkerMessage {
	msg := done(task, pb.ResultKind_RESULT_KIND_SUCCESS, "")
	msg.GetDone().Outcome.Outputs = outputs
	return msg
}

// outputInline is an output small enough to travel in the report.
func outputInline(name, content string) *pb.FileInfo {
	_, digest := contentName(content)
	return &pb.FileInfo{Name: name, Size: int64(len(content)), Digest: digest, Content: []byte(content), Uploaded: true}
}

func done(task uint64, kind pb.ResultKind, stdout string) *pb.WorkerMessage {
	o := &pb.Outcome{Kind: kind, Stdout: []byte(stdout)}
	if kind != pb.ResultKind_RESULT_KIND_SUCCESS {
		o.ExitCode = -1
	}
	return &pb.WorkerMessage{Msg: &pb.WorkerMessage_Done{Done: &pb.AttemptDone{TaskId: task, Attempt: 1, Outcome: o}}}
}

func returned(task uint64) *pb.WorkerMessage {
	return &pb.WorkerMessage{Msg: &pb.WorkerMessage_Returned{Returned: &pb.AttemptReturned{TaskId: task, Attempt: 1}}}
}

func kill(task uint64) *pb.ManagerMessage {
	return &pb.ManagerMessage{Msg: &pb.ManagerMessage_Kill{Kill: &pb.Kill{TaskId: task, Attempt: 1}}}
}

func revoke(task uint64) *pb.ManagerMessage {
	return &pb.ManagerMessage{Msg: &pb.ManagerMessage_Revoke{Revoke: &pb.Revoke{TaskId: task, Attempt: 1}}}
}

func fetch(id uint64, name string, size int64) *pb.ManagerMessage {
	return &pb.ManagerMessage{Msg: &pb.ManagerMessage_Fetch{Fetch: &pb.Fetch{Id: id, Name: name, Size: size,
		Source: &pb.Source{Kind: pb.Source_KIND_MANAGER, Url: "/files/" + name}}}}
}

func unlink(names ...string) *pb.ManagerMessage {
	return &pb.ManagerMessage{Msg: &pb.ManagerMessage_Unlink{Unlink: &pb.Unlink{Names: names}}}
}

func dropped(names ...string) *pb.WorkerMessage {
	return &pb.WorkerMessage{Msg: &pb.WorkerMessage_Dropped{Dropped: &pb.Dropped{Names: names}}}
}

var draining = &pb.WorkerMessage{Msg: &pb.WorkerMessage_Draining{Draining: &pb.Draining{}}}

// reportOpts compares reports without what depends on timing or wording.
var reportOpts = cmp.Options{
	protocmp.Transform(),
	protocmp.IgnoreFields(&pb.Outcome{}, "run_ms", "peak_memory_mb", "message"),
	protocmp.IgnoreFields(&pb.FetchDone{}, "ms", "error"),
}

func contentName(content string) (name, digest string) {
	sum := sha256.Sum256([]byte(content))
	return "sha256-" + hex.EncodeToString(sum[:]), "sha256:" + hex.EncodeToString(sum[:])
}

// step is one move of a session test: send a message, act on the worker,
// or expect a message back.
type step struct {
	send *pb.ManagerMessage
	do   func(*Worker)
	want *pb.WorkerMessage
}

func TestSession(t *testing.T) {
	hi, hiDigest := contentName("hi from the store\n")
	cases := []struct {
		name  string
		steps []step
	}{
		{"run reports done", []step{
			{send: run(1, "echo hello")},
			{want: done(1, pb.ResultKind_RESULT_KIND_SUCCESS, "hello\n")},
		}},
		{"failing command", []step{
			{send: run(1, "exit 3")},
			{want: &pb.WorkerMessage{Msg: &pb.WorkerMessage_Done{Done: &pb.AttemptDone{TaskId: 1, Attempt: 1,
				Outcome: &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_FAILED, ExitCode: 3}}}}},
		}},
		{"kill cancels", []step{
			{send: run(1, "sleep 30")},
			{send: kill(1)},
			{want: done(1, pb.ResultKind_RESULT_KIND_CANCELLED, "")},
		}},
		{"a second run of the same attempt is returned", []step{
			{send: run(1, "sleep 30")},
			{send: run(1, "sleep 30")},
			{want: returned(1)},
			{send: kill(1)},
			{want: done(1, pb.ResultKind_RESULT_KIND_CANCELLED, "")},
		}},
		{"fetch, run on it, unlink", []step{
			{send: fetch(7, hi, 18)},
			{want: &pb.WorkerMessage{Msg: &pb.WorkerMessage_Fetched{Fetched: &pb.FetchDone{Id: 7, Name: hi, Ok: true, Size: 18, Digest: hiDigest}}}},
			{send: run(2, "cat in.txt", &pb.FileRef{Name: hi, Path: "in.txt", Size: 18})},
			{want: done(2, pb.ResultKind_RESULT_KIND_SUCCESS, "hi from the store\n")},
			{send: unlink(hi, "sha256-unknown")},
			{want: dropped(hi)},
		}},
		{"a run that changes a cached input has it dropped before its end", []step{
			{send: fetch(7, hi, 18)},
			{want: &pb.WorkerMessage{Msg: &pb.WorkerMessage_Fetched{Fetched: &pb.FetchDone{Id: 7, Name: hi, Ok: true, Size: 18, Digest: hiDigest}}}},
			{send: run(2, "printf more >> in.txt 2>/dev/null || { chmod u+w in.txt && printf more >> in.txt; }", &pb.FileRef{Name: hi, Path: "in.txt", Size: 18})},
			{want: dropped(hi)},
			{want: done(2, pb.ResultKind_RESULT_KIND_SUCCESS, "")},
			{send: run(3, "cat in.txt", &pb.FileRef{Name: hi, Path: "in.txt", Size: 18})},
			{want: done(3, pb.ResultKind_RESULT_KIND_INPUT_MISSING, "")},
		}},
		{"an input that is also an output is the command's own copy", []step{
			{send: fetch(7, hi, 18)},
			{want: &pb.WorkerMessage{Msg: &pb.WorkerMessage_Fetched{Fetched: &pb.FetchDone{Id: 7, Name: hi, Ok: true, Size: 18, Digest: hiDigest}}}},
			{send: inPlace(2, "printf more >> data.txt", &pb.FileRef{Name: hi, Path: "data.txt", Size: 18}, &pb.FileRef{Name: "out-1", Path: "./data.txt"})},
			{want: doneWith(2, outputInline("out-1", "hi from the store\nmore"))},
			{send: run(3, "cat data.txt", &pb.FileRef{Name: hi, Path: "data.txt", Size: 18})},
			{want: done(3, pb.ResultKind_RESULT_KIND_SUCCESS, "hi from the store\n")},
		}},
		{"fetch of a file the store lacks fails at the source", []step{
			{send: fetch(8, "sha256-absent", -1)},
			{want: &pb.WorkerMessage{Msg: &pb.WorkerMessage_Fetched{Fetched: &pb.FetchDone{Id: 8, Name: "sha256-absent", SourceFault: true}}}},
		}},
		{"an input not staged in the cache is missing", []step{
			{send: run(3, "cat in.txt", &pb.FileRef{Name: hi, Path: "in.txt", Size: 18})},
			{want: done(3, pb.ResultKind_RESULT_KIND_INPUT_MISSING, "")},
		}},
		{"inline input", []step{
			{send: run(4, "cat in.txt", &pb.FileRef{Name: "sha256-x", Path: "in.txt", Content: []byte("inline\n")})},
			{want: done(4, pb.ResultKind_RESULT_KIND_SUCCESS, "inline\n")},
		}},
		{"drain lets attempts finish, then returns new ones", []step{
			{send: run(1, "sleep 0.3; echo slept")},
			{send: run(1, "true")},
			{want: returned(1)}, // the first runs
			{do: (*Worker).Drain},
			{want: draining},
			{send: run(2, "true")},
			{want: returned(2)},
			{want: done(1, pb.ResultKind_RESULT_KIND_SUCCESS, "slept\n")},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			playSteps(t, tc.steps, map[string]string{hi: "hi from the store\n"})
		})
	}
}

// playSteps plays steps against a new worker whose store holds files.
func playSteps(t *testing.T, steps []step, files map[string]string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, nil)
	for name, content := range files {
		h.files[name] = content
	}
	m, _ := h.connect(t, 60_000)
	for i, s := range steps {
		switch {
		case s.send != nil:
			m.send(t, s.send)
		case s.do != nil:
			s.do(h.w)
		default:
			got := m.next(t)
			if diff := cmp.Diff(s.want, got, reportOpts); diff != "" {
				t.Fatalf("step %d: message mismatch (-want +got):\n%s", i, diff)
			}
		}
	}
}

// cores is run with the cores its task asks for, sent ahead if ahead.
func cores(msg *pb.ManagerMessage, n float64, ahead bool) *pb.ManagerMessage {
	msg.GetRun().Spec.Resources.Cores = n
	msg.GetRun().Ahead = ahead
	return msg
}

// Runs sent ahead (ahead.go) on a worker of 4 cores.
func TestSessionAhead(t *testing.T) {
	ok := func(task uint64, stdout string) *pb.WorkerMessage {
		return done(task, pb.ResultKind_RESULT_KIND_SUCCESS, stdout)
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"a run sent ahead that fits starts at once", []step{
			{send: cores(run(1, "sleep 30"), 2, false)},
			{send: cores(run(2, "echo two"), 2, true)},
			{want: ok(2, "two\n")},
			{send: kill(1)},
			{want: done(1, pb.ResultKind_RESULT_KIND_CANCELLED, "")},
		}},
		{"held runs start in order as resources free, none skipped", []step{
			// 3 would fit beside 1, but waits behind 2, which does not:
			// the manager's core starts them in the same order.
			{send: cores(run(1, "sleep 0.3; echo one"), 2, false)},
			{send: cores(run(2, "echo two"), 4, true)},
			{send: cores(run(3, "echo three"), 1, true)},
			{want: ok(1, "one\n")},
			{want: ok(2, "two\n")},
			{want: ok(3, "three\n")},
		}},
		{"a held run killed ends cancelled without running", []step{
			{send: cores(run(1, "sleep 30"), 4, false)},
			{send: cores(run(2, "echo two > /dev/stderr"), 4, true)},
			{send: kill(2)},
			{want: done(2, pb.ResultKind_RESULT_KIND_CANCELLED, "")},
			{send: kill(1)},
			{want: done(1, pb.ResultKind_RESULT_KIND_CANCELLED, "")},
		}},
		{"a held run killed lets the next held start", []step{
			{send: cores(run(1, "sleep 30"), 2, false)},
			{send: cores(run(2, "echo two"), 4, true)},
			{send: cores(run(3, "echo three"), 1, true)},
			{send: kill(2)},
			{want: done(2, pb.ResultKind_RESULT_KIND_CANCELLED, "")},
			{want: ok(3, "three\n")}, // beside 1, which runs on
			{send: kill(1)},
			{want: done(1, pb.ResultKind_RESULT_KIND_CANCELLED, "")},
		}},
		{"a revoked held run goes back, and the next held starts", []step{
			// 3 waits behind 2, which does not fit beside 1; with 2
			// gone, it fits, as the manager's core counts.
			{send: cores(run(1, "sleep 30"), 2, false)},
			{send: cores(run(2, "echo two"), 4, true)},
			{send: cores(run(3, "echo three"), 1, true)},
			{send: revoke(2)},
			{want: returned(2)},
			{want: ok(3, "three\n")},
			{send: kill(1)},
			{want: done(1, pb.ResultKind_RESULT_KIND_CANCELLED, "")},
		}},
		{"a revoke of a run that started does nothing", []step{
			{send: cores(run(1, "sleep 30"), 2, false)},
			{send: cores(run(2, "sleep 0.2; echo two"), 2, true)}, // fits: starts at once
			{send: revoke(2)},
			{send: revoke(7)}, // nor of one never sent
			{want: ok(2, "two\n")},
			{send: kill(1)},
			{want: done(1, pb.ResultKind_RESULT_KIND_CANCELLED, "")},
		}},
		{"a drain hands held runs back", []step{
			{send: cores(run(1, "sleep 0.3; echo slept"), 4, false)},
			{send: cores(run(2, "true"), 1, true)},
			{send: cores(run(1, "true"), 4, false)},
			{want: returned(1)}, // the first runs, and 2 is held
			{do: (*Worker).Drain},
			{want: draining},
			{want: returned(2)},
			{want: ok(1, "slept\n")},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { playSteps(t, tc.steps, nil) })
	}
}

func TestSessionHello(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, nil)
	_, hello := h.connect(t, 60_000)
	want := &pb.Hello{Name: "w1", Resources: &pb.Resources{Cores: 4, MemoryMb: 1024, DiskMb: 1024}, HoldsAhead: true}
	if diff := cmp.Diff(want, hello, protocmp.Transform(), protocmp.IgnoreFields(&pb.Hello{}, "protocol", "file_server", "version", "incarnation")); diff != "" {
		t.Errorf("hello mismatch (-want +got):\n%s", diff)
	}
	if len(hello.Incarnation) != 24 {
		t.Errorf("hello incarnation %q; want 24 hex digits", hello.Incarnation)
	}
}

// A hello the manager never answers is given up after WelcomeTimeout,
// and the worker connects again and says hello again.
func TestSessionUnansweredHello(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, func(c *Config) { c.WelcomeTimeout = 100 * time.Millisecond })
	var silent *managerEnd
	select {
	case silent = <-h.ends:
	case <-time.After(20 * time.Second):
		t.Fatal("the worker did not connect in 20s")
	}
	if silent.next(t).GetHello() == nil {
		t.Fatal("the worker's first message is not a hello")
	}
	select {
	case err := <-silent.eof:
		if err != io.EOF {
			t.Errorf("the unanswered stream ended with %v, want the worker's half-close (EOF)", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the worker still waits for a welcome after 20s; want it to give up after 100ms")
	}
	if _, hello := h.connect(t, 60_000); hello.Name != "w1" {
		t.Errorf("second hello from %q, want w1", hello.Name)
	}
}

// A simulated worker says so in its hello and completes a task at once
// with the output size it was given, without running the command.
func TestSessionSimulated(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, func(c *Config) { c.Simulate = &Simulation{OutputBytes: 5} })
	m, hello := h.connect(t, 60_000)
	if !hello.Simulated {
		t.Errorf("hello.simulated = false, want true")
	}
	m.send(t, run(1, "exit 3"))
	want := done(1, pb.ResultKind_RESULT_KIND_SUCCESS, "xxxxx")
	if diff := cmp.Diff(want, m.next(t), protocmp.Transform(), protocmp.IgnoreFields(&pb.Outcome{}, "run_ms")); diff != "" {
		t.Errorf("report of a simulated attempt mismatch (-want +got):\n%s", diff)
	}
}

// TestSessionSimulatedBatch: a simulated worker given a batch of runs
// reports them all in one write (they end in its loop, at once).
func TestSessionSimulatedBatch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, func(c *Config) { c.Simulate = &Simulation{} })
	m, _ := h.connect(t, 60_000)
	var runs []*pb.ManagerMessage
	for i := range 8 {
		runs = append(runs, run(uint64(i+1), "true"))
	}
	m.send(t, &pb.ManagerMessage{Msg: &pb.ManagerMessage_Batch{Batch: &pb.ManagerBatch{Msgs: runs}}})
	for i := range 8 {
		if d := m.next(t).GetDone(); d == nil || d.TaskId != uint64(i+1) {
			t.Fatalf("report %d: %v, want the Done of task %d", i+1, d, i+1)
		}
	}
	var sizes []int
	for len(m.sizes) > 0 {
		sizes = append(sizes, <-m.sizes)
	}
	if diff := cmp.Diff([]int{1, 8}, sizes); diff != "" {
		t.Errorf("messages per write (the hello, then the reports) mismatch (-want +got):\n%s", diff)
	}
}

func TestSessionHeartbeat(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, nil)
	m, _ := h.connect(t, 100)
	for range 2 {
		select {
		case <-m.heartbeats:
		case <-time.After(20 * time.Second):
			t.Fatal("no heartbeat in 20s; want one every 100ms")
		}
	}
}

// A drained worker reports what it ran, half-closes the stream, and Run
// returns nil.
func TestSessionDrainEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, nil)
	m, _ := h.connect(t, 60_000)
	m.send(t, run(1, "echo one"))
	if diff := cmp.Diff(done(1, pb.ResultKind_RESULT_KIND_SUCCESS, "one\n"), m.next(t), reportOpts); diff != "" {
		t.Fatalf("report mismatch (-want +got):\n%s", diff)
	}
	h.w.Drain()
	if diff := cmp.Diff(draining, m.next(t), reportOpts); diff != "" {
		t.Fatalf("drain mismatch (-want +got):\n%s", diff)
	}
	select {
	case err := <-m.eof:
		if err != io.EOF {
			t.Fatalf("stream ended with %v; want a half-close (EOF)", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the drained worker did not half-close its stream")
	}
	m.Close() // the manager ends the stream once it has read everything
	select {
	case err := <-h.runc:
		h.runc <- err // for the cleanup
		if err != nil {
			t.Fatalf("Run = %v; want nil after a drain", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after the drain")
	}
}

// Past DrainTimeout, what still runs is killed and handed back.
func TestSessionDrainTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, func(c *Config) { c.DrainTimeout = 100 * time.Millisecond })
	m, _ := h.connect(t, 60_000)
	m.send(t, run(1, "sleep 30"))
	m.send(t, run(1, "true"))
	if diff := cmp.Diff(returned(1), m.next(t), reportOpts); diff != "" { // the first runs
		t.Fatalf("duplicate run mismatch (-want +got):\n%s", diff)
	}
	h.w.Drain()
	for i, want := range []*pb.WorkerMessage{draining, returned(1)} {
		if diff := cmp.Diff(want, m.next(t), reportOpts); diff != "" {
			t.Fatalf("message %d mismatch (-want +got):\n%s", i, diff)
		}
	}
}

// Cancelling Run's context kills what runs, ends the stream, and Run
// returns nil. (The connection ends with the context, so the manager learns
// of the attempts from the stream's end, not from reports.)
func TestSessionShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, nil)
	m, _ := h.connect(t, 60_000)
	m.send(t, run(1, "sleep 30"))
	m.send(t, run(1, "true"))
	if diff := cmp.Diff(returned(1), m.next(t), reportOpts); diff != "" { // the first runs
		t.Fatalf("duplicate run mismatch (-want +got):\n%s", diff)
	}
	cancel()
	select {
	case err := <-h.runc:
		h.runc <- err // for the cleanup
		if err != nil {
			t.Fatalf("Run = %v; want nil after its context ended", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// A worker that loses its manager kills what it ran and connects again as
// a new worker.
func TestSessionReconnects(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, nil)
	m, _ := h.connect(t, 60_000)
	m.send(t, run(1, "sleep 30"))
	m.Close()
	m2, hello := h.connect(t, 60_000)
	if hello.Name != "w1" {
		t.Errorf("hello after reconnecting names %q, want w1", hello.Name)
	}
	m2.send(t, run(2, "echo again"))
	if diff := cmp.Diff(done(2, pb.ResultKind_RESULT_KIND_SUCCESS, "again\n"), m2.next(t), reportOpts); diff != "" {
		t.Fatalf("report mismatch (-want +got):\n%s", diff)
	}
}

// TestSessionHoldsFetchedFiles: a fetched file stays until the manager
// releases it, even when a fetch needs its room; once released, it is
// evicted for the next fetch and reported before that fetch's end; a
// claim (KIND_CACHE) of it then fails at the source, a claim of a file
// still there succeeds at once.
func TestSessionHoldsFetchedFiles(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, func(c *Config) { c.Resources.DiskMB = 1 })
	big := func(c byte) string { return strings.Repeat(string(c), 600_000) }
	a, aDigest := contentName(big('a'))
	b, bDigest := contentName(big('b'))
	h.files[a], h.files[b] = big('a'), big('b')
	m, _ := h.connect(t, 60_000)
	fetched := func(id uint64, name, digest string) *pb.WorkerMessage {
		return &pb.WorkerMessage{Msg: &pb.WorkerMessage_Fetched{Fetched: &pb.FetchDone{Id: id, Name: name, Ok: true, Size: 600_000, Digest: digest}}}
	}
	failed := func(id uint64, name string, source, full bool) *pb.WorkerMessage {
		return &pb.WorkerMessage{Msg: &pb.WorkerMessage_Fetched{Fetched: &pb.FetchDone{Id: id, Name: name, SourceFault: source, CacheFull: full}}}
	}
	claim := func(id uint64, name string) *pb.ManagerMessage {
		return &pb.ManagerMessage{Msg: &pb.ManagerMessage_Fetch{Fetch: &pb.Fetch{Id: id, Name: name, Size: 600_000,
			Source: &pb.Source{Kind: pb.Source_KIND_CACHE}}}}
	}
	release := &pb.ManagerMessage{Msg: &pb.ManagerMessage_Release{Release: &pb.Release{Names: []string{a}}}}
	for i, s := range []step{
		{send: fetch(1, a, 600_000)},
		{want: fetched(1, a, aDigest)},
		{send: fetch(2, b, 600_000)},
		{want: failed(2, b, false, true)}, // a is held
		{send: release},
		{send: fetch(3, b, 600_000)},
		{want: dropped(a)}, // before the fetch's end
		{want: fetched(3, b, bDigest)},
		{send: claim(4, a)},
		{want: failed(4, a, true, false)},
		{send: claim(5, b)},
		{want: fetched(5, b, bDigest)},
	} {
		if s.send != nil {
			m.send(t, s.send)
			continue
		}
		if diff := cmp.Diff(s.want, m.next(t), reportOpts); diff != "" {
			t.Fatalf("step %d: message mismatch (-want +got):\n%s", i, diff)
		}
	}
}

// A worker serves the file server certificate of its Welcome, and from a
// PeerCertificate on, the renewed one, which peers verify with the same CA.
func TestPeerCertificateRenewed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, func(c *Config) { c.TLS = &tls.Config{} })
	ca, err := certs.CA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	firstCert, firstKey, err := ca.IssuePEM("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	m, hello := h.welcome(t, &pb.Welcome{WorkerId: 1, HeartbeatMs: 60_000, TlsCertPem: firstCert, TlsKeyPem: firstKey, TlsCaPem: ca.PEM()})
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	// serves waits until the file server's handshake, verified with the
	// CA, presents the certificate of certPEM.
	serves := func(what string, certPEM []byte) {
		t.Helper()
		block, _ := pem.Decode(certPEM)
		want, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		var last string
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			conn, err := tls.Dial("tcp", hello.FileServer, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
			if err != nil {
				last = err.Error()
				continue
			}
			got := conn.ConnectionState().PeerCertificates[0].SerialNumber
			conn.Close()
			if got.Cmp(want.SerialNumber) == 0 {
				return
			}
			last = "serial " + got.String()
		}
		t.Fatalf("the file server does not serve %s (serial %v) after 10 s: %s", what, want.SerialNumber, last)
	}
	serves("the welcome's certificate", firstCert)
	newCert, newKey, err := ca.IssuePEM("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	m.send(t, &pb.ManagerMessage{Msg: &pb.ManagerMessage_PeerCertificate{PeerCertificate: &pb.PeerCertificate{CertPem: newCert, KeyPem: newKey}}})
	serves("the renewed certificate", newCert)
}
