package local

import (
	"context"
	"errors"
	"time"

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
	events  *clients.Reader
	run     string // the manager's run ID
	started bool   // the first, empty message was returned
	cur     *pb.TaskEvents
	err     error // why the session's events ended, when the manager ended it
}

func watchLocal(ctx context.Context, m *manager.Manager, req *pb.WatchRequest) (*localEvents, error) {
	events, err := m.WatchSession(req.Session, req.After)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	return &localEvents{ctx: ctx, cancel: cancel, events: events, run: m.RunID()}, nil
}

// Receive returns an empty message first, as the Watch RPC does, then
// waits for events after the cursor.
func (e *localEvents) Receive() bool {
	if !e.started {
		e.started, e.cur = true, &pb.TaskEvents{Manager: e.run}
		return true
	}
	evs, err := e.events.Next(e.ctx)
	if err != nil {
		if e.ctx.Err() == nil {
			e.err = manager.SessionError(err) // the session ended
		}
		return false
	}
	e.cur = &pb.TaskEvents{Events: evs}
	return true
}

func (e *localEvents) Msg() *pb.TaskEvents { return e.cur }

func (e *localEvents) Err() error {
	if e.err != nil {
		return e.err
	}
	if e.ctx.Err() != nil {
		return errors.New("the event stream was closed")
	}
	return nil
}

func (e *localEvents) Close() error {
	e.cancel()
	e.events.Close(time.Now())
	return nil
}
