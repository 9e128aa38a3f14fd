package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/core"
	"trellis/internal/framed"
	"trellis/internal/inproc"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// outboundLimit bounds the messages queued to one worker. A worker that
// falls this far behind is disconnected rather than allowed to block the loop.
const outboundLimit = 1 << 16

// session is one connected worker's stream.
type session struct {
	id    core.WorkerID // set by the loop
	hello *pb.Hello
	addr  string
	since time.Time
	out   outQueue
	// fileServer is where the worker serves its cache to peers (host:port),
	// "" if it serves none. Set by the loop.
	fileServer string
	leaseKey   []byte // of its lease tokens (direct.go), set before it joins
	// certHost names the worker's file server in its certificate (with a
	// Config.PeerCA); certRenew is when the loop gives it a new one
	// (renewPeerCerts). Set before the loop sees the session, then the
	// loop's.
	certHost  string
	certRenew time.Time

	closeOnce sync.Once
	closed    chan struct{}
	reason    atomic.Value // string
	lastSeen  atomic.Int64 // Unix nanoseconds of the worker's last message; the liveness sweep reads it
	// pings: its stream has no pings of its own (framed): the liveness
	// sweep pings it after proto.PingIdle of silence (pinged: the
	// lastSeen it pinged for) and loses it proto.PingTimeout later.
	pings    bool
	pinged   atomic.Int64
	pingedAt atomic.Int64 // Unix nanoseconds of that ping
}

// enqueue queues msg for the worker without blocking, and without waking
// its sender (wake does that); on overflow it closes the session. first
// says msg is the first queued since the last wake: the caller wakes the
// sender once it has queued what the current event makes.
func (s *session) enqueue(msg *pb.ManagerMessage) (first bool) {
	first, ok := s.out.push(msg)
	if !ok {
		s.close(fmt.Sprintf("outbound queue full (%d messages): worker too slow", outboundLimit))
	}
	return first
}

// enqueue queues msg for the worker of sess; its sender is woken by
// wakeSenders, once the loop has handled the event.
func (s *state) enqueue(sess *session, msg *pb.ManagerMessage) {
	if sess.enqueue(msg) {
		s.unwoken = append(s.unwoken, sess)
	}
}

// wakeSenders wakes the sender of every session that had messages queued
// since the last wake, and the watchers of every client session that had
// events put: what one step tells a client leaves in one Watch message.
func (s *state) wakeSenders() {
	for i, sess := range s.unwoken {
		sess.out.wake()
		s.unwoken[i] = nil
	}
	s.unwoken = s.unwoken[:0]
	s.m.clients.Wake()
}

// outQueue is a session's outbound queue: a slice that grows with what is
// queued (not a channel of outboundLimit slots, which every idle worker
// would hold and every garbage collection would scan), and a signal.
// A push does not signal: the loop wakes the sender once it has handled
// the event, so that what one step queues for a worker (the runs of a
// submit, the runs answering a batch of reports) leaves in one write (a
// ManagerBatch) instead of one each.
type outQueue struct {
	ready chan struct{} // a token once woken with msgs not empty

	mu     sync.Mutex
	msgs   []*pb.ManagerMessage // guarded by mu
	unwoke bool                 // msgs were pushed since the last wake; guarded by mu
}

func newOutQueue() outQueue { return outQueue{ready: make(chan struct{}, 1)} }

// push queues msg; ok is false when outboundLimit messages are queued
// already. first: nothing was pushed since the last wake.
func (q *outQueue) push(msg *pb.ManagerMessage) (first, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.msgs) >= outboundLimit {
		return false, false
	}
	q.msgs = append(q.msgs, msg)
	first, q.unwoke = !q.unwoke, true
	return first, true
}

