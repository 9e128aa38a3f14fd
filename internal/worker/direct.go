package worker

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/framed"
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
	// first (the slot still counted busy); all are refused when the lease
	// or its session ends.
	waiting []leaseWaiter
	session string
	library string
}

// leaseWaiter is a call waiting for a slot of a lease: a goroutine blocked
// on ch (take), closed when it has the slot or must give up; or a call of
// a Calls stream that holds no goroutine while it waits (queued): the call
// whose end frees the slot runs it next, on its own goroutine (serve).
type leaseWaiter struct {
	ch   chan struct{}
	call *queuedCall
}

// queuedCall is a call of a Calls stream waiting in its lease's line.
type queuedCall struct {
	d   directService
	ctx context.Context // the stream's
	r   *pb.DirectCallRequest
	out *answers
	wg  *sync.WaitGroup // the stream's calls: Done once it is answered
}

// handoff is a freed slot of lease l, in session sess, handed to a
// queued call (none if call is nil): the one that freed it runs it.
type handoff struct {
	call *queuedCall
	l    workerLease
	sess *session
}

// maxQueuedPerSlot bounds the calls that wait at the worker for a slot of
// a lease, per slot.
const maxQueuedPerSlot = 3

// wakeAllLocked wakes every call waiting for a slot of l, which ended, and
// returns the queued ones, for the caller to refuse once t.mu is released
// (refuseQueued) (t.mu held).
func (l *workerLease) wakeAllLocked() []*queuedCall {
	var queued []*queuedCall
	for _, w := range l.waiting {
		if w.call != nil {
			queued = append(queued, w.call)
		} else {
			close(w.ch)
		}
	}
	l.waiting = nil
	return queued
}

// freeLocked frees a slot of l: it goes to the first call waiting, if any;
// a queued one is returned, for the caller to run once t.mu is released
// (t.mu held).
func (l *workerLease) freeLocked(sess *session) handoff {
	if len(l.waiting) == 0 {
		l.busy--
		return handoff{}
	}
	w := l.waiting[0]
	l.waiting[0] = leaseWaiter{}
	l.waiting = l.waiting[1:]
	if w.call != nil {
		return handoff{call: w.call, l: *l, sess: sess}
	}
	close(w.ch)
	return handoff{}
}

// leaveLocked takes the call waiting on ch off l's line, when it stops
// waiting; if a slot was handed to it meanwhile, it goes to the next
// (returned if that one is queued) (t.mu held).
func (l *workerLease) leaveLocked(ch chan struct{}, sess *session) handoff {
	if i := slices.IndexFunc(l.waiting, func(w leaseWaiter) bool { return w.ch == ch }); i >= 0 {
		l.waiting = slices.Delete(l.waiting, i, i+1)
		return handoff{}
	}
	return l.freeLocked(sess) // (a lease that ended has no one waiting: its count no longer matters)
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
		for id, l := range t.byID {
			// They find the session gone.
			refuseQueued(l.wakeAllLocked(), connect.NewError(connect.CodeNotFound, fmt.Errorf("worker: the manager's session ended while the call waited for a slot of lease %d: send the call through the manager", id)))
		}
		t.sess, t.byID = nil, nil
	}
}

// refuseQueued refuses queued calls with err, on a goroutine of its own:
// their answers may wait for their streams.
func refuseQueued(queued []*queuedCall, err error) {
	if len(queued) == 0 {
		return
	}
	go func() { // exits when every one is answered
		for _, c := range queued {
			c.refuse(err)
		}
	}()
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
			refuseQueued(l.wakeAllLocked(), errLeaseEnded(id)) // they find it ended
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
	l, sess, _, err := t.enter(ctx, id, token, nil)
	return l, sess, err
}

// errWait is enter's answer to a queued call whose lease's grant has not
// come yet: take waits for it.
var errWait = errors.New("worker: the lease's grant is on its way")

// admit is take for call c of a Calls stream, without waiting: when all
// the lease's slots are busy, c is queued in its line (queued) and holds
// no goroutine: the call that frees a slot runs it (serve). It answers
// errWait when the grant has not come yet.
func (t *leaseTable) admit(c *queuedCall) (l workerLease, sess *session, queued bool, err error) {
	return t.enter(c.ctx, c.r.Lease, c.r.Token, c)
}

