package trellis

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/certs"
	"trellis/internal/clientconn"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/proto/trellisv1/trellisv1connect"
)

// Client talks to one manager. It is safe for concurrent use.
type Client struct {
	addr     string
	base     string
	secret   string
	session  string
	rpc      managerRPC
	watchRPC func(ctx context.Context, req *pb.WatchRequest) (eventStream, error)
	// framedWatch opens the event streams over the network (watch_framed.go);
	// nil in process (WithTransport).
	framedWatch *framedWatch
	submits     *submitStream // nil in process (WithTransport)
	rpcHTTP     *http.Client
	files       *http.Client
	log         *slog.Logger
	onEvent     func(Event)
	via         clientconn.Transport
	tls         *tls.Config // nil: plain h2c

	managerTimeout time.Duration // see WithManagerTimeout
	workflow       string        // see WithWorkflow
	resumable      bool          // see WithSession
	direct         *directCalls  // see WithDirectCalls; nil: off

	mu       sync.Mutex         // guards handles, uploaded, closed, keys, userKeys
	handles  map[string]*Handle // by task key, until the task is done
	uploaded map[string]bool
	closed   bool
	keys     uint64          // keys given to tasks that came without one
	userKeys map[string]bool // keys users gave, never to be given again

	// applied is the seq of the last event applied (the watch goroutine's
	// alone); toAck, the same for the acker to send, and ack its nudge.
	applied uint64
	toAck   atomic.Uint64
	ack     chan struct{}
	// epoch is the manager's epoch that applied counts in (see
	// pb.TaskEvents.Epoch), set by the watch goroutine before toAck.
	epoch atomic.Uint64
	// run is the manager's run ID that applied counts in, set like epoch.
	run atomic.Pointer[string]

	fetchMu  sync.Mutex // guards fetches
	fetches  []fetch    // completed tasks whose outputs are still to download
	fetchSig chan struct{}
	eventMu  sync.Mutex // guards events
	events   []emitted  // for the WithEvents callback, in order
	eventSig chan struct{}
	gone     chan struct{} // closed by Close

	stop     context.CancelFunc
	wg       sync.WaitGroup // the watch goroutine and the fetchers
	emitStop chan struct{}  // closed once wg is done: the emitter drains and exits
	emitWG   sync.WaitGroup // the emitter
	shutdown []func()       // the transport's Stop (an embedded cluster)
}

// Option configures Dial (and local.Start, which dials its embedded
// manager).
type Option func(*Client)

// WithSecret sets the shared secret the manager expects.
func WithSecret(secret string) Option { return func(c *Client) { c.secret = secret } }

// WithLogger sets where the client (and an embedded cluster) logs.
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.log = l } }

// WithTransport makes Dial reach the manager through t rather than over
// HTTP/2 alone, and Close run t.Stop. Package trellis/local uses it to join
// a client to its embedded manager in process; programs have no need of it.
func WithTransport(t clientconn.Transport) Option { return func(c *Client) { c.via = t } }

// WithTLS makes Dial reach the manager over TLS with cfg, which must let
// the manager's certificate verify: ClusterTLS makes one from the CA file
// or fingerprint the manager printed. Dial refuses a manager that does not
// verify (ErrUntrusted).
func WithTLS(cfg *tls.Config) Option { return func(c *Client) { c.tls = cfg } }

// ErrUntrusted is returned by Dial when the manager's TLS certificate does
// not verify: expired, signed by another CA, or for another host.
var ErrUntrusted = certs.ErrUntrusted

// Logger returns where the client logs (WithLogger); nil for a Client that
// Dial did not make.
func (c *Client) Logger() *slog.Logger { return c.log }

// WithEvents calls fn for every task state change, one call at a time,
// each task's in order. A task's last event (Done, with its Result) comes
// once its outputs are at the client, so it may come after later events of
// other tasks. fn must not block for long.
func WithEvents(fn func(Event)) Option { return func(c *Client) { c.onEvent = fn } }

// WithWorkflow labels every task the client submits without a
// Task.Workflow of its own with the workflow name w (trellis run uses the
// workflow file's name): trellis cancel --workflow w cancels them.
func WithWorkflow(w string) Option { return func(c *Client) { c.workflow = w } }

// WithSession makes the client use the session named name (see
// Client.Session) instead of a new one of its own, and makes that session
// resumable: the manager keeps the results of its finished tasks until the
// session ends, so that a new client process dialled with the same name
// (after this one was killed, and within the manager's --client-grace)
// takes the session over. It submits the same tasks again with the same
// keys (give every task a Key, or submit the same tasks in the same
// order): Submit returns the same tasks (Handle.Resumed), those that had
// finished end at once with the results they had (Handle.AlreadyFinished;
// their outputs are downloaded again), and the others go on where they
// are, not started again. Outputs with a client path are named after the
// session and that path, so that the new client's tasks name them as the
// first client's did. Dial fails with ErrSessionEnded when the session
// has ended (its client closed it, or was away too long): a new name
// starts afresh. Two clients must not use one session at once. trellis
// run --manager uses this to resume a killed run.
func WithSession(name string) Option {
	return func(c *Client) { c.session, c.resumable = name, name != "" }
}

