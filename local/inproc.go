package local

import (
	"context"
	"errors"

	"connectrpc.com/connect"
	goproto "google.golang.org/protobuf/proto"

	"trellis/internal/manager"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/proto/trellisv1/trellisv1connect"
)

// localRPC calls the manager's service in process. Requests whose parts the
// manager keeps are copied, as decoding them would; the others pass as they
// are.
type localRPC struct {
	trellisv1connect.ManagerHandler
}

func (l localRPC) Submit(ctx context.Context, req *connect.Request[pb.SubmitRequest]) (*connect.Response[pb.SubmitResponse], error) {
	return l.ManagerHandler.Submit(ctx, connect.NewRequest(goproto.Clone(req.Msg).(*pb.SubmitRequest)))
}

func (l localRPC) InstallLibrary(ctx context.Context, req *connect.Request[pb.InstallLibraryRequest]) (*connect.Response[pb.InstallLibraryResponse], error) {
	return l.ManagerHandler.InstallLibrary(ctx, connect.NewRequest(goproto.Clone(req.Msg).(*pb.InstallLibraryRequest)))
}

// localEvents is a session's event stream from a manager in process.
type localEvents struct {
	ch     chan *pb.TaskEvents
	done   chan struct{} // closed when the manager stopped sending; err is set
	err    error
	cur    *pb.TaskEvents
	cancel context.CancelFunc
}

func watchLocal(ctx context.Context, m *manager.Manager, req *pb.WatchRequest) *localEvents {
	ctx, cancel := context.WithCancel(ctx)
	e := &localEvents{ch: make(chan *pb.TaskEvents, 64), done: make(chan struct{}), cancel: cancel}
	go func() { // exits when ctx ends (Close) or the manager stops
		defer close(e.done)
		e.err = m.WatchEvents(ctx, req, func(ev *pb.TaskEvents) error {
			select {
			case e.ch <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if e.err == nil {
			e.err = errors.New("the manager stopped")
		}
	}()
	return e
}

func (e *localEvents) Receive() bool {
	select {
	case e.cur = <-e.ch:
		return true
	case <-e.done:
		select { // what was sent before the end is still due
		case e.cur = <-e.ch:
			return true
		default:
			return false
		}
	}
}

func (e *localEvents) Msg() *pb.TaskEvents { return e.cur }

func (e *localEvents) Err() error {
	select {
	case <-e.done:
		return e.err
	default:
		return nil
	}
}

func (e *localEvents) Close() error {
	e.cancel()
	<-e.done
	return nil
}