// enter is take (c nil) and admit.
func (t *leaseTable) enter(ctx context.Context, id uint64, token string, c *queuedCall) (workerLease, *session, bool, error) {
	t.mu.Lock()
	err := t.checkLocked(id, token)
	sess := t.sess
	t.mu.Unlock()
	if err != nil {
		return workerLease{}, nil, false, err
	}
	gate.Admit(ctx)  // a client with a valid token: not a stranger (Admit takes the listener's lock: not under t.mu)
	var next handoff // a slot handed to a queued call as this one gave up: run once t.mu is released
	defer func() {
		if next.call != nil {
			go serveQueued(next) // exits when that call and those handed its slot end
		}
	}()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sess != sess {
		return workerLease{}, nil, false, connect.NewError(connect.CodeNotFound, fmt.Errorf("worker: the manager's session ended as the call on lease %d came: send the call through the manager", id))
	}
	l := t.byID[id]
	if l == nil && c != nil && t.byID != nil && id > t.highest {
		return workerLease{}, nil, false, errWait
	}
	var wait *time.Timer // made only when the call waits for the grant
	for ; l == nil && t.byID != nil && id > t.highest; l = t.byID[id] {
		if wait == nil {
			wait = time.NewTimer(grantWait)
			defer wait.Stop()
		}
		if err := t.waitLocked(ctx, t.granted, wait.C, sess, id, "the grant"); err != nil {
			return workerLease{}, nil, false, err
		}
	}
	if l == nil {
		return workerLease{}, nil, false, errLeaseEnded(id)
	}
	if l.busy < l.slots {
		l.busy++
		return *l, t.sess, false, nil
	}
	// All its slots are busy: wait in line for one.
	if len(l.waiting) >= maxQueuedPerSlot*int(l.slots) {
		return workerLease{}, nil, false, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("worker: lease %d runs %d calls, all its slots, and %d more wait: send this one through the manager", id, l.busy, len(l.waiting)))
	}
	if c != nil {
		l.waiting = append(l.waiting, leaseWaiter{call: c})
		return workerLease{}, nil, true, nil
	}
	ch := make(chan struct{})
	l.waiting = append(l.waiting, leaseWaiter{ch: ch})
	if err := t.waitLocked(ctx, ch, nil, sess, id, "a slot"); err != nil {
		next = l.leaveLocked(ch, t.sess)
		return workerLease{}, nil, false, err
	}
	if t.byID[id] != l {
		return workerLease{}, nil, false, errLeaseEnded(id)
	}
	return *l, t.sess, false, nil // the slot freeLocked handed over, counted busy
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
// went with its session. When the slot goes to a queued call, give
// returns it: the caller runs it (serve).
func (t *leaseTable) give(id uint64, sess *session) handoff {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.byID[id]; l != nil && t.sess == sess {
		return l.freeLocked(sess)
	}
	return handoff{}
}

// holds returns nil if lease id of session sess is still held here, else
// the error to refuse a call with that was handed a slot of it, out of its
// line, before it ended (and that has not started).
func (t *leaseTable) holds(id uint64, sess *session) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.sess != sess:
		return connect.NewError(connect.CodeNotFound, fmt.Errorf("worker: the manager's session ended while the call waited for a slot of lease %d: send the call through the manager", id))
	case t.byID[id] == nil:
		return errLeaseEnded(id)
	}
	return nil
}

