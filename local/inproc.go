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
	events  *clients.Reader
	run     string // the manager's run ID
	started bool   // the first, empty message was returned
	cur     *pb.TaskEvents
}

func watchLocal(ctx context.Context, m *manager.Manager, req *pb.WatchRequest) *localEvents {
	ctx, cancel := context.WithCancel(ctx)
	return &localEvents{ctx: ctx, cancel: cancel, events: m.ClientSession(req.Session).Read(req.After), run: m.RunID()}
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
		return false
	}
	e.cur = &pb.TaskEvents{Events: evs}
	return true
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
	e.events.Close()
	return nil
}
