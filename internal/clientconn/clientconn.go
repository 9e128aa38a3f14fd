// Package clientconn declares how a trellis.Client reaches a manager other
// than over HTTP/2: package local joins a client to its embedded manager in
// process through a Transport given with trellis.WithTransport. It holds
// declarations only, so that package trellis and package local share them
// without trellis depending on the manager.
package clientconn

import (
	"context"

	"connectrpc.com/connect"

	pb "trellis/internal/proto/trellisv1"
)

// RPC is what a client asks of a manager, besides the event stream. The
// generated HTTP/2 client satisfies it, and so does the manager's handler.
type RPC interface {
	Submit(context.Context, *connect.Request[pb.SubmitRequest]) (*connect.Response[pb.SubmitResponse], error)
	Cancel(context.Context, *connect.Request[pb.CancelRequest]) (*connect.Response[pb.CancelResponse], error)
	Status(context.Context, *connect.Request[pb.StatusRequest]) (*connect.Response[pb.StatusResponse], error)
	FetchFile(context.Context, *connect.Request[pb.FetchFileRequest]) (*connect.Response[pb.FetchFileResponse], error)
	InstallLibrary(context.Context, *connect.Request[pb.InstallLibraryRequest]) (*connect.Response[pb.InstallLibraryResponse], error)
	RemoveLibrary(context.Context, *connect.Request[pb.RemoveLibraryRequest]) (*connect.Response[pb.RemoveLibraryResponse], error)
	EndSession(context.Context, *connect.Request[pb.EndSessionRequest]) (*connect.Response[pb.EndSessionResponse], error)
	Reconcile(context.Context, *connect.Request[pb.ReconcileRequest]) (*connect.Response[pb.ReconcileResponse], error)
	Ack(context.Context, *connect.Request[pb.AckRequest]) (*connect.Response[pb.AckResponse], error)
	Lease(context.Context, *connect.Request[pb.LeaseRequest]) (*connect.Response[pb.LeaseResponse], error)
}

// Events is a session's stream of task events, read by one goroutine, as
// connect's server stream client is.
type Events interface {
	Receive() bool
	Msg() *pb.TaskEvents
	Err() error
	Close() error
}

// Transport replaces parts of a client's connection to its manager. Files
// still move over HTTP to the address given to trellis.Dial.
type Transport struct {
	// RPC, when set, carries the calls instead of HTTP/2; Watch must then
	// be set too and opens a session's event stream from the request's
	// cursor, which ends when ctx does.
	RPC   RPC
	Watch func(ctx context.Context, req *pb.WatchRequest) (Events, error)
	// Stop, when set, runs at the end of Client.Close, once the client has
	// stopped: it stops what the transport runs (an embedded cluster). If
	// Dial fails, Stop does not run; the caller stops what it started.
	Stop func()
}
