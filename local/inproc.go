package local

import (
	"context"
	"errors"

	"trellis/internal/manager"
	"trellis/internal/manager/clients"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/proto/trellisv1/trellisv1connect"
)

// localRPC calls the manager's service in process. Requests pass as they
// are: the manager builds its own records from them and never writes into
// them, and the client does not touch a request once sent.
type localRPC struct {
	trellisv1connect.ManagerHandler
}

// localEvents is a session's event stream from a manager in process. The
// client's watch goroutine reads the session's events itself, with no
// goroutine between it and the manager's loop.
type localEvents struct {
	ctx     context.Context
	cancel  context.CancelFunc
	session *clients.Session
	wake    <-chan struct{}
	stop    func()
	run     string // the manager's run ID
	cursor  uint64 // seq of the last event returned
	started bool   // the first, empty message was returned
	cur     *pb.TaskEvents
}

func watchLocal(ctx context.Context, m *manager.Manager, req *pb.WatchRequest) *localEvents {
	ctx, cancel := context.WithCancel(ctx)
	session := m.ClientSession(req.Session)
	session.Ack(req.After)
	wake, stop := session.Watch()
	return &localEvents{ctx: ctx, cancel: cancel, session: session, wake: wake, stop: stop, run: m.RunID(), cursor: req.After}
}

// Receive returns an empty message first, as the Watch RPC does, then
// waits for events after the cursor.
func (e *localEvents) Receive() bool {
	if !e.started {
		e.started, e.cur = true, &pb.TaskEvents{Manager: e.run}
		return true
	}
	for {
		if evs := e.session.After(e.cursor); len(evs) > 0 {
			e.cursor = evs[len(evs)-1].Seq
			e.cur = &pb.TaskEvents{Events: evs}
			return true
		}
		select {
		case <-e.wake:
		case <-e.ctx.Done():
			return false
		}
	}
}

func (e *localEvents) Msg() *pb.TaskEvents { return e.cur }

func (e *localEvents) Err() error {
	if e.ctx.Err() != nil {
		return errors.New("the event stream was closed")
	}
	return nil
}

func (e *localEvents) Close() error {
	e.cancel()
	e.stop()
	return nil
}
