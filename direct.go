package trellis

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/framed"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/proto/trellisv1/trellisv1connect"
)

// WithDirectCalls makes Client.Call send a call straight to the worker
// that hosts a ready instance of its library, once the manager has lent
// this client's session slots there (a lease): one round trip to the worker
// instead of four hops through the manager, which still learns and counts
// each call's end (docs/direct-calls.md). A call goes through the manager
// as before when no leased slot is free, when the manager lends none (calls
// of the library wait there, or no instance is ready yet), and when the
// direct call fails on the way (the worker lost, the lease ended): then
// with the same key, so that it runs again as its annotations allow. A
// Submit of plain calls of one library goes on leases too (Submit). Off by
// default.
func WithDirectCalls() Option {
	return func(c *Client) {
		c.direct = &directCalls{leases: make(map[string]*clientLease), extra: make(map[string][]*clientLease), asked: make(map[string]time.Time)}
	}
}

// leaseSlots is how many slots a client asks for on one lease.
const leaseSlots = 64

// leaseBackoff is how long a client waits before asking again for a lease
// on a library after the manager lent none or a lease failed.
const leaseBackoff = 500 * time.Millisecond

// directCalls is a client's leases: one per library for Call and Submit,
// and more for Submits, on the library's other instances.
type directCalls struct {
	mu     sync.Mutex
	leases map[string]*clientLease   // by library
	extra  map[string][]*clientLease // by library: Submits' further leases
	asked  map[string]time.Time      // by library: no further lease asked for until then
	http   *http.Client
	keys   atomic.Uint64
	// framedRefused holds the addresses of workers that answered that they
	// have no framed Calls stream (an older version): lease streams to
	// them go over HTTP/2 from then on; to others, framed still.
	framedRefused sync.Map // worker address → struct{}
	// Streams opened framed and over HTTP/2 (tests).
	framedStreams, http2Streams atomic.Uint64
	pumps                       sync.WaitGroup // the pumps of Submits on leases (directsubmit.go): Add under mu, while not closed
	closed                      bool           // by close: no lease taken, stream opened or pump started after
	// Counts, for tests and benchmarks.
	sent, fellBack atomic.Uint64
}

type clientLease struct {
	id      uint64
	token   string
	rpc     *callStream // nil until granted
	slots   int32
	busy    int32
	freed   chan struct{} // closed when a slot frees; made when a Submit's pump waits for one
	asking  bool          // a Lease request is on its way
	dropped bool          // by drop: its calls go through the manager
	retry   time.Time     // no lease (or a failed one) until then
}

// DirectStats says how many calls this client sent straight to a worker,
// and how many of those went through the manager after all.
func (c *Client) DirectStats() (sent, fellBack uint64) {
	if c.direct == nil {
		return 0, 0
	}
	return c.direct.sent.Load(), c.direct.fellBack.Load()
}

// take returns a lease of library with a free slot (counted busy), or nil
// if the call is to go through the manager.
func (d *directCalls) take(ctx context.Context, c *Client, library string) *clientLease {
	l, _ := d.takeOrQueue(ctx, c, library, false)
	return l
}

// takeOrQueue is take; with queue, a lease held with no slot free is
// returned too (held 0), for a Submit's calls to wait for its slots.
func (d *directCalls) takeOrQueue(ctx context.Context, c *Client, library string, queue bool) (l *clientLease, held int32) {
	d.mu.Lock()
	l = d.leases[library]
	switch {
	case d.closed:
		d.mu.Unlock()
		return nil, 0 // the manager's path says the client closed
	case l == nil:
		l = &clientLease{}
		d.leases[library] = l
	case l.rpc != nil && l.busy < l.slots:
		l.busy++
		d.mu.Unlock()
		return l, 1
	case l.rpc != nil && queue:
		d.mu.Unlock()
		return l, 0
	}
	if l.rpc != nil || l.asking || time.Now().Before(l.retry) {
		d.mu.Unlock()
		return nil, 0 // all its slots busy, or a lease asked for or refused lately
	}
	l.asking = true
	d.mu.Unlock()
	resp, err := c.rpc.Lease(ctx, connect.NewRequest(&pb.LeaseRequest{Session: c.session, Library: library, Slots: leaseSlots}))
	d.mu.Lock()
	defer d.mu.Unlock()
	l.asking = false
	if err != nil {
		c.log.Debug("no lease: calls go through the manager", "library", library, "err", err)
		l.retry = time.Now().Add(leaseBackoff)
		return nil, 0
	}
	if d.closed {
		return nil, 0 // close collected the streams: open none (the session's end ends the lease)
	}
	d.openLocked(c, l, resp.Msg)
	l.busy = 1
	return l, 1
}

