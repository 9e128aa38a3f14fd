package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"connectrpc.com/connect"
	goproto "google.golang.org/protobuf/proto"

	"trellis/internal/manager/clients"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/proto/trellisv1/trellisv1connect"
)

// service implements the connect handler on top of the loop.
type service struct{ m *Manager }

// Handler returns the manager's RPC service, for a client in this process
// to call without the network (its unary methods; see WatchEvents and
// ConnectWorker for the streams).
func (m *Manager) Handler() trellisv1connect.ManagerHandler { return &service{m: m} }

func (s *service) Submit(ctx context.Context, req *connect.Request[pb.SubmitRequest]) (*connect.Response[pb.SubmitResponse], error) {
	resp, err := s.submit(ctx, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

// Submits answers each submit on the stream in order, as Submit would,
// until the client closes it; a refused submit ends the stream with
// Submit's error.
func (s *service) Submits(ctx context.Context, stream *connect.BidiStream[pb.SubmitRequest, pb.SubmitResponse]) error {
	for {
		req, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp, err := s.submit(ctx, req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// submit hands a checked submit to the loop and returns its task IDs.
func (s *service) submit(ctx context.Context, req *pb.SubmitRequest) (*pb.SubmitResponse, error) {
	if err := proto.CheckSubmit(req); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	stored := s.m.store.statSubmit(req) // disk I/O here, not on the loop
	r, err := call(ctx, s.m, func(c chan submitReply) any { return evSubmit{req: req, stored: stored, reply: c} })
	if err != nil {
		return nil, err
	}
	if ended := (*clients.Ended)(nil); errors.As(r.err, &ended) {
		return nil, SessionError(r.err)
	}
	if r.err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, r.err)
	}
	return &pb.SubmitResponse{TaskIds: r.ids, Resubmitted: r.again, Finished: r.finished}, nil
}

func (s *service) Watch(ctx context.Context, req *connect.Request[pb.WatchRequest], stream *connect.ServerStream[pb.TaskEvents]) error {
	return s.m.WatchEvents(ctx, req.Msg, stream.Send)
}

// WatchEvents sends the events of a client's session after the request's
// cursor to send, batched, until ctx ends or send fails; events up to the
// cursor are acknowledged. The first message is empty: the client knows
// then that it is watching, before it submits anything. The Watch RPC
// serves it over HTTP/2; an embedded client calls it in process. A session
// that ended is refused (see WatchSession).
func (m *Manager) WatchEvents(ctx context.Context, req *pb.WatchRequest, send func(*pb.TaskEvents) error) error {
	after := req.After
	if !m.current(req.Epoch, req.Manager) {
		after = 0 // a cursor of an earlier run: the client reads from the start
	}
	events, err := m.WatchSession(req.Session, after)
	if err != nil {
		return err
	}
	defer func() { events.Close(time.Now()) }()
	if err := send(&pb.TaskEvents{Manager: m.runID, Epoch: m.epoch}); err != nil {
		return err
	}
	for {
		evs, err := events.Next(ctx)
		if ended := (*clients.Ended)(nil); errors.As(err, &ended) {
			return SessionError(err)
		}
		if err != nil {
			return nil // the stream ended
		}
		if err := sendEvents(send, evs); err != nil {
			return err
		}
	}
}

// WatchSession opens a reader of a client session's events after the
// cursor, acknowledging those up to it: WatchEvents sends what it reads,
// and a client in this process reads it directly. While a reader is open
// the session's client counts as present; once the last one closed
// (Reader.Close with the time), the session is cancelled after the grace
// (Config.ClientGrace). A session that ended is refused with a
// FailedPrecondition error that says why.
func (m *Manager) WatchSession(name string, after uint64) (*clients.Reader, error) {
	if len(name) > proto.MaxNameBytes {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("session name too long"))
	}
	client, err := m.clients.Get(name)
	if err != nil {
		return nil, SessionError(err)
	}
	r, err := client.Read(after)
	if err != nil {
		return nil, SessionError(err)
	}
	return r, nil
}

// current reports whether a client's cursor, of the given epoch and run
// ID (each 0 or "" when not said), counts in this manager's event numbers:
// a manager restarted without its journal numbers events from 1 again,
// under another run ID; one restarted with it, in a new epoch.
func (m *Manager) current(epoch uint64, run string) bool {
	return (epoch == 0 || epoch == m.epoch) && (run == "" || run == m.runID)
}

// RunID names this run of the manager: the first message of a Watch stream
// carries it.
func (m *Manager) RunID() string { return m.runID }

// Ack forgets a session's events up to the client's cursor.
func (s *service) Ack(ctx context.Context, req *connect.Request[pb.AckRequest]) (*connect.Response[pb.AckResponse], error) {
	if len(req.Msg.Session) > proto.MaxNameBytes {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("session name too long"))
	}
	if !s.m.current(req.Msg.Epoch, req.Msg.Manager) {
		return connect.NewResponse(&pb.AckResponse{}), nil // of an earlier run: its numbers mean nothing now
	}
	if client := s.m.clients.Lookup(req.Msg.Session); client != nil {
		client.Ack(req.Msg.Seq)
	}
	return connect.NewResponse(&pb.AckResponse{}), nil
}

// sendEvents sends events in as few messages as the batch limits allow.
func sendEvents(send func(*pb.TaskEvents) error, events []*pb.TaskEvent) error {
	for len(events) > 0 {
		n, size := 0, 0
		for n < len(events) && n < proto.MaxBatchMessages {
			size += goproto.Size(events[n])
			if n > 0 && size > proto.MaxBatchBytes {
				break
			}
			n++
		}
		if err := send(&pb.TaskEvents{Events: events[:n]}); err != nil {
			return err
		}
		events = events[n:]
	}
	return nil
}

func (s *service) Cancel(ctx context.Context, req *connect.Request[pb.CancelRequest]) (*connect.Response[pb.CancelResponse], error) {
	if err := proto.CheckWorkflow(req.Msg.Workflow); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if req.Msg.Session == "" && req.Msg.Workflow == "" {
		if err := s.m.send(ctx, evCancel{ids: req.Msg.TaskIds}); err != nil {
			return nil, err
		}
		return connect.NewResponse(&pb.CancelResponse{}), nil
	}
	r, err := call(ctx, s.m, func(c chan cancelReply) any {
		return evCancel{ids: req.Msg.TaskIds, session: req.Msg.Session, workflow: req.Msg.Workflow, reply: c}
	})
	if err == nil {
		err = r.err
	}
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.CancelResponse{Cancelled: r.n}), nil
}