// WithManagerTimeout sets how long the client waits for an unreachable
// manager before the tasks it waits for end their Wait with ErrManagerLost
// (default 60 s). It keeps trying to reach the manager after that.
func WithManagerTimeout(d time.Duration) Option { return func(c *Client) { c.managerTimeout = d } }

// managerRPC is what a client asks of a manager, besides the event stream:
// over HTTP/2 (connect), or in process for an embedded cluster.
type managerRPC = clientconn.RPC

// eventStream is a session's stream of task events.
type eventStream = clientconn.Events

// Dial connects to the manager at addr (host:port) and checks the secret.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	c := newClient(addr, opts)
	if c.via.RPC != nil {
		c.rpc, c.watchRPC = c.via.RPC, c.via.Watch
		if err := c.begin(ctx); err != nil {
			return nil, err
		}
		c.stopWith(c.via.Stop)
		return c, nil
	}
	protocols := new(http.Protocols)
	if c.tls != nil {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	c.rpcHTTP = &http.Client{Transport: proto.WholeEnvelopes(&http.Transport{Protocols: protocols, DialContext: dialer.DialContext, TLSClientConfig: c.tls.Clone(),
		HTTP2: &http.HTTP2Config{SendPingTimeout: 15 * time.Second, PingTimeout: 10 * time.Second}})}
	rpc := trellisv1connect.NewManagerClient(c.rpcHTTP, c.base, connect.WithReadMaxBytes(proto.MaxMessageBytes), connect.WithSendMaxBytes(proto.MaxMessageBytes), connect.WithCompressMinBytes(proto.CompressMinBytes),
		connect.WithInterceptors(bearer{&c.secret}))
	c.rpc = rpc
	c.framedWatch = &framedWatch{c: c, http2: func(ctx context.Context, req *pb.WatchRequest) (eventStream, error) {
		return rpc.Watch(ctx, connect.NewRequest(req))
	}}
	c.watchRPC = c.framedWatch.open
	c.submits = newSubmitStream(rpc.Submits)
	if err := c.begin(ctx); err != nil {
		c.rpcHTTP.CloseIdleConnections()
		return nil, err
	}
	c.stopWith(c.via.Stop)
	return c, nil
}

// stopWith has Close run stop, if it is set, once the client has stopped.
func (c *Client) stopWith(stop func()) {
	if stop != nil {
		c.shutdown = append(c.shutdown, stop)
	}
}

var dialer = &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}

// newClient makes a client of the manager at addr, not yet connected.
func newClient(addr string, opts []Option) *Client {
	c := &Client{addr: addr, base: "http://" + addr, handles: make(map[string]*Handle),
		uploaded: make(map[string]bool), userKeys: make(map[string]bool), rpcHTTP: &http.Client{},
		ack: make(chan struct{}, 1), fetchSig: make(chan struct{}, 1), eventSig: make(chan struct{}, 1),
		gone: make(chan struct{}), emitStop: make(chan struct{}), managerTimeout: 60 * time.Second}
	for _, o := range opts {
		o(c)
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.session == "" {
		var b [12]byte
		rand.Read(b[:])
		c.session = "s-" + hex.EncodeToString(b[:])
	}
	if c.tls != nil {
		c.base = "https://" + addr
	}
	// Each transport has its own copy: one with HTTP/2 adds "h2" to its
	// copy's NextProtos, which the HTTP/1.1 transport for files must not offer.
	c.files = &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 16, TLSClientConfig: c.tls.Clone()}}
	return c
}

// begin checks that the manager answers and starts following the session's
// events.
func (c *Client) begin(ctx context.Context) error {
	if _, err := c.Status(ctx); err != nil {
		return err
	}
	wctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	ready := make(chan error, 1)
	c.wg.Add(2)
	go func() { // exits when Close cancels wctx
		defer c.wg.Done()
		c.watch(wctx, ready)
	}()
	go func() { // exits when Close cancels wctx
		defer c.wg.Done()
		c.acker(wctx)
	}()
	c.emitWG.Add(1)
	go func() { // exits when halt closes emitStop and no event is queued
		defer c.emitWG.Done()
		c.emitLoop()
	}()
	for range maxFetches {
		c.wg.Add(1)
		go func() { // exits when Close cancels wctx and no fetch is queued
			defer c.wg.Done()
			c.fetchLoop(wctx)
		}()
	}
	var err error
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = fmt.Errorf("watch: %w", ctx.Err())
	}
	if err != nil {
		c.halt()
		return err
	}
	return nil
}

// ackPause spaces the client's acknowledgements of events.
const ackPause = 200 * time.Millisecond

// acker tells the manager which events the client has applied, so that it
// keeps only the others for a resumed Watch: at most once per ackPause. It
// exits when ctx ends.
func (c *Client) acker(ctx context.Context) {
	for {
		select {
		case <-c.ack:
		case <-ctx.Done():
			return
		}
		epoch, run := c.epoch.Load(), c.runID() // first: a new run's toAck is set before them
		seq := c.toAck.Load()
		if _, err := c.rpc.Ack(ctx, connect.NewRequest(&pb.AckRequest{Session: c.session, Seq: seq, Epoch: epoch, Manager: run})); err != nil && ctx.Err() == nil {
			c.log.Debug("acknowledge events", "seq", seq, "err", err)
		}
		select {
		case <-time.After(ackPause):
		case <-ctx.Done():
			return
		}
	}
}