// openLocked makes l the lease r grants, with its stream (d.mu held).
func (d *directCalls) openLocked(c *Client, l *clientLease, r *pb.LeaseResponse) {
	scheme := "http://"
	if c.tls != nil {
		scheme = "https://"
	}
	l.id, l.token, l.slots = r.Lease, r.Token, r.Slots
	w := trellisv1connect.NewWorkerClient(d.client(c), scheme+r.WorkerAddr,
		connect.WithReadMaxBytes(proto.MaxMessageBytes), connect.WithSendMaxBytes(proto.MaxMessageBytes), connect.WithCompressMinBytes(proto.CompressMinBytes))
	l.rpc = openCallStream(func(ctx context.Context) (callConn, error) { return d.dialCalls(ctx, c, r.WorkerAddr, w) })
}

// callsKeepIdle is how long a framed Calls stream may be silent before
// keepalives probe it: a dead worker's host is then found after about 18 s
// (15 s idle, two probes 1.5 s apart: set, not measured), as the HTTP/2
// client's pings found it after 15 s and 10 s more.
const callsKeepIdle = 15 * time.Second

// dialCalls opens a lease's Calls stream to the worker at addr: on a
// connection of its own (package framed: fewer goroutine hand-offs per call
// on both ends than an HTTP/2 stream), or over HTTP/2 (w) with a worker
// that does not serve it (an older version), and with that worker from
// then on. The stream ends when ctx does.
func (d *directCalls) dialCalls(ctx context.Context, c *Client, addr string, w trellisv1connect.WorkerClient) (callConn, error) {
	if _, refused := d.framedRefused.Load(addr); !refused {
		cfg := c.tls.Clone()
		if cfg != nil {
			cfg.ServerName = "" // the worker's address (Dial names it), not the manager's
		}
		conn, br, err := framed.Dial(ctx, addr, cfg, framed.CallsPath, framed.CallsUpgrade, http.Header{}, callsKeepIdle)
		if err == nil {
			d.framedStreams.Add(1)
			return framedCalls{framed.New[*pb.DirectCallRequest, *pb.DirectCallResponse](conn, br, proto.MaxMessageBytes, proto.CompressMinBytes,
				func() *pb.DirectCallResponse { return new(pb.DirectCallResponse) })}, nil
		}
		if connect.CodeOf(err) != connect.CodeUnimplemented {
			return nil, err
		}
		d.framedRefused.Store(addr, struct{}{})
		c.log.Info("the worker does not serve framed call streams (an older version): direct calls go over HTTP/2", "worker", addr)
	}
	d.http2Streams.Add(1)
	return w.Calls(ctx), nil
}

// callConn is a lease's Calls stream, as connect's HTTP/2 stream has it.
type callConn interface {
	Send(*pb.DirectCallRequest) error
	Receive() (*pb.DirectCallResponse, error)
	CloseRequest() error  // no more calls: the worker ends the stream once it answered those it has
	CloseResponse() error // frees the stream, after its end
}

// framedCalls is a Calls stream on a connection of its own.
type framedCalls struct {
	*framed.Stream[*pb.DirectCallRequest, *pb.DirectCallResponse]
}

func (s framedCalls) CloseRequest() error  { return s.End(nil) }
func (s framedCalls) CloseResponse() error { return s.Close() }

// maxExtraLeases bounds the further leases a client holds on a library.
const maxExtraLeases = 15