// dropQueued takes the calls of the stream whose answers go to out off
// their leases' lines, and refuses them with err: the stream ended.
func (t *leaseTable) dropQueued(out *answers, err error) {
	var dropped []*queuedCall
	t.mu.Lock()
	for _, l := range t.byID {
		l.waiting = slices.DeleteFunc(l.waiting, func(w leaseWaiter) bool {
			if w.call != nil && w.call.out == out {
				dropped = append(dropped, w.call)
				return true
			}
			return false
		})
	}
	t.mu.Unlock()
	for _, c := range dropped {
		c.refuse(err)
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
	r := req.Msg
	l, sess, err := d.w.leases.take(ctx, r.Lease, r.Token)
	if err != nil {
		return nil, err
	}
	resp, report, err := d.run(ctx, r, l, sess)
	if next := d.w.leases.give(r.Lease, sess); next.call != nil {
		go serveQueued(next) // exits when that call and those handed its slot end
	}
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
//
// A call that finds a slot of its lease free runs on a goroutine of its
// own; one that finds them all busy waits in the lease's line without one,
// and the call that frees a slot runs it next on its goroutine (serve): no
// goroutine is made, parked and woken per waiting call.
func (d directService) Calls(ctx context.Context, stream *connect.BidiStream[pb.DirectCallRequest, pb.DirectCallResponse]) error {
	return d.calls(ctx, stream)
}

// callsStream is a Calls stream as the worker serves it: over HTTP/2
// (connect's) or on a connection of its own (package framed).
type callsStream interface {
	Receive() (*pb.DirectCallRequest, error)
	Send(*pb.DirectCallResponse) error
}

// calls serves a Calls stream (Calls).
func (d directService) calls(ctx context.Context, stream callsStream) error {
	var wg sync.WaitGroup
	out := &answers{send: stream.Send}
	// The client went: its calls still in line are refused (not run).
	defer context.AfterFunc(ctx, func() {
		d.w.leases.dropQueued(out, connect.NewError(connect.CodeCanceled, context.Cause(ctx)))
	})()
	defer wg.Wait() // no Send after the handler returns (before the AfterFunc's stop: the client may go meanwhile)
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
			c := &queuedCall{d: d, ctx: ctx, r: r, out: out, wg: &wg}
			wg.Add(1)
			out.running.Add(1)
			l, sess, queued, err := d.w.leases.admit(c)
			switch {
			case queued: // run by the call that frees a slot
			case err == errWait:
				go func() { // exits when the call and those handed its slot end
					l, sess, err := d.w.leases.take(ctx, r.Lease, r.Token)
					d.serve(c, l, sess, err)
				}()
			default:
				go d.serve(c, l, sess, err) // exits when the call and those handed its slot end
			}
		}
	}
}

// serveQueued runs the queued call a freed slot was handed to, and those
// after it (serve).
func serveQueued(h handoff) {
	h.call.d.serve(h.call, h.l, h.sess, nil)
}

// serve answers call c, which holds a slot of lease l in session sess (or
// is refused with err), and then, while its freed slot goes to a call
// queued in the lease's line, runs that one too, and so on: each after
// checking that its lease is still held (holds), as its start follows the
// answer before it.
func (d directService) serve(c *queuedCall, l workerLease, sess *session, err error) {
	for c != nil {
		held := err == nil // a slot of the lease: give it back (not one that ended)
		if err == nil && c.ctx.Err() != nil {
			err = connect.NewError(connect.CodeCanceled, context.Cause(c.ctx)) // the client went while it waited
		}
		var resp *pb.DirectCallResponse
		var report func()
		if err == nil {
			resp, report, err = d.run(c.ctx, c.r, l, sess)
		}
		var next handoff
		if held {
			// Before the answer: the call the slot goes to leaves the line
			// now, making room there for the client's next call (it may come
			// as soon as the answer is out).
			next = d.w.leases.give(c.r.Lease, sess)
		}
		if err != nil {
			c.refuse(err)
		} else {
			resp.Key = c.r.Key
			c.out.put(resp)
			report() // after the answer: the client waits for that alone
			c.wg.Done()
		}
		c, l, sess, err = next.call, next.l, next.sess, nil
		if c != nil {
			// The lease, or its session, may have ended while the answer
			// went out (its send waits for a slow client): then the call
			// handed the slot, out of the line already, must not run.
			err = d.w.leases.holds(c.r.Lease, sess)
		}
	}
}

// refuse answers c with err: it did not run.
func (c *queuedCall) refuse(err error) {
	c.out.put(&pb.DirectCallResponse{Key: c.r.Key, Refused: err.Error()})
	c.wg.Done()
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

	// running counts the stream's calls that have not put their answer:
	// an answer with no other call running goes without a yield.
	running atomic.Int32
}