// sleepCtx waits for d, or until ctx ends and returns its error.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close ends the client's session, so that the manager cancels its tasks
// that have not finished, and stops the client and the embedded cluster
// if it started one. It returns an error if the manager could not be told
// (it then cancels them once the client has been away for its grace).
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.gone)
	c.mu.Unlock()
	if c.direct != nil {
		c.direct.markClosed() // no Submit goes direct from here on, while the session ends
	}
	// Unfinished tasks are cancelled, and workflow-level files may go.
	ectx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := c.rpc.EndSession(ectx, connect.NewRequest(&pb.EndSessionRequest{Session: c.session}))
	cancel()
	c.halt()
	c.rpcHTTP.CloseIdleConnections()
	c.files.CloseIdleConnections()
	if c.direct != nil {
		c.direct.close()
	}
	for i := len(c.shutdown) - 1; i >= 0; i-- {
		c.shutdown[i]()
	}
	return wireError("end session "+c.session+" at manager "+c.addr, err)
}

// Addr is the manager's address.
func (c *Client) Addr() string { return c.addr }

// Handle follows one submitted task.
type Handle struct {
	ID   uint64
	Name string
	// Resumed: the session had this task already, by its key (a retried
	// submit, or a client that took the session over: WithSession); ID
	// is that task's, and it was not submitted again.
	Resumed bool
	// AlreadyFinished: a resumed task that had finished before this
	// submit. In a session of WithSession its result comes again.
	AlreadyFinished bool

	err  error // set before done is closed when the wait failed (ErrManagerLost)
	key  string
	task *Task
	c    *Client
	done chan struct{}
	res  *Result
}

// Wait returns the task's result once it has ended and its outputs are at
// the client. The error is for the wait itself (ctx ended, client closed,
// ErrManagerLost); how the task ended is in the Result.
func (h *Handle) Wait(ctx context.Context) (*Result, error) {
	select {
	case <-h.done:
		return h.res, h.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-h.c.gone:
		select {
		case <-h.done: // it ended as the client closed
			return h.res, h.err
		default:
			return nil, ErrClosed
		}
	}
}

// Done is closed when the result is available.
func (h *Handle) Done() <-chan struct{} { return h.done }

// Cancel asks the manager to stop the task; its result says Cancelled
// unless it ended first. A call sent straight to a worker (WithDirectCalls:
// ID 0) cannot be cancelled: it runs to its end.
func (h *Handle) Cancel(ctx context.Context) error {
	if h.ID == 0 {
		return fmt.Errorf("%w: call %q went straight to a worker (WithDirectCalls) and cannot be cancelled; submit it with a Key of its own to have it go through the manager", ErrInvalid, h.Name)
	}
	return h.c.Cancel(ctx, h.ID)
}

// Submit sends tasks to the manager, uploading their input files first, and
// returns a handle per task in order. Tasks in one call may depend on each
// other in any order. A large burst of independent tasks goes in several
// messages; if one fails, Submit returns the handles of those accepted
// before it (which run) with the error.
//
// With WithDirectCalls, a Submit of plain calls of one library goes
// straight to a worker on the client's lease (docs/direct-calls.md); their
// handles have no ID (0; the Result of a call that went through the
// manager after all has its task's).
func (c *Client) Submit(ctx context.Context, tasks ...*Task) ([]*Handle, error) {
	if c.direct != nil { // none go direct once the client closed (directCalls.close): submitViaManager says ErrClosed
		if hs, ok := c.submitDirect(ctx, tasks); ok {
			return hs, nil
		}
	}
	return c.submitViaManager(ctx, tasks)
}

// submitViaManager is Submit through the manager (ErrClosed once the
// client closed).
func (c *Client) submitViaManager(ctx context.Context, tasks []*Task) ([]*Handle, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if len(tasks) <= submitChunk || slices.ContainsFunc(tasks, func(t *Task) bool { return len(t.After) > 0 }) {
		return c.submit(ctx, tasks)
	}
	// A burst of independent tasks goes in chunks: the cluster starts on
	// the first while the next is encoded and sent. Chunks then grow, to
	// maxSubmitChunk: the manager places a larger chunk in one step, so
	// that each worker gets its share of it in one message, not one task
	// per message and per chunk.
	handles := make([]*Handle, 0, len(tasks))
	for n := submitChunk; len(tasks) > 0; n = min(2*n, maxSubmitChunk) {
		chunk := tasks[:min(n, len(tasks))]
		tasks = tasks[len(chunk):]
		hs, err := c.submit(ctx, chunk)
		if err != nil {
			return handles, err // the handles of the chunks already accepted, which run
		}
		handles = append(handles, hs...)
	}
	return handles, nil
}

// submitChunk is how many independent tasks go in the first Submit message
// of a burst; the next ones double, to maxSubmitChunk.
const (
	submitChunk    = 1000
	maxSubmitChunk = 8000
)