// extraLeases returns the further leases of library for a Submit of n
// calls, having asked the manager for more, on other instances, while a
// Submit has more calls than the leases' windows hold and the manager
// lends them (it asks again only leaseBackoff after a refusal).
func (d *directCalls) extraLeases(ctx context.Context, c *Client, library string, n int, first *clientLease) []*clientLease {
	d.mu.Lock()
	defer d.mu.Unlock()
	room := leaseWindow * first.slots
	for _, l := range d.extra[library] {
		room += leaseWindow * l.slots
	}
	for !d.closed && int(room) < n && len(d.extra[library]) < maxExtraLeases && !time.Now().Before(d.asked[library]) {
		d.mu.Unlock()
		resp, err := c.rpc.Lease(ctx, connect.NewRequest(&pb.LeaseRequest{Session: c.session, Library: library, Slots: leaseSlots}))
		d.mu.Lock()
		if err != nil {
			d.asked[library] = time.Now().Add(leaseBackoff)
			break
		}
		if d.closed {
			break // close collected the streams: open none
		}
		l := &clientLease{}
		d.openLocked(c, l, resp.Msg)
		d.extra[library] = append(d.extra[library], l)
		room += leaseWindow * l.slots
	}
	return slices.Clone(d.extra[library])
}

// callStream is a lease's Worker.Calls stream: calls go out as they come,
// and one goroutine hands each result to the call waiting for its key.
//
// Calls that come while another caller is sending queue behind it, and
// that caller sends them too, packed into one message (DirectCallRequest's
// more): a lone call goes at once, with no hand-off to another goroutine,
// and a burst of concurrent calls costs one write instead of one each.
//
// The stream is opened (dialled) by its receive goroutine: a caller that
// comes first waits for it, not the lock its lease was taken under.
type callStream struct {
	smu     sync.Mutex        // guards stream.Send and CloseRequest: the writer's, held across them alone
	ready   chan struct{}     // closed once the stream is open, or failed to open (stream nil)
	stream  callConn          // written before ready is closed
	mu      sync.Mutex        // guards waiting, broken, queue, sending
	waiting map[string]waiter // by key
	broken  bool
	queue   []*pb.DirectCallRequest // calls for the caller that is sending
	sending bool                    // a caller sends the queue, until it is empty
	cancel  context.CancelFunc      // ends the stream at once (stop)
	done    chan struct{}           // closed when receive returns
}

// waiter is a call waiting for its answer: done(i, answer) is called once,
// with a nil answer if the stream broke, from the stream's receive
// goroutine (or a sender's); it must not block.
type waiter struct {
	done func(i int, resp *pb.DirectCallResponse)
	i    int
}

// openCallStream returns a stream that dial opens; the stream ends when
// dial's context does.
func openCallStream(dial func(context.Context) (callConn, error)) *callStream {
	ctx, cancel := context.WithCancel(context.Background())
	s := &callStream{ready: make(chan struct{}), waiting: make(map[string]waiter), cancel: cancel, done: make(chan struct{})}
	go s.receive(ctx, dial) // exits when the stream ends: it failed to open, the worker ends it (after close), or stop
	return s
}

func (s *callStream) receive(ctx context.Context, dial func(context.Context) (callConn, error)) {
	defer close(s.done)
	defer s.cancel() // the stream ended: free its context
	stream, err := dial(ctx)
	s.stream = stream
	close(s.ready)
	if err != nil {
		s.mu.Lock()
		waiting := s.breakLocked()
		s.mu.Unlock()
		failAll(waiting) // they go through the manager
		return
	}
	for {
		resp, err := s.stream.Receive()
		if err != nil {
			s.mu.Lock()
			waiting := s.breakLocked()
			s.mu.Unlock()
			failAll(waiting)
			s.stream.CloseResponse()
			return
		}
		more := resp.More
		resp.More = nil
		s.answer(resp)
		for _, r := range more {
			s.answer(r)
		}
	}
}

// answer hands resp to the call waiting for it, if any still does.
func (s *callStream) answer(resp *pb.DirectCallResponse) {
	s.mu.Lock()
	w, ok := s.waiting[resp.Key]
	delete(s.waiting, resp.Key)
	s.mu.Unlock()
	if ok {
		w.done(w.i, resp)
	}
}

// breakLocked marks the stream broken and returns the calls still waiting
// on it, for the caller to fail once s.mu is released (failAll): they go
// through the manager.
func (s *callStream) breakLocked() []waiter {
	s.broken = true
	s.queue = nil
	waiting := make([]waiter, 0, len(s.waiting))
	for k, w := range s.waiting {
		waiting = append(waiting, w)
		delete(s.waiting, k)
	}
	return waiting
}

// failAll tells calls that their stream broke.
func failAll(waiting []waiter) {
	for _, w := range waiting {
		w.done(w.i, nil)
	}
}

