package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

type attemptKey struct {
	task    uint64
	attempt uint32
}

// running is an attempt in progress, owned by the session loop.
type running struct {
	cancel   context.CancelFunc
	handBack bool // killed to be returned, not to be reported as done
	call     bool // a function call
}

// finished is what the attempts and library instances tell the session
// loop, in order on one channel: an attempt's end, or (msg) the end of a
// library instance, which must reach the manager after its calls' ends.
type finished struct {
	key     attemptKey
	outcome *pb.Outcome
	msg     *pb.WorkerMessage
	// libDead: a call whose library died meanwhile (it timed out and was
	// killed for not stopping). Its end goes with the library's, in one
	// message, so that no other call is sent to the dead instance between.
	libDead bool
}

// session holds one connection to the manager until it breaks, the worker
// is drained, or ctx ends. connected reports whether the manager welcomed it.
func (w *Worker) session(ctx context.Context) (connected bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream := w.openStream(sctx)
	if err := stream.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Hello{Hello: w.hello()}}); err != nil {
		return false, refusal(err, stream)
	}
	first, err := stream.Receive()
	if err != nil {
		return false, refusal(err, nil)
	}
	welcome := first.GetWelcome()
	if welcome == nil {
		return false, errors.New("manager did not welcome the worker")
	}
	w.log.Info("connected", "manager", w.cfg.Manager, "worker_id", welcome.WorkerId)

	out := make(chan *pb.WorkerMessage, 1024)
	in := make(chan *pb.ManagerMessage, 64)
	recvErr := make(chan error, 1)
	done := make(chan finished, 64)
	var wg sync.WaitGroup // attempts and the two stream goroutines
	wg.Add(2)
	go func() { // exits when the stream breaks or sctx ends
		defer wg.Done()
		for {
			msg, err := stream.Receive()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case in <- msg:
			case <-sctx.Done():
				return
			}
		}
	}()
	flushc := make(chan struct{})     // closed: send what is queued, then stop
	senderDone := make(chan struct{}) // closed when the sender has stopped
	go func() {                       // exits when sctx ends, a send fails, or flushc is closed and out is empty
		defer wg.Done()
		defer close(senderDone)
		for {
			select {
			case msg := <-out:
				if err := proto.SendQueued(msg, out, wrapWorkerBatch, stream.Send); err != nil {
					cancel()
					return
				}
			case <-flushc:
				for {
					select {
					case msg := <-out:
						if proto.SendQueued(msg, out, wrapWorkerBatch, stream.Send) != nil {
							return
						}
					default:
						return
					}
				}
			case <-sctx.Done():
				return
			}
		}
	}()
	post := func(msg *pb.WorkerMessage) {
		select {
		case out <- msg:
		case <-sctx.Done():
		}
	}

	attempts := make(map[attemptKey]*running)
	calls := 0 // attempts that are calls
	var held heldReports
	// reported settles an attempt that ended: reports from calls wait
	// while other calls run (see heldReports).
	reported := func(f finished) {
		if f.msg != nil { // a library's end: after what is held
			held.add(f.msg)
			held.flush(post)
			return
		}
		r := attempts[f.key]
		delete(attempts, f.key)
		if r != nil && r.call {
			calls--
		}
		full := false
		if msg := reportMessage(r, f); msg != nil {
			full = held.add(msg)
		}
		switch {
		case f.libDead && !full:
			// held until the library's end flushes it
		case r == nil || !r.call || calls == 0 || full:
			held.flush(post)
		default:
			held.arm()
		}
	}
	heartbeat := time.NewTicker(time.Duration(max(welcome.HeartbeatMs, 100)) * time.Millisecond)
	defer heartbeat.Stop()
	drainc := w.drainc
	var drainTimer <-chan time.Time
	draining := false
	handBackAll := func() {
		for _, r := range attempts {
			r.handBack = true
			r.cancel()
		}
	}
	// settle waits for every attempt to end, reporting each as the manager expects.
	settle := func() {
		for len(attempts) > 0 {
			reported(<-done)
		}
		held.flush(post)
	}
	finish := func(e error) (bool, error) {
		settle()
		close(flushc)
		select {
		case <-senderDone:
		case <-time.After(5 * time.Second):
		}
		// Cancelling now could drop reports still in flight: half-close,
		// and let the manager end the stream once it has read them.
		stream.CloseSend()
		select {
		case <-recvErr:
		case <-time.After(5 * time.Second):
		}
		cancel()
		wg.Wait()
		return true, e
	}

	// handle acts on one message from the manager.
	var handle func(msg *pb.ManagerMessage)
	handle = func(msg *pb.ManagerMessage) {
		switch x := msg.Msg.(type) {
		case *pb.ManagerMessage_Batch:
			for _, inner := range x.Batch.Msgs {
				handle(inner)
			}
		case *pb.ManagerMessage_Run:
			key := attemptKey{x.Run.TaskId, x.Run.Attempt}
			if draining || attempts[key] != nil {
				post(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Returned{Returned: &pb.AttemptReturned{TaskId: key.task, Attempt: key.attempt}}})
				return
			}
			actx, acancel := context.WithCancel(sctx)
			attempts[key] = &running{cancel: acancel, call: x.Run.Instance != 0}
			if x.Run.Instance != 0 {
				calls++
			}
			wg.Add(1)
			go func() { // exits when the attempt ends; actx bounds it
				defer wg.Done()
				defer acancel()
				var o *pb.Outcome
				cleanup := func() {}
				libDead := false
				if x.Run.Instance != 0 {
					inst := w.libs.get(x.Run.Instance)
					if inst != nil {
						inst.calls.Add(1)
						defer inst.calls.Add(-1) // after its end is in done
					}
					o = w.runCall(actx, x.Run, inst)
					libDead = inst != nil && inst.dead()
				} else {
					o, cleanup = w.runAttempt(actx, x.Run)
				}
				done <- finished{key: key, outcome: o, libDead: libDead}
				cleanup() // after reporting: the next task need not wait for it
			}()
		case *pb.ManagerMessage_Kill:
			if r := attempts[attemptKey{x.Kill.TaskId, x.Kill.Attempt}]; r != nil {
				r.cancel()
			}
		case *pb.ManagerMessage_Fetch:
			wg.Add(1)
			go func() { // exits when the fetch ends; sctx bounds it
				defer wg.Done()
				post(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Fetched{Fetched: w.fetch(sctx, x.Fetch)}})
				w.reportEvicted(post)
			}()
		case *pb.ManagerMessage_Unlink:
			if gone := w.unlink(x.Unlink.Names); len(gone) > 0 {
				post(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Dropped{Dropped: &pb.Dropped{Names: gone}}})
			}
		case *pb.ManagerMessage_StartLibrary:
			wg.Add(1)
			go func() { // exits when the instance ends or sctx does
				defer wg.Done()
				w.runLibrary(sctx, x.StartLibrary, post, func(end *pb.WorkerMessage) {
					select {
					case done <- finished{msg: end}:
					case <-sctx.Done():
					}
				})
			}()
		case *pb.ManagerMessage_StopLibrary:
			wg.Add(1)
			go func() { // exits within stopGrace; runLibrary reports the end
				defer wg.Done()
				w.stopLibrary(x.StopLibrary.Instance)
			}()
		case *pb.ManagerMessage_Upload:
			wg.Add(1)
			go func() { // exits when the upload ends; sctx bounds it
				defer wg.Done()
				if err := w.uploadCached(sctx, x.Upload.Name); err != nil {
					w.log.Warn("upload for the manager", "file", x.Upload.Name, "err", err)
				}
			}()
		}
	}

	for {
		if draining && len(attempts) == 0 {
			return finish(nil)
		}
		select {
		case msg := <-in:
			handle(msg)
		case f := <-done:
			reported(f)
			w.reportEvicted(post)
		case <-held.C:
			held.flush(post)
		case <-heartbeat.C:
			post(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Heartbeat{Heartbeat: &pb.Heartbeat{}}})
		case <-drainc:
			drainc = nil
			draining = true
			drainTimer = time.After(w.cfg.DrainTimeout)
			w.log.Info("draining", "running", len(attempts), "timeout", w.cfg.DrainTimeout)
			post(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Draining{Draining: &pb.Draining{}}})
		case <-drainTimer:
			w.log.Info("drain timeout: handing back", "running", len(attempts))
			handBackAll()
		case err := <-recvErr:
			// The manager has queued our attempts again: stop them.
			for _, r := range attempts {
				r.cancel()
			}
			for len(attempts) > 0 {
				f := <-done
				delete(attempts, f.key)
			}
			cancel()
			wg.Wait()
			if draining {
				return true, nil
			}
			return true, fmt.Errorf("lost the manager: %w", refusal(err, nil))
		case <-ctx.Done():
			handBackAll()
			return finish(ctx.Err())
		}
	}
}

