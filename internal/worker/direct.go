package worker

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/gate"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/proto/trellisv1/trellisv1connect"
)

// Direct calls (docs/direct-calls.md): a client that holds a lease on slots
// of a library instance here sends calls straight to this worker's file
// server port (Worker.Call), with the lease's token. The worker checks the
// token with the key of its Welcome, runs the call in the instance, answers
// the client, and reports the call's end to the manager (DirectCallEnded).

// leaseTable holds the leases the manager granted on this worker's
// instances, for the current session: a session that ends takes them with
// it (the manager ends them when the worker leaves it).
type leaseTable struct {
	mu     sync.Mutex
	key    []byte // the Welcome's lease_key
	worker uint64 // the Welcome's worker ID
	sess   *session
	byID   map[uint64]*workerLease
	// highest is the highest lease ID granted or ended in this session:
	// IDs increase within a session, so one not above it and not in byID
	// has ended.
	highest uint64
	// kept: reports of direct calls that ended after their session did,
	// for the next session of the same manager run (runID), which
	// journals them; a manager of another run never sees them.
	kept    []*pb.WorkerMessage
	keptRun string
	// granted is closed (and replaced) at each grant: a client may bring
	// a lease's first call before the manager's grant reaches the worker.
	granted chan struct{}
}

// grantWait bounds how long a call waits for the grant of its lease.
const grantWait = 2 * time.Second

type workerLease struct {
	token    string // its token, made once (proto.LeaseToken)
	instance uint64
	slots    int32
	busy     int32 // calls running on it, and those a freed slot was handed to
	// waiting are the calls waiting for one of its slots, in order of
	// coming (at most maxQueuedPerSlot per slot: a client keeps the
	// library busy while answers travel back): a freed slot goes to the
	// first (its channel closed, the slot still counted busy); all are
	// woken when the lease or its session ends.
	waiting []chan struct{}
	session string
	library string
}

// maxQueuedPerSlot bounds the calls that wait at the worker for a slot of
// a lease, per slot.
const maxQueuedPerSlot = 3

// wakeAllLocked wakes every call waiting for a slot of l, which ended
// (t.mu held).
func (l *workerLease) wakeAllLocked() {
	for _, ch := range l.waiting {
		close(ch)
	}
	l.waiting = nil
}

// freeLocked frees a slot of l: it goes to the first call waiting, if any
// (t.mu held).
func (l *workerLease) freeLocked() {
	if len(l.waiting) == 0 {
		l.busy--
		return
	}
	close(l.waiting[0])
	l.waiting = l.waiting[1:]
}

// leaveLocked takes the call waiting on ch off l's line, when it stops
// waiting; if a slot was handed to it meanwhile, it goes to the next
// (t.mu held).
func (l *workerLease) leaveLocked(ch chan struct{}) {
	if i := slices.Index(l.waiting, ch); i >= 0 {
		l.waiting = slices.Delete(l.waiting, i, i+1)
		return
	}
	l.freeLocked() // (a lease that ended has no one waiting: its count no longer matters)
}

// attach makes s the session the leases belong to, with its Welcome's key.
func (t *leaseTable) attach(s *session, key []byte, worker uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.key, t.worker, t.sess, t.byID, t.highest = key, worker, s, make(map[uint64]*workerLease), 0
	if t.granted == nil {
		t.granted = make(chan struct{})
	}
}

// keep holds the report of a direct call whose session gone ended, unless a
// later session of the same manager run is up already: then it returns
// that one to report to.
func (t *leaseTable) keep(msg *pb.WorkerMessage, gone *session) *session {
	t.mu.Lock()
	defer t.mu.Unlock()
	run := gone.runID
	if t.sess != nil && t.sess != gone && t.sess.runID == run {
		return t.sess
	}
	if t.keptRun != run {
		t.kept, t.keptRun = nil, run
	}
	t.kept = append(t.kept, msg)
	return nil
}

// takeKept returns the reports kept for a session of run, and forgets all.
func (t *leaseTable) takeKept(run string) []*pb.WorkerMessage {
	t.mu.Lock()
	defer t.mu.Unlock()
	kept := t.kept
	t.kept = nil
	if t.keptRun != run {
		return nil
	}
	return kept
}