// call sends req and waits for its answer: nil if the stream broke or ctx
// ended first.
func (s *callStream) call(ctx context.Context, req *pb.DirectCallRequest) *pb.DirectCallResponse {
	ch := make(chan *pb.DirectCallResponse, 1)
	if !s.send([]*pb.DirectCallRequest{req}, func(_ int, r *pb.DirectCallResponse) { ch <- r }, 0) {
		return nil
	}
	select {
	case resp := <-ch:
		return resp
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.waiting, req.Key)
		s.mu.Unlock()
		return nil
	}
}

// send sends reqs (in one message with what others queue meanwhile, when
// this caller is the one to send) and calls done(first+i, answer) with the
// answer to reqs[i] as it comes, or with nil if the stream breaks first
// (see waiter). It reports false, having sent nothing, when the stream is
// broken already.
func (s *callStream) send(reqs []*pb.DirectCallRequest, done func(int, *pb.DirectCallResponse), first int) bool {
	s.mu.Lock()
	if s.broken {
		s.mu.Unlock()
		return false
	}
	for i, r := range reqs {
		s.waiting[r.Key] = waiter{done: done, i: first + i}
	}
	s.queue = append(s.queue, reqs...)
	lead := !s.sending
	s.sending = true
	s.mu.Unlock()
	if lead {
		s.sendQueued()
	}
	return true
}

// sendQueued sends what is queued, packed, until the queue is empty; the
// caller set s.sending.
func (s *callStream) sendQueued() {
	var failed []waiter
	s.mu.Lock()
	for len(s.queue) > 0 && !s.broken {
		q := s.queue
		s.queue = nil
		s.mu.Unlock()
		<-s.ready
		err := errNotOpen
		if s.stream != nil {
			s.smu.Lock()
			err = proto.SendBatched(q, packRequests, s.stream.Send)
			s.smu.Unlock()
		}
		s.mu.Lock()
		if err != nil {
			failed = s.breakLocked()
		}
	}
	s.sending = false
	s.mu.Unlock()
	failAll(failed)
}

// packRequests makes one message of several calls.
func packRequests(reqs []*pb.DirectCallRequest) *pb.DirectCallRequest {
	first := reqs[0]
	first.More = slices.Clone(reqs[1:])
	return first
}

// errNotOpen is the send's error on a stream that failed to open.
var errNotOpen = errors.New("the call stream to the worker did not open")

// close ends the stream's request side: the worker finishes the calls it
// runs, then ends the stream. A stream still opening is abandoned: its
// calls go through the manager.
func (s *callStream) close() {
	s.mu.Lock()
	s.broken = true
	s.mu.Unlock()
	select {
	case <-s.ready:
	default:
		s.cancel()
		return
	}
	if s.stream == nil {
		return
	}
	s.smu.Lock()
	defer s.smu.Unlock()
	s.stream.CloseRequest()
}

// stop ends the stream now and waits for its receive goroutine: the calls
// still waiting on it go through the manager.
func (s *callStream) stop() {
	s.close()
	s.cancel()
	<-s.done
}

// client returns the HTTP/2 client for workers (d.mu held).
func (d *directCalls) client(c *Client) *http.Client {
	if d.http == nil {
		protocols := new(http.Protocols)
		cfg := c.tls.Clone()
		if cfg != nil {
			protocols.SetHTTP2(true)
			cfg.ServerName = "" // the worker's address, not the manager's
		} else {
			protocols.SetUnencryptedHTTP2(true)
		}
		d.http = &http.Client{Transport: &http.Transport{Protocols: protocols, DialContext: dialer.DialContext, TLSClientConfig: cfg,
			HTTP2: &http.HTTP2Config{SendPingTimeout: 15 * time.Second, PingTimeout: 10 * time.Second}}}
	}
	return d.http
}

// markClosed stops the client's calls from taking leases, opening streams
// or starting pumps: they go the manager's way, which says the client
// closed.
func (d *directCalls) markClosed() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
}

// close ends the client's lease streams and waits for its Submits' pumps;
// after it, no lease is taken, no stream opened and no pump started.
func (d *directCalls) close() {
	d.mu.Lock()
	d.closed = true
	streams := d.streamsLocked()
	hc := d.http
	d.mu.Unlock()
	for _, s := range streams { // no lock held across their I/O
		s.stop()
	}
	d.pumps.Wait() // the client's gone is closed: they return
	if hc != nil {
		hc.CloseIdleConnections()
	}
}