// submit sends tasks in one Submit message. Their handles are in place
// before it goes, so that their events find them whenever they come.
func (c *Client) submit(ctx context.Context, tasks []*Task) ([]*Handle, error) {
	req := &pb.SubmitRequest{Session: c.session, Tasks: make([]*pb.TaskSpec, len(tasks)), Resumable: c.resumable}
	index := make(map[*Task]uint32, len(tasks))
	for i, t := range tasks {
		index[t] = uint32(i)
	}
	inlineBudget := proto.MaxInlinePerMessage
	decls := make(map[string]*pb.FileDecl)
	for i, t := range tasks {
		spec, err := c.encode(ctx, t, &inlineBudget, decls)
		if err != nil {
			return nil, err
		}
		for _, a := range t.After {
			j, ok := index[a]
			if !ok {
				return nil, fmt.Errorf("%w: task %q runs after a task that is not in the same Submit call", ErrInvalid, spec.Name)
			}
			spec.After = append(spec.After, j)
		}
		req.Tasks[i] = spec
	}
	for _, d := range decls {
		req.Files = append(req.Files, d)
	}
	sort.Slice(req.Files, func(i, j int) bool { return req.Files[i].Name < req.Files[j].Name })
	handles, err := c.track(req.Tasks, tasks)
	if err != nil {
		return nil, err
	}
	resp, sent, err := c.submits.submit(ctx, req)
	if !sent {
		resp, err = c.submitUnary(ctx, req)
	}
	if err == nil && len(resp.TaskIds) != len(handles) {
		err = fmt.Errorf("the manager returned %d task IDs for %d tasks", len(resp.TaskIds), len(handles))
	}
	if err != nil {
		c.untrack(handles)
		return nil, wireError("submit", err)
	}
	finished := make(map[uint64]bool, len(resp.Finished))
	for _, id := range resp.Finished {
		finished[id] = true
	}
	for i, id := range resp.TaskIds {
		h := handles[i]
		h.ID, h.Resumed, h.AlreadyFinished = id, resp.Resubmitted, finished[id]
	}
	return handles, nil
}

// submitUnary sends req as one Submit request, retried while the manager
// is unavailable.
func (c *Client) submitUnary(ctx context.Context, req *pb.SubmitRequest) (*pb.SubmitResponse, error) {
	for try := 0; ; try++ { // task keys make a retried submit harmless
		resp, err := c.rpc.Submit(ctx, connect.NewRequest(req))
		if err == nil {
			return resp.Msg, nil
		}
		if try == 2 || connect.CodeOf(err) != connect.CodeUnavailable {
			return nil, err
		}
		if werr := sleepCtx(ctx, time.Duration(try+1)*200*time.Millisecond); werr != nil {
			return nil, werr
		}
	}
}

// track makes a handle for each task, under its key (given or made).
func (c *Client) track(specs []*pb.TaskSpec, tasks []*Task) ([]*Handle, error) {
	handles := make([]*Handle, len(specs))
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, spec := range specs {
		if spec.Key == "" {
			c.keys++
			spec.Key = "~" + strconv.FormatUint(c.keys, 10) // "~": apart from keys users choose
		} else if c.userKeys[spec.Key] {
			c.untrackLocked(handles[:i])
			return nil, fmt.Errorf("%w: task %q: key %q was given to another task of this client; keys are unique in a session", ErrInvalid, spec.Name, spec.Key)
		} else {
			c.userKeys[spec.Key] = true
		}
		h := &Handle{Name: spec.Name, key: spec.Key, task: tasks[i], c: c, done: make(chan struct{})}
		handles[i] = h
		c.handles[spec.Key] = h
	}
	return handles, nil
}

// untrack forgets handles whose submit failed.
func (c *Client) untrack(handles []*Handle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.untrackLocked(handles)
}

func (c *Client) untrackLocked(handles []*Handle) {
	for _, h := range handles {
		if c.handles[h.key] == h {
			delete(c.handles, h.key)
			delete(c.userKeys, h.key)
		}
	}
}