// detach forgets the leases of s, which ended.
func (t *leaseTable) detach(s *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sess == s {
		for _, l := range t.byID {
			l.wakeAllLocked() // they find the session gone
		}
		t.sess, t.byID = nil, nil
	}
}

func (t *leaseTable) grant(g *pb.LeaseGranted) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID != nil {
		t.byID[g.Lease] = &workerLease{token: proto.LeaseToken(t.key, g.Lease, t.worker), instance: g.Instance, slots: max(g.Slots, 1), session: g.Session, library: g.Library}
		t.highest = max(t.highest, g.Lease)
		close(t.granted)
		t.granted = make(chan struct{})
	}
}

func (t *leaseTable) end(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID != nil {
		if l := t.byID[id]; l != nil {
			l.wakeAllLocked() // they find it ended
		}
		delete(t.byID, id)
		t.highest = max(t.highest, id)
	}
}

// check checks a call's token for lease id.
func (t *leaseTable) check(id uint64, token string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.checkLocked(id, token)
}

// checkLocked is check, with t.mu held.
func (t *leaseTable) checkLocked(id uint64, token string) error {
	if l := t.byID[id]; l != nil && len(token) == len(l.token) && subtle.ConstantTimeCompare([]byte(token), []byte(l.token)) == 1 {
		return nil // a lease held here: its token made once
	}
	if !proto.CheckLeaseToken(t.key, id, t.worker, token) {
		return connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("worker: the token of lease %d is not this worker's: ask the manager for a lease", id))
	}
	return nil
}

// take admits a call on lease id with token: it returns the lease and the
// session to report to, or the error to answer with. The token is checked
// with the key of the session up then; if another session comes while the
// call is admitted (gate.Admit, with t.mu released) or waits for its grant,
// the call is refused: lease IDs start again in a new manager run, so the
// same ID may be another client's lease.
func (t *leaseTable) take(ctx context.Context, id uint64, token string) (workerLease, *session, error) {
	t.mu.Lock()
	err := t.checkLocked(id, token)
	sess := t.sess
	t.mu.Unlock()
	if err != nil {
		return workerLease{}, nil, err
	}
	gate.Admit(ctx) // a client with a valid token: not a stranger (Admit takes the listener's lock: not under t.mu)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sess != sess {
		return workerLease{}, nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("worker: the manager's session ended as the call on lease %d came: send the call through the manager", id))
	}
	l := t.byID[id]
	var wait *time.Timer // made only when the call waits for the grant
	for ; l == nil && t.byID != nil && id > t.highest; l = t.byID[id] {
		if wait == nil {
			wait = time.NewTimer(grantWait)
			defer wait.Stop()
		}
		if err := t.waitLocked(ctx, t.granted, wait.C, sess, id, "the grant"); err != nil {
			return workerLease{}, nil, err
		}
	}
	if l == nil {
		return workerLease{}, nil, errLeaseEnded(id)
	}
	if l.busy < l.slots {
		l.busy++
		return *l, t.sess, nil
	}
	// All its slots are busy: wait in line for one.
	if len(l.waiting) >= maxQueuedPerSlot*int(l.slots) {
		return workerLease{}, nil, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("worker: lease %d runs %d calls, all its slots, and %d more wait: send this one through the manager", id, l.busy, len(l.waiting)))
	}
	ch := make(chan struct{})
	l.waiting = append(l.waiting, ch)
	if err := t.waitLocked(ctx, ch, nil, sess, id, "a slot"); err != nil {
		l.leaveLocked(ch)
		return workerLease{}, nil, err
	}
	if t.byID[id] != l {
		return workerLease{}, nil, errLeaseEnded(id)
	}
	return *l, t.sess, nil // the slot freeLocked handed over, counted busy
}

// errLeaseEnded is the answer to a call on lease id, which ended.
func errLeaseEnded(id uint64) error {
	return connect.NewError(connect.CodeNotFound, fmt.Errorf("worker: no lease %d here (it ended): send the call through the manager", id))
}