// wake tells the sender that messages are queued.
func (q *outQueue) wake() {
	q.mu.Lock()
	q.unwoke = false
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take returns what is queued, in order, and empties the queue.
func (q *outQueue) take() []*pb.ManagerMessage {
	q.mu.Lock()
	defer q.mu.Unlock()
	msgs := q.msgs
	q.msgs = nil
	return msgs
}

func (s *session) close(reason string) {
	s.closeOnce.Do(func() {
		s.reason.Store(reason)
		close(s.closed)
	})
}

func wrapManagerBatch(msgs []*pb.ManagerMessage) *pb.ManagerMessage {
	return &pb.ManagerMessage{Msg: &pb.ManagerMessage_Batch{Batch: &pb.ManagerBatch{Msgs: slices.Clone(msgs)}}}
}

// workStream is the manager's end of a worker's stream: HTTP/2, or in
// process for an embedded worker (ConnectWorker).
type workStream interface {
	Receive() (*pb.WorkerMessage, error)
	Send(*pb.ManagerMessage) error
}

// ConnectWorker joins a worker in this process to the manager without the
// network: it returns the worker's end of a stream served like one over
// HTTP/2 (the same hello, messages and faults; no secret, as the process
// is the same). The stream ends when ctx does or the manager drops it.
func (m *Manager) ConnectWorker(ctx context.Context) *inproc.End[*pb.WorkerMessage, *pb.ManagerMessage] {
	workerEnd, managerEnd := inproc.Pipe[*pb.WorkerMessage, *pb.ManagerMessage]()
	go func() { // exits when the session ends
		defer managerEnd.Close()
		m.work(ctx, managerEnd, "127.0.0.1:0")
	}()
	return workerEnd
}

// work serves one worker's stream (from addr): hello, then messages both
// ways until the stream breaks, heartbeats stop, or the loop closes the
// session.
func (m *Manager) work(ctx context.Context, stream workStream, addr string) error {
	first, err := receiveWithin(ctx, stream, helloTimeout)
	if err != nil {
		// Not a refusal: the worker tries again.
		return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("read hello: %w", err))
	}
	hello := first.GetHello()
	if err := proto.CheckHello(hello); err != nil {
		m.log.Warn("refused a worker", "peer", addr, "err", err)
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	_, framed := stream.(aborter)
	sess := &session{hello: hello, addr: addr, since: time.Now(), leaseKey: newLeaseKey(),
		out: newOutQueue(), closed: make(chan struct{}), pings: framed}
	host, certPEM, keyPEM, certErr := m.peerCertificate(hello, addr)
	if certErr == nil && certPEM != nil {
		sess.certHost, sess.certRenew = host, time.Now().Add(m.peerCertLife()/2)
	}
	id, err := m.join(ctx, sess)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The welcome goes alone and first: what the loop queued meanwhile
	// (runs, fetches) would otherwise go in one batch with it.
	welcome := &pb.ManagerMessage{Msg: &pb.ManagerMessage_Welcome{Welcome: &pb.Welcome{
		WorkerId: uint64(id), HeartbeatMs: m.cfg.Heartbeat.Milliseconds(), RunId: m.runID, Epoch: m.epoch, LeaseKey: sess.leaseKey}}}
	if certErr != nil {
		m.log.Warn("worker's file server certificate", "worker", id, "err", certErr) // its peers' fetches from it fail and go elsewhere
	} else if certPEM != nil {
		w := welcome.GetWelcome()
		w.TlsCertPem, w.TlsKeyPem, w.TlsCaPem = certPEM, keyPEM, m.cfg.PeerCA.PEM()
	}
	if err := stream.Send(welcome); err != nil {
		sendCtx, stop := context.WithTimeout(context.Background(), time.Second)
		m.send(sendCtx, evWorkerGone{id: id, reason: fmt.Sprintf("send failed: %v", err)})
		stop()
		return nil
	}

	sess.lastSeen.Store(time.Now().UnixNano())
	m.live.add(sess)
	defer m.live.remove(sess)
	recvErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // exits when the stream breaks or ctx ends
		defer wg.Done()
		for {
			msg, err := stream.Receive()
			if err != nil {
				recvErr <- err
				return
			}
			if ctx.Err() != nil {
				// The session was closed (a silent worker, lost): this
				// return ends the stream, so that a worker that was only
				// cut off or stopped, and speaks again, sees it and joins
				// anew. Heartbeats alone would keep it talking to nobody.
				return
			}
			sess.lastSeen.Store(time.Now().UnixNano())
			if msg.GetHeartbeat() != nil {
				continue // it only says the worker lives: lastSeen is all it changes
			}
			m.store.checkReport(msg) // disk work here, not on the loop
			if m.send(ctx, evWorkerMsg{id: id, msg: msg}) != nil {
				return
			}
		}
	}()

	// A silent worker's session is closed by the liveness sweep (one
	// timer for every worker, liveness.go).
	reason := ""
loop:
	for {
		select {
		case <-sess.out.ready:
			if err := proto.SendBatched(sess.out.take(), wrapManagerBatch, stream.Send); err != nil {
				reason = fmt.Sprintf("send failed: %v", err)
				break loop
			}
		case err := <-recvErr:
			reason = describeStreamEnd(err)
			break loop
		case <-sess.closed:
			reason = sess.reason.Load().(string)
			break loop
		case <-ctx.Done():
			reason = "connection closed"
			select {
			case <-m.stopping:
				reason = "manager stopping"
			default:
			}
			break loop
		}
	}
	cancel()
	if a, ok := stream.(aborter); ok {
		a.Abort() // its receiving goroutine waits on the connection
	}
	// The loop may be gone when the manager stops; then nobody needs to know.
	sendCtx, stop := context.WithTimeout(context.Background(), time.Second)
	m.send(sendCtx, evWorkerGone{id: id, reason: reason})
	stop()
	wg.Wait()
	return nil
}