// encode turns t into its wire form, inlining small inputs while budget
// lasts and uploading the others.
func (c *Client) encode(ctx context.Context, t *Task, budget *int, decls map[string]*pb.FileDecl) (*pb.TaskSpec, error) {
	name := t.Name
	if name == "" && t.Call != nil {
		name = t.Call.Library + "." + t.Call.Function
	}
	if name == "" {
		name = t.Command
		if len(name) > 60 {
			name = name[:57] + "..."
		}
	}
	cores := t.Resources.Cores
	if cores == 0 && t.Call == nil {
		cores = 1
	}
	if strings.HasPrefix(t.Key, "~") {
		return nil, fmt.Errorf("%w: task %q: key %q: keys starting with ~ are the client's own", ErrInvalid, name, t.Key)
	}
	spec := &pb.TaskSpec{
		Name: name, Command: t.Command, Env: t.Env,
		Resources: &pb.Resources{Cores: cores, MemoryMb: t.Resources.MemoryMB, DiskMb: t.Resources.DiskMB, Gpus: int64(t.Resources.GPUs)},
		Retries:   int32(t.Retries), RetryOnError: t.RetryOnError, TimeLimitMs: t.TimeLimit.Milliseconds(),
		Priority: int32(t.Priority), Category: t.Category, Tags: t.Tags, Key: t.Key,
		UnplaceableTimeoutMs: unplaceableMs(t.UnplaceableTimeout),
		Deterministic:        t.Deterministic, Effects: protoEffects(t.Effects),
		Workflow: cmp.Or(t.Workflow, c.workflow),
		Keep:     protoKeep(t.Keep),
	}
	if t.Keep.how == keepReplicate {
		if t.Keep.replicas < 2 || t.Keep.replicas > 64 {
			return nil, fmt.Errorf("%w: task %q: Replicate(%d): want 2 to 64 copies", ErrInvalid, name, t.Keep.replicas)
		}
		spec.Replicas = uint32(t.Keep.replicas)
	}
	c.nameInSession(t.Inputs)
	c.nameInSession(t.Outputs)
	inputs := t.Inputs
	if t.Call != nil {
		spec.Call = &pb.CallSpec{Library: t.Call.Library, Function: t.Call.Function, Args: t.Call.Args}
		if len(t.Call.Args) > proto.MaxArgsBytes { // too big for the messages: a file
			spec.Call.Args, spec.Call.ArgsPath = nil, argsPath
			inputs = append(slices.Clip(inputs), Mount{Buffer(t.Call.Args), argsPath})
		}
	}
	for _, m := range inputs {
		if m.File == nil {
			return nil, fmt.Errorf("%w: task %q: input %q has no file", ErrInvalid, name, m.Path)
		}
		ref := &pb.FileRef{Name: m.File.cacheName(), Path: m.Path, Size: -1}
		switch m.File.kind {
		case kindLocal, kindBuffer:
			if content := m.File.inlineContent(); content != nil && len(content) <= *budget && m.File.level == 0 {
				*budget -= len(content)
				ref.Content, ref.Size = content, int64(len(content))
			} else if err := c.declare(ctx, m.File, decls); err != nil {
				return nil, err
			}
		default:
			if err := c.declare(ctx, m.File, decls); err != nil {
				return nil, err
			}
		}
		spec.Inputs = append(spec.Inputs, ref)
	}
	for _, m := range t.Outputs {
		if m.File == nil || (m.File.kind != kindOutput && m.File.kind != kindTemp) {
			return nil, fmt.Errorf("%w: task %q: output %q must be a file made with trellis.Output or trellis.Temp", ErrInvalid, name, m.Path)
		}
		if err := c.declare(ctx, m.File, decls); err != nil {
			return nil, err
		}
		spec.Outputs = append(spec.Outputs, &pb.FileRef{Name: m.File.cacheName(), Path: m.Path})
	}
	if err := proto.CheckTask(spec); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return spec, nil
}

// nameInSession names the outputs among mounts after the session, in a
// resumable session (File.nameIn), before anything sends their names.
func (c *Client) nameInSession(mounts []Mount) {
	if !c.resumable {
		return
	}
	for _, m := range mounts {
		if m.File != nil {
			m.File.nameIn(c.session)
		}
	}
}

// unplaceableMs is Task.UnplaceableTimeout on the wire: whole
// milliseconds, rounded up so that a limit stays one, and -1 for none.
func unplaceableMs(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// Install installs (or replaces) a library on the cluster, uploading its
// input files.
func (c *Client) Install(ctx context.Context, lib *Library) error {
	cores := lib.Resources.Cores
	if cores == 0 {
		cores = 1 // as for a task: an instance holds a core, so capacity bounds how many start
	}
	spec := &pb.LibrarySpec{Name: lib.Name, Command: lib.Command, Env: lib.Env, Slots: int32(lib.Slots), Mode: lib.Mode,
		MaxInstances: int32(lib.MaxInstances), Eager: int32(lib.Eager), EveryWorker: lib.EveryWorker, StartTimeoutMs: lib.StartTimeout.Milliseconds(),
		Resources: &pb.Resources{Cores: cores, MemoryMb: lib.Resources.MemoryMB, DiskMb: lib.Resources.DiskMB, Gpus: int64(lib.Resources.GPUs)}}
	decls := make(map[string]*pb.FileDecl)
	budget := proto.MaxInlinePerMessage
	c.nameInSession(lib.Inputs)
	for _, m := range lib.Inputs {
		ref := &pb.FileRef{Name: m.File.cacheName(), Path: m.Path, Size: -1}
		if content := m.File.inlineContent(); content != nil && len(content) <= budget && m.File.level == 0 {
			budget -= len(content)
			ref.Content, ref.Size = content, int64(len(content))
		} else if err := c.declare(ctx, m.File, decls); err != nil {
			return err
		}
		spec.Inputs = append(spec.Inputs, ref)
	}
	req := &pb.InstallLibraryRequest{Library: spec}
	for _, d := range decls {
		req.Files = append(req.Files, d)
	}
	_, err := c.rpc.InstallLibrary(ctx, connect.NewRequest(req))
	return wireError("install library "+lib.Name, err)
}

// CallError is how a call that ran and failed comes back from Client.Call.
type CallError struct {
	Result *Result
}

func (e *CallError) Error() string {
	return fmt.Sprintf("call %s: %s: %s", e.Result.Name, e.Result.Kind, e.Result.Message)
}

// Call runs function of library with args and waits for its result.
func (c *Client) Call(ctx context.Context, library, function string, args []byte) ([]byte, error) {
	t := NewCall(library, function, args)
	if c.direct != nil {
		out, err, key, ok := c.callDirect(ctx, library, function, args)
		if ok {
			return out, err
		}
		t.Key = key // a direct call that failed on the way runs again by its key
	}
	hs, err := c.submitViaManager(ctx, []*Task{t})
	if err != nil {
		return nil, err
	}
	r, err := hs[0].Wait(ctx)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.Cancel(cctx, hs[0].ID)
		cancel()
		return nil, err
	}
	if !r.OK() {
		return nil, &CallError{Result: r}
	}
	return r.Output, nil
}