// reportEvicted tells the manager which files the cache evicted to make room.
func (w *Worker) reportEvicted(post func(*pb.WorkerMessage)) {
	if gone := w.cache.Evicted(); len(gone) > 0 {
		post(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Dropped{Dropped: &pb.Dropped{Names: gone}}})
	}
}

// reportMessage says how an attempt ended, as the manager expects: nil
// for a call whose library died (the library's end settles it).
func reportMessage(r *running, f finished) *pb.WorkerMessage {
	if f.outcome == nil {
		return nil
	}
	if r != nil && r.handBack {
		return &pb.WorkerMessage{Msg: &pb.WorkerMessage_Returned{Returned: &pb.AttemptReturned{TaskId: f.key.task, Attempt: f.key.attempt}}}
	}
	return &pb.WorkerMessage{Msg: &pb.WorkerMessage_Done{Done: &pb.AttemptDone{TaskId: f.key.task, Attempt: f.key.attempt, Outcome: f.outcome}}}
}

// Stream is the worker's end of its connection to the manager.
type Stream interface {
	Send(*pb.WorkerMessage) error
	Receive() (*pb.ManagerMessage, error)
	CloseSend() error // no more messages from the worker; replies may follow
}

// openStream connects to the manager: over HTTP/2, or in process when
// Config.Connect says how.
func (w *Worker) openStream(ctx context.Context) Stream {
	if w.cfg.Connect != nil {
		return w.cfg.Connect(ctx)
	}
	stream := w.rpc.Work(ctx)
	w.authorize(stream.RequestHeader())
	return httpStream{stream}
}

// httpStream is a Work stream over HTTP/2.
type httpStream struct {
	*connect.BidiStreamForClient[pb.WorkerMessage, pb.ManagerMessage]
}

func (s httpStream) CloseSend() error { return s.CloseRequest() }

// refusal turns the manager's refusal into ErrRefused; other errors pass.
func refusal(err error, stream Stream) error {
	if stream != nil {
		// A failed Send hides the reason; Receive tells it.
		if _, rerr := stream.Receive(); rerr != nil {
			err = rerr
		}
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnauthenticated, connect.CodeInvalidArgument, connect.CodePermissionDenied:
		var ce *connect.Error
		if errors.As(err, &ce) {
			return fmt.Errorf("%w: %s", ErrRefused, ce.Message())
		}
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return err
}