func (s *service) Status(ctx context.Context, req *connect.Request[pb.StatusRequest]) (*connect.Response[pb.StatusResponse], error) {
	now := time.Now()
	if r := req.Msg.Factory; r != nil {
		if err := s.m.factory.report(r, now); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
	}
	snap, err := s.m.Snapshot(ctx) // never enters the loop's queue
	if err != nil {
		return nil, err
	}
	st := goproto.CloneOf(snap.Status)
	s.m.factory.annotate(st, now)
	return connect.NewResponse(st), nil
}

func (s *service) Work(ctx context.Context, stream *connect.BidiStream[pb.WorkerMessage, pb.ManagerMessage]) error {
	return s.m.work(ctx, stream, stream.Peer().Addr)
}

func (s *service) FetchFile(ctx context.Context, req *connect.Request[pb.FetchFileRequest]) (*connect.Response[pb.FetchFileResponse], error) {
	name := req.Msg.Name
	if err := proto.CheckCacheName(name); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if info, ok := s.m.store.stat(name); ok { // here already: the loop need not know
		return connect.NewResponse(&pb.FetchFileResponse{File: info}), nil
	}
	reply := make(chan error, 1)
	if err := s.m.send(ctx, evFetchFile{name: name, reply: reply}); err != nil {
		return nil, err
	}
	select {
	case err := <-reply:
		if err != nil {
			return nil, connect.NewError(connect.CodeNotFound, err)
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	info, ok := s.m.store.stat(name)
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("file %s did not reach the manager", name))
	}
	return connect.NewResponse(&pb.FetchFileResponse{File: info}), nil
}

func (s *service) EndSession(ctx context.Context, req *connect.Request[pb.EndSessionRequest]) (*connect.Response[pb.EndSessionResponse], error) {
	if err := s.m.send(ctx, evEndSession{session: req.Msg.Session}); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.EndSessionResponse{}), nil
}

func (s *service) Reconcile(ctx context.Context, req *connect.Request[pb.ReconcileRequest]) (*connect.Response[pb.ReconcileResponse], error) {
	if req.Msg.Verdict == pb.Verdict_VERDICT_UNSPECIFIED {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("reconcile: say --done, --failed or --rerun"))
	}
	err, cerr := call(ctx, s.m, func(c chan error) any { return evReconcile{req: req.Msg, reply: c} })
	if cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	return connect.NewResponse(&pb.ReconcileResponse{}), nil
}

func (s *service) RemoveLibrary(ctx context.Context, req *connect.Request[pb.RemoveLibraryRequest]) (*connect.Response[pb.RemoveLibraryResponse], error) {
	err, cerr := call(ctx, s.m, func(c chan error) any { return evRemove{name: req.Msg.Name, reply: c} })
	if cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, connect.NewError(connect.CodeNotFound, err)
	}
	return connect.NewResponse(&pb.RemoveLibraryResponse{}), nil
}

func (s *service) InstallLibrary(ctx context.Context, req *connect.Request[pb.InstallLibraryRequest]) (*connect.Response[pb.InstallLibraryResponse], error) {
	if err := proto.CheckLibrary(req.Msg.Library); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	for _, d := range req.Msg.Files {
		if err := proto.CheckFileDecl(d); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
	}
	lib := req.Msg.Library
	stored := s.m.store.statInputs([][]*pb.FileRef{lib.Inputs}, nil, req.Msg.Files) // disk I/O here, not on the loop
	err, cerr := call(ctx, s.m, func(c chan error) any { return evInstall{req: req.Msg, stored: stored, reply: c} })
	if cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	return connect.NewResponse(&pb.InstallLibraryResponse{}), nil
}