// declare adds f's declaration (and its archive's, for an unpacked file) to
// decls, uploading what must be at the manager.
func (c *Client) declare(ctx context.Context, f *File, decls map[string]*pb.FileDecl) error {
	name := f.cacheName()
	if decls[name] != nil {
		return nil
	}
	d := &pb.FileDecl{Name: name, Level: protoCacheLevel(f.level), Replicas: uint32(max(f.replicas, 0))}
	switch f.kind {
	case kindLocal, kindBuffer:
		if err := c.upload(ctx, f); err != nil {
			return err
		}
		if f.missing != nil {
			return nil // the manager reports it missing, and the client says why
		}
		d.Kind = pb.FileKind_FILE_KIND_MANAGER
	case kindURL:
		d.Kind, d.Url = pb.FileKind_FILE_KIND_URL, f.url
	case kindTemp:
		d.Kind, d.PruneDepth = pb.FileKind_FILE_KIND_TEMP, uint32(max(f.depth, 0))
	case kindOutput:
		d.Kind = pb.FileKind_FILE_KIND_OUTPUT
	case kindUnpack:
		if f.from == nil {
			return fmt.Errorf("%w: unpacked file without an archive", ErrInvalid)
		}
		if err := c.declare(ctx, f.from, decls); err != nil {
			return err
		}
		d.Kind, d.UnpackFrom, d.UnpackFormat, d.Dir = pb.FileKind_FILE_KIND_UNPACK, f.from.cacheName(), f.format, true
	}
	decls[name] = d
	return nil
}