// waitLocked waits, with t.mu released, until ch is closed, expired fires
// (never if nil) or ctx ends, for a call on lease id; then it checks that
// session sess is still the table's. what names what the call waits for,
// in errors. t.mu is held when it returns.
func (t *leaseTable) waitLocked(ctx context.Context, ch <-chan struct{}, expired <-chan time.Time, sess *session, id uint64, what string) error {
	t.mu.Unlock()
	select {
	case <-ch:
	case <-expired:
		t.mu.Lock()
		return connect.NewError(connect.CodeNotFound, fmt.Errorf("worker: lease %d was not granted here within %s: send the call through the manager", id, grantWait))
	case <-ctx.Done():
		t.mu.Lock()
		return connect.NewError(connect.CodeCanceled, ctx.Err())
	}
	t.mu.Lock()
	if t.sess != sess {
		return connect.NewError(connect.CodeNotFound, fmt.Errorf("worker: the manager's session ended while the call waited for %s of lease %d: send the call through the manager", what, id))
	}
	return nil
}

// give frees the slot a call took on lease id in session sess (take's).
// A lease of another session is not the call's, even with the same ID
// (a new manager run numbers its leases from 1 again); the call's own
// went with its session.
func (t *leaseTable) give(id uint64, sess *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.byID[id]; l != nil && t.sess == sess {
		l.freeLocked()
	}
}

// directReports are a session's reports of direct calls, queued for its
// loop. Once the session ends (shut), it takes none: the reports go to the
// next session of the same manager run, or wait for it (leaseTable.keep).
//
// The reports are off the calls' path (each client has its answer from the
// worker already), so they wait to go to the manager together: the loop is
// woken once reportDelay after the first report of a batch, or at once when
// reportBatch are queued. Reported one by one, they cost the worker, the
// manager and their stream a message each, about a fifth of a direct call's
// CPU (docs/benchmarks.md, "Direct calls: CPU per call").
type directReports struct {
	mu     sync.Mutex
	queued []*pb.WorkerMessage
	shut   bool
	armed  bool          // timer runs: it wakes the loop for what is queued
	timer  *time.Timer   // made at the first report (time.AfterFunc: its own goroutine, once per batch)
	signal chan struct{} // the loop's: something is queued
}

// Pacing of the reports of direct calls to the manager (directReports).
const (
	reportDelay = 2 * time.Millisecond
	reportBatch = 256
)

// put queues msg, unless the session has ended.
func (r *directReports) put(msg *pb.WorkerMessage) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shut {
		return false
	}
	r.queued = append(r.queued, msg)
	switch {
	case len(r.queued) >= reportBatch:
		r.wakeLocked()
	case !r.armed:
		r.armed = true
		if r.timer == nil {
			r.timer = time.AfterFunc(reportDelay, r.due)
		} else {
			r.timer.Reset(reportDelay)
		}
	}
	return true
}

// due wakes the loop for the reports queued since the timer was armed.
func (r *directReports) due() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.armed = false
	if len(r.queued) > 0 && !r.shut {
		r.wakeLocked()
	}
}

// wakeLocked wakes the session's loop (r.mu held).
func (r *directReports) wakeLocked() {
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

// take returns what is queued; with shut, it takes no more after.
func (r *directReports) take(shut bool) []*pb.WorkerMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queued
	r.queued = nil
	r.shut = r.shut || shut
	if r.shut && r.timer != nil {
		r.timer.Stop()
	}
	return q
}

// directService serves Worker.Call.
type directService struct{ w *Worker }

func (d directService) Call(ctx context.Context, req *connect.Request[pb.DirectCallRequest]) (*connect.Response[pb.DirectCallResponse], error) {
	if len(req.Msg.More) > 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("worker: Worker.Call takes one call: send several on Worker.Calls"))
	}
	resp, report, err := d.run(ctx, req.Msg)
	if err != nil {
		return nil, err
	}
	report()
	return connect.NewResponse(resp), nil
}

// Calls runs the calls of a stream concurrently, each answered as it ends.
// A wrong token ends the stream; a call the worker cannot take is refused
// in its answer. A message may carry several calls (DirectCallRequest's
// more), and answers that end while another is being sent go out together
// with it (answers.send).
func (d directService) Calls(ctx context.Context, stream *connect.BidiStream[pb.DirectCallRequest, pb.DirectCallResponse]) error {
	var wg sync.WaitGroup
	out := &answers{send: stream.Send}
	defer wg.Wait() // no Send after the handler returns
	for {
		req, err := stream.Receive()
		if err != nil {
			return nil // the client closed it (or went)
		}
		reqs := append([]*pb.DirectCallRequest{req}, req.More...)
		req.More = nil
		for _, r := range reqs {
			if err := d.w.leases.check(r.Lease, r.Token); err != nil {
				return err
			}
		}
		for _, r := range reqs {
			r.More = nil // entries of more have none of their own
			wg.Add(1)
			go func() { // exits when the call ends
				defer wg.Done()
				resp, report, err := d.run(ctx, r)
				if err != nil {
					resp = &pb.DirectCallResponse{Refused: err.Error()}
				}
				resp.Key = r.Key
				out.put(resp)
				if report != nil {
					report() // after the answer: the client waits for that alone
				}
			}()
		}
	}
}