// streamsLocked returns the streams of the client's leases (d.mu held).
func (d *directCalls) streamsLocked() []*callStream {
	var streams []*callStream
	for _, l := range d.leases {
		if l.rpc != nil {
			streams = append(streams, l.rpc)
		}
	}
	for _, ls := range d.extra {
		for _, l := range ls {
			streams = append(streams, l.rpc)
		}
	}
	return streams
}

// give frees the slot of l; failed drops the lease (drop).
func (d *directCalls) give(library string, l *clientLease, failed bool) (dropped bool) {
	d.mu.Lock()
	l.freeLocked(1)
	d.mu.Unlock()
	return failed && d.drop(library, l)
}

// drop drops the lease l of library, so that the next calls ask anew. It
// reports whether it dropped it (the first to fail on it), for the caller
// to release it at the manager (release).
func (d *directCalls) drop(library string, l *clientLease) bool {
	d.mu.Lock()
	dropped := !l.dropped
	l.dropped = true
	if d.leases[library] == l {
		d.leases[library] = &clientLease{retry: time.Now().Add(leaseBackoff)}
	} else if i := slices.Index(d.extra[library], l); i >= 0 {
		d.extra[library] = slices.Delete(d.extra[library], i, i+1)
	}
	d.mu.Unlock()
	if dropped {
		l.rpc.close() // no lock held across its I/O
	}
	return dropped
}

// release ends lease l of library at the manager: its slots go back now,
// not when it expires.
func (c *Client) release(library string, l *clientLease) {
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	c.rpc.Lease(rctx, connect.NewRequest(&pb.LeaseRequest{Session: c.session, Library: library, Release: l.id}))
	cancel()
}

// callDirect runs a call on a lease. ok is false when the call is to go
// through the manager: no lease; key is then its key ("" for a new one).
func (c *Client) callDirect(ctx context.Context, library, function string, args []byte) (out []byte, err error, key string, ok bool) {
	d := c.direct
	l := d.take(ctx, c, library)
	if l == nil {
		return nil, nil, "", false
	}
	key = "direct-" + strconv.FormatUint(d.keys.Add(1), 10)
	d.sent.Add(1)
	resp := l.rpc.call(ctx, &pb.DirectCallRequest{Lease: l.id, Token: l.token, Key: key,
		Function: function, Args: args, IdempotencyKey: c.session + "/" + key})
	if resp == nil && ctx.Err() != nil {
		// The caller gave up: the lease and its stream stay for the others
		// (the worker finishes the call and reports it).
		d.give(library, l, false)
		return nil, ctx.Err(), key, true
	}
	if n := resp.GetResultTooLarge(); n > 0 {
		// It ran, but its result is over what an answer carries: the call
		// alone goes through the manager; the lease stays.
		d.give(library, l, false)
		c.log.Info("direct call's result too large for its answer: it runs again through the manager", "library", library, "function", function, "key", key, "result_bytes", n)
		d.fellBack.Add(1)
		return nil, nil, key, false
	}
	// The stream broke or the worker refused the call: the lease goes.
	failed := resp == nil || resp.Refused != ""
	if d.give(library, l, failed) {
		c.release(library, l)
	}
	if failed {
		if ctx.Err() != nil {
			return nil, ctx.Err(), key, true
		}
		c.log.Info("direct call failed on the way: it goes through the manager", "library", library, "function", function, "key", key, "refused", resp.GetRefused())
		d.fellBack.Add(1)
		return nil, nil, key, false
	}
	o := resp.GetOutcome()
	if o.GetKind() == pb.ResultKind_RESULT_KIND_SUCCESS {
		return o.GetResult(), nil, key, true
	}
	return nil, &CallError{Result: directResult(library+"."+function, o)}, key, true
}

// DirectLeases says how many leases this client holds on library, for
// tests and benchmarks.
func (c *Client) DirectLeases(library string) int {
	if c.direct == nil {
		return 0
	}
	d := c.direct
	d.mu.Lock()
	defer d.mu.Unlock()
	n := len(d.extra[library])
	if l := d.leases[library]; l != nil && l.rpc != nil {
		n++
	}
	return n
}