// Fetch brings a file that tasks produced (a temp file, say) to path at
// the client, from whichever worker holds it.
func (c *Client) Fetch(ctx context.Context, f *File, path string) error {
	if _, err := c.rpc.FetchFile(ctx, connect.NewRequest(&pb.FetchFileRequest{Name: f.cacheName()})); err != nil {
		return wireError("fetch "+f.cacheName(), err)
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return c.download(ctx, f.cacheName(), path)
}

// RemoveLibrary removes an installed library: its instances stop, and
// its calls (waiting, running, or submitted later) fail saying so, until
// it is installed again. A library that is not installed is ErrNotFound.
func (c *Client) RemoveLibrary(ctx context.Context, name string) error {
	_, err := c.rpc.RemoveLibrary(ctx, connect.NewRequest(&pb.RemoveLibraryRequest{Name: name}))
	return wireError("remove library "+name, err)
}

// Cancel asks the manager to stop tasks.
func (c *Client) Cancel(ctx context.Context, ids ...uint64) error {
	_, err := c.rpc.Cancel(ctx, connect.NewRequest(&pb.CancelRequest{TaskIds: ids}))
	return wireError("cancel", err)
}

// Reconcile gives the operator's verdict on a task in unknown: an
// at-most-once task whose attempt was lost, which may or may not have
// taken effect (Status.UnknownTasks lists them). A task in any other
// state is refused (ErrInvalid).
func (c *Client) Reconcile(ctx context.Context, id uint64, v Verdict) error {
	_, err := c.rpc.Reconcile(ctx, connect.NewRequest(&pb.ReconcileRequest{TaskId: id, Verdict: protoVerdict(v)}))
	return wireError("reconcile", err)
}

// CancelSession asks the manager to stop every unfinished task that a
// client session submitted (another client's, by its Session name) and
// returns how many it found.
func (c *Client) CancelSession(ctx context.Context, session string) (int, error) {
	resp, err := c.rpc.Cancel(ctx, connect.NewRequest(&pb.CancelRequest{Session: session}))
	if err != nil {
		return 0, wireError("cancel session "+session, err)
	}
	return int(resp.Msg.Cancelled), nil
}

// CancelWorkflow asks the manager to cancel every unfinished task
// labelled with workflow w (Task.Workflow, WithWorkflow), whichever client
// submitted them, and returns how many it asked to cancel. A workflow of
// which the manager knows no task is ErrNotFound.
func (c *Client) CancelWorkflow(ctx context.Context, w string) (int, error) {
	resp, err := c.rpc.Cancel(ctx, connect.NewRequest(&pb.CancelRequest{Workflow: w}))
	if err != nil {
		return 0, wireError("cancel workflow "+w, err)
	}
	return int(resp.Msg.Cancelled), nil
}

// Session is the name of the client's session at the manager: the
// dashboard's task pages show it, and another client (trellis cancel
// --session) may cancel its unfinished tasks by it.
func (c *Client) Session() string { return c.session }

// watch follows the session's task events until ctx ends, reconnecting
// when the stream breaks. It reports the first connection's outcome on ready.
//
// A manager that restarted (another run ID on the stream's first message)
// has forgotten the session: the tasks waiting then end their Wait with
// ErrManagerLost, as they do when the manager stays unreachable for the
// client's manager timeout.
func (c *Client) watch(ctx context.Context, ready chan<- error) {
	first := true
	var run string       // the manager's run ID
	var lostAt time.Time // when the stream broke, if it is not back
	for ctx.Err() == nil {
		sctx, cancel := context.WithCancel(ctx)
		stream, err := c.watchRPC(sctx, &pb.WatchRequest{Session: c.session, After: c.applied, Epoch: c.epoch.Load(), Manager: run})
		if err == nil {
			for stream.Receive() {
				msg := stream.Msg()
				if first { // the manager's first message: the client watches
					ready <- nil
					first = false
				}
				if msg.Manager != "" { // the first message of the stream
					if run != "" && msg.Manager != run {
						c.managerRestarted()
					} else if e := c.epoch.Load(); e != 0 && msg.Epoch != e {
						c.managerRecovered()
					}
					c.epoch.Store(msg.Epoch)
					run, lostAt = msg.Manager, time.Time{}
					c.run.Store(&msg.Manager)
				}
				for _, ev := range msg.Events {
					c.apply(ctx, ev)
				}
			}
			err = stream.Err()
			stream.Close()
			if first && err == nil {
				err = errors.New("the manager ended the event stream before its first message")
			}
		}
		cancel()
		if !first && ctx.Err() == nil {
			if lostAt.IsZero() {
				lostAt = time.Now()
			} else if d := time.Since(lostAt); d >= c.managerTimeout && c.failWaiting(fmt.Errorf("%w: manager %s unreachable for %s: %v", ErrManagerLost, c.addr, d.Round(time.Second), err)) > 0 {
				c.log.Error("the manager is unreachable: its tasks are given up", "manager", c.addr, "for", d.Round(time.Second))
			}
		}
		if !first && connect.CodeOf(err) == connect.CodeFailedPrecondition { // the session ended
			select {
			case <-c.gone: // Close ended it
			default:
				var ce *connect.Error
				errors.As(err, &ce)
				n := c.failWaiting(fmt.Errorf("%w: %s", ErrSessionEnded, ce.Message()))
				c.log.Error("the manager ended this client's session: its tasks are given up", "why", ce.Message(), "tasks", n)
			}
			return
		}
		if first || connect.CodeOf(err) == connect.CodeUnauthenticated {
			if first { // Dial returns it
				ready <- wireError("watch", err)
				return
			}
			c.log.Error("the manager refused the event stream", "err", err)
			return
		}
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("lost the manager's event stream; reconnecting", "err", err)
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// runID returns the run ID of the manager the client's cursor counts in
// ("" before the first stream).
func (c *Client) runID() string {
	if p := c.run.Load(); p != nil {
		return *p
	}
	return ""
}

// managerRestarted gives up the tasks a restarted manager has forgotten,
// and follows the new run's events from the start.
func (c *Client) managerRestarted() {
	n := c.failWaiting(fmt.Errorf("%w: manager %s restarted and forgot this session's tasks (it was started without --state)", ErrManagerLost, c.addr))
	c.log.Error("the manager restarted: its tasks are given up", "manager", c.addr, "tasks", n)
	c.applied = 0
	c.toAck.Store(0)
}

// managerRecovered follows the events of a manager that restarted with
// its journal: it numbers the session's events from 1 again, and sends
// them all; those of tasks already done are dropped (deliver).
func (c *Client) managerRecovered() {
	c.log.Warn("the manager restarted and recovered this session from its journal; resuming", "manager", c.addr)
	c.applied = 0
	c.toAck.Store(0)
}

// failWaiting ends the wait of every task not yet done with err, and
// returns how many there were.
func (c *Client) failWaiting(err error) int {
	c.mu.Lock()
	handles := c.handles
	c.handles = make(map[string]*Handle)
	c.mu.Unlock()
	for _, h := range handles {
		h.err = err
		close(h.done)
	}
	return len(handles)
}

// apply delivers the session's next event once: one the client applied
// already (sent again on a resumed stream) is dropped.
func (c *Client) apply(ctx context.Context, ev *pb.TaskEvent) {
	if ev.Seq <= c.applied {
		return
	}
	// A client that takes a session over starts where its predecessor's
	// acknowledgements left off.
	if ev.Seq != c.applied+1 && (c.applied > 0 || !c.resumable) {
		c.log.Error("events of this session were lost: the manager dropped them unacknowledged", "from", c.applied+1, "to", ev.Seq-1)
	}
	c.applied = ev.Seq
	c.deliver(ctx, ev)
	for i, id := range ev.AlsoTaskIds {
		if i < len(ev.AlsoKeys) { // an unplaceable reason told to many tasks at once: each gets it
			c.deliver(ctx, &pb.TaskEvent{TaskId: id, Key: ev.AlsoKeys[i], State: ev.State, Attempt: ev.Attempt,
				Worker: ev.Worker, Note: ev.Note, Unplaceable: ev.Unplaceable, Seq: ev.Seq})
		}
	}
	c.toAck.Store(c.applied)
	select {
	case c.ack <- struct{}{}:
	default:
	}
}

// deliver applies one task event: progress callback, and on completion the
// handle's result, once the fetchers have downloaded its outputs if it has
// any. Only the watch goroutine calls it, so each task's events go out in
// order.
func (c *Client) deliver(ctx context.Context, ev *pb.TaskEvent) {
	c.mu.Lock()
	h := c.handles[ev.Key]
	if h != nil && ev.State == pb.TaskState_TASK_STATE_DONE {
		delete(c.handles, ev.Key)
	}
	c.mu.Unlock()
	if h == nil {
		return // a task of this session that another client submitted
	}
	out := Event{Task: ev.TaskId, Name: h.Name, State: State(ev.State), Attempt: int(ev.Attempt), Worker: ev.Worker, Note: ev.Note,
		Unplaceable: ev.Unplaceable}
	if ev.State != pb.TaskState_TASK_STATE_DONE {
		c.emit(out, nil)
		return
	}
	if needsFetch(h, ev) {
		c.queueFetch(fetch{h: h, ev: ev, out: out})
		return
	}
	c.complete(ctx, fetch{h: h, ev: ev, out: out})
}

func (c *Client) result(ctx context.Context, h *Handle, ev *pb.TaskEvent) *Result {
	o := ev.GetOutcome()
	r := &Result{Task: ev.TaskId, Name: h.Name, Kind: resultKindOf(o.GetKind()), ExitCode: int(o.GetExitCode()),
		Message: o.GetMessage(), Stdout: o.GetStdout(), Stderr: o.GetStderr(),
		StdoutTruncated: o.GetStdoutTruncated(), StderrTruncated: o.GetStderrTruncated(),
		Output: o.GetResult(), Traceback: o.GetTraceback(),
		Attempts: int(ev.Attempt), Worker: ev.Worker, RunTime: time.Duration(o.GetRunMs()) * time.Millisecond,
		PeakMemoryMB: o.GetPeakMemoryMb()}
	if r.Kind == InputMissing {
		// Say which local file was missing, which only the client knows.
		for _, m := range h.task.Inputs {
			if m.File.missing != nil {
				r.Message = fmt.Sprintf("input %q: %v", m.Path, m.File.missing)
				break
			}
		}
	}
	if r.Kind != Success {
		return r
	}
	if f := o.GetResultFile(); f != nil {
		out, err := c.fetchResult(ctx, f)
		if err != nil {
			r.Kind, r.Message = Failed, err.Error()
			return r
		}
		r.Output = out
	}
	inline := make(map[string][]byte)
	for _, f := range o.GetOutputs() {
		if f.Content != nil {
			inline[f.Name] = f.Content
		}
	}
	for _, m := range h.task.Outputs {
		if m.File.local == "" {
			continue
		}
		var err error
		if content, ok := inline[m.File.cacheName()]; ok {
			err = writeLocal(m.File.local, bytes.NewReader(content))
		} else {
			err = c.download(ctx, m.File.cacheName(), m.File.local)
		}
		if err != nil {
			r.Kind, r.Message = Failed, err.Error()
			return r
		}
	}
	return r
}

// argsPath is where a call's large arguments are, in its directory.
const argsPath = ".trellis-args"

// fetchResult GETs a call's large result from the manager's store.
func (c *Client) fetchResult(ctx context.Context, f *pb.FileInfo) ([]byte, error) {
	resp, err := c.fileRequest(ctx, http.MethodGet, f.Name, nil, 0)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("fetch the result: %s: %s", resp.Status, msg)
	}
	out, err := io.ReadAll(io.LimitReader(resp.Body, f.Size+1))
	if err != nil {
		return nil, fmt.Errorf("fetch the result: %w", err)
	}
	if sum := sha256.Sum256(out); int64(len(out)) != f.Size || f.Digest != "sha256:"+hex.EncodeToString(sum[:]) {
		return nil, fmt.Errorf("fetch the result: got %d bytes that do not match the %d the worker sent", len(out), f.Size)
	}
	return out, nil
}

// wireError maps the manager's error codes to the package's errors.
func wireError(op string, err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return fmt.Errorf("%s: %w", op, err)
	}
	switch ce.Code() {
	case connect.CodeUnauthenticated:
		return fmt.Errorf("%s: %w: %s", op, ErrUnauthenticated, ce.Message())
	case connect.CodeInvalidArgument, connect.CodeResourceExhausted:
		return fmt.Errorf("%s: %w: %s", op, ErrInvalid, ce.Message())
	case connect.CodeNotFound:
		return fmt.Errorf("%s: %w: %s", op, ErrNotFound, ce.Message())
	case connect.CodeFailedPrecondition:
		return fmt.Errorf("%s: %w: %s", op, ErrSessionEnded, ce.Message())
	case connect.CodeUnavailable:
		if untrusted := certs.Explain(err, ""); untrusted != err {
			return fmt.Errorf("%s: %w", op, untrusted)
		}
		return fmt.Errorf("%s: manager unreachable: %s", op, ce.Message())
	}
	return fmt.Errorf("%s: %s", op, ce.Message())
}

// bearer adds the secret to every request the client makes.
type bearer struct{ secret *string }

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+*b.secret)
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+*b.secret)
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