// helloTimeout is how long a new stream may take to say hello.
const helloTimeout = 10 * time.Second

// joinTimeout is how long a hello waits for the loop to take it before
// the worker is told to come back later. A variable for tests.
var joinTimeout = 10 * time.Second

// join hands a worker's hello to the loop and returns its ID. A loop too
// busy to take the hello within joinTimeout answers Unavailable, which
// the worker retries after a backoff; once taken, the reply always comes
// (the loop answers every join), so no session is left registered
// without its stream.
func (m *Manager) join(ctx context.Context, sess *session) (core.WorkerID, error) {
	reply := make(chan core.WorkerID, 1)
	t := time.NewTimer(joinTimeout)
	defer t.Stop()
	select {
	case m.events <- evWorkerJoin{sess: sess, reply: reply}:
	case <-t.C:
		return 0, connect.NewError(connect.CodeUnavailable,
			fmt.Errorf("manager busy: the hello of worker %q waited %s to be taken; try again later", sess.hello.Name, joinTimeout))
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case id := <-reply:
		return id, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func describeStreamEnd(err error) string {
	if errors.Is(err, context.Canceled) {
		return "connection closed"
	}
	var ce *connect.Error
	if errors.As(err, &ce) && ce.Code() == connect.CodeResourceExhausted {
		return "oversized message: " + ce.Message()
	}
	if errors.Is(err, framed.ErrTooLarge) {
		return "oversized message: " + err.Error()
	}
	if errors.Is(err, io.EOF) {
		return "connection closed"
	}
	return fmt.Sprintf("connection lost: %v", err)
}

// receiveWithin reads one message, giving up after d.
func receiveWithin(ctx context.Context, stream workStream, d time.Duration) (*pb.WorkerMessage, error) {
	type result struct {
		msg *pb.WorkerMessage
		err error
	}
	ch := make(chan result, 1)
	go func() { // exits when Receive returns; the handler's return ends the stream
		msg, err := stream.Receive()
		ch <- result{msg, err}
	}()
	select {
	case r := <-ch:
		return r.msg, r.err
	case <-time.After(d):
		return nil, fmt.Errorf("no hello within %s", d)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