// put sends resp, or queues it for the call that is sending.
func (a *answers) put(resp *pb.DirectCallResponse) {
	others := a.running.Add(-1) > 0
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
	// Where other calls of the stream still run, those that ended with
	// this one (woken by the same read of their library's answers) run
	// first and queue their answers, to go in the same write. A lone call
	// sends at once: the yield cost it 25 µs at the median here (a yielded
	// goroutine goes to the global run queue, where another thread may
	// take it; docs/benchmarks.md, "A lone call's answer without the
	// yield").
	if others {
		a.mu.Unlock()
		runtime.Gosched()
		a.mu.Lock()
	}
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

// run runs one direct call, which holds a slot of lease l in session
// sess; report tells the manager it ended.
func (d directService) run(ctx context.Context, r *pb.DirectCallRequest, l workerLease, sess *session) (resp *pb.DirectCallResponse, report func(), err error) {
	inst := d.w.libs.get(l.instance)
	if inst == nil {
		return nil, nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("worker: library instance %d of lease %d is not running here: send the call through the manager", l.instance, r.Lease))
	}
	inst.calls.Add(1)
	defer inst.calls.Add(-1)
	o := callIn(ctx, inst, "", r.IdempotencyKey, l.library, r.Function, r.Args, time.Duration(r.TimeLimitMs)*time.Millisecond)
	if o == nil || o == handBack {
		return nil, nil, connect.NewError(connect.CodeUnavailable, errors.New("worker: the library instance ended while it had the call: send it through the manager"))
	}
	msg := &pb.WorkerMessage{Msg: &pb.WorkerMessage_DirectCallEnded{DirectCallEnded: &pb.DirectCallEnded{
		Lease: r.Lease, Session: l.session, Key: r.Key, Library: l.library, Function: r.Function,
		Kind: o.Kind, Message: o.Message, RunMs: o.RunMs, ResultBytes: int64(len(o.Result))}}}
	resp = &pb.DirectCallResponse{Outcome: o}
	if n := len(o.Result); n > maxDirectResult {
		// It ran (and is reported as such), but the answer cannot carry its
		// result: the client sends it through the manager.
		resp = &pb.DirectCallResponse{ResultTooLarge: int64(n)}
	}
	return resp, func() {
		for sess != nil && !sess.direct.put(msg) { // ended: to the next session of the run
			sess = d.w.leases.keep(msg, sess)
		}
	}, nil
}

// maxDirectResult bounds the result a direct call's answer carries: one
// encoded message, with room for the rest of it. For a larger one (a
// library may return up to 64 MiB) the answer says only its size
// (result_too_large): the client sends the call through the manager, whose
// path stores large results.
const maxDirectResult = proto.MaxMessageBytes - 64<<10

// withDirect serves Worker.Call and Worker.Calls (over HTTP/2, and framed)
// beside the cache's files.
func (w *Worker) withDirect(files http.Handler) http.Handler {
	d := directService{w}
	path, h := trellisv1connect.NewWorkerHandler(d,
		connect.WithReadMaxBytes(proto.MaxMessageBytes), connect.WithSendMaxBytes(proto.MaxMessageBytes), connect.WithCompressMinBytes(proto.CompressMinBytes))
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		switch {
		case req.URL.Path == framed.CallsPath:
			d.callsFramed(rw, req)
		case strings.HasPrefix(req.URL.Path, path):
			h.ServeHTTP(rw, req)
		default:
			files.ServeHTTP(rw, req)
		}
	})
}

// callsFramed serves a Calls stream on a connection of its own (package
// framed): an HTTP/1.1 request that asks to upgrade to framed.CallsUpgrade
// is answered 101, and the connection carries the calls and their answers
// as an HTTP/2 stream would, with fewer goroutine hand-offs per call in
// the worker (reader, then the call's own goroutine, which writes its
// answer). No secret is asked: each call carries its lease's token, checked
// as on HTTP/2; the stream's end carries a wrong token's error. The
// connection closes when the client closes it, the stream ends, or the
// worker stops (its server's Close does not see a connection handed over).
func (d directService) callsFramed(rw http.ResponseWriter, req *http.Request) {
	// Keepalives find a client whose host died (HTTP/2's server sent no
	// pings: such a stream lasted until the lease's end).
	conn, br, ok := framed.Accept(rw, req, framed.CallsUpgrade, proto.PingIdle)
	if !ok {
		return
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	defer context.AfterFunc(d.w.stopping, cancel)()
	defer context.AfterFunc(ctx, func() { conn.Close() })() // a Receive blocked on it returns
	stream := framed.New[*pb.DirectCallResponse, *pb.DirectCallRequest](conn, br, proto.MaxMessageBytes, proto.CompressMinBytes,
		func() *pb.DirectCallRequest { return new(pb.DirectCallRequest) })
	stream.End(d.calls(ctx, stream)) // a clean end (nil) once the client ended its side
}