// answers are the answers of one Calls stream on their way out. The call
// that finds no one sending sends its answer and whatever the others queue
// meanwhile, packed into one message (DirectCallResponse's more), until
// nothing is queued: a lone answer goes at once from its call's goroutine,
// and a burst goes in one write.
type answers struct {
	send    func(*pb.DirectCallResponse) error // stream.Send: called by the sender alone
	mu      sync.Mutex                         // guards queue, sending, err
	queue   []*pb.DirectCallResponse
	sending bool
	err     error // the first failed send: later answers are dropped
}

// put sends resp, or queues it for the call that is sending.
func (a *answers) put(resp *pb.DirectCallResponse) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return
	}
	a.queue = append(a.queue, resp)
	if a.sending {
		return
	}
	a.sending = true
	for len(a.queue) > 0 && a.err == nil {
		q := a.queue
		a.queue = nil
		a.mu.Unlock()
		err := proto.SendBatched(q, packAnswers, a.send)
		a.mu.Lock()
		a.err = err
	}
	a.queue = nil
	a.sending = false
}

// packAnswers makes one message of several answers.
func packAnswers(rs []*pb.DirectCallResponse) *pb.DirectCallResponse {
	first := rs[0]
	first.More = slices.Clone(rs[1:])
	return first
}

// run runs one direct call; report tells the manager it ended.
func (d directService) run(ctx context.Context, r *pb.DirectCallRequest) (resp *pb.DirectCallResponse, report func(), err error) {
	l, sess, err := d.w.leases.take(ctx, r.Lease, r.Token)
	if err != nil {
		return nil, nil, err
	}
	defer d.w.leases.give(r.Lease, sess)
	inst := d.w.libs.get(l.instance)
	if inst == nil {
		return nil, nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("worker: library instance %d of lease %d is not running here: send the call through the manager", l.instance, r.Lease))
	}
	inst.calls.Add(1)
	defer inst.calls.Add(-1)
	run := &pb.Run{Instance: l.instance, IdempotencyKey: r.IdempotencyKey,
		Spec: &pb.TaskSpec{TimeLimitMs: r.TimeLimitMs, Call: &pb.CallSpec{Library: l.library, Function: r.Function, Args: r.Args}}}
	o := d.w.runCall(ctx, run, inst)
	if o == nil || o == handBack {
		return nil, nil, connect.NewError(connect.CodeUnavailable, errors.New("worker: the library instance ended while it had the call: send it through the manager"))
	}
	msg := &pb.WorkerMessage{Msg: &pb.WorkerMessage_DirectCallEnded{DirectCallEnded: &pb.DirectCallEnded{
		Lease: r.Lease, Session: l.session, Key: r.Key, Library: l.library, Function: r.Function,
		Kind: o.Kind, Message: o.Message, RunMs: o.RunMs, ResultBytes: int64(len(o.Result))}}}
	return &pb.DirectCallResponse{Outcome: o}, func() {
		for sess != nil && !sess.direct.put(msg) { // ended: to the next session of the run
			sess = d.w.leases.keep(msg, sess)
		}
	}, nil
}

// withDirect serves Worker.Call beside the cache's files.
func (w *Worker) withDirect(files http.Handler) http.Handler {
	path, h := trellisv1connect.NewWorkerHandler(directService{w},
		connect.WithReadMaxBytes(proto.MaxMessageBytes), connect.WithSendMaxBytes(proto.MaxMessageBytes), connect.WithCompressMinBytes(proto.CompressMinBytes))
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if strings.HasPrefix(req.URL.Path, path) {
			h.ServeHTTP(rw, req)
			return
		}
		files.ServeHTTP(rw, req)
	})
}
