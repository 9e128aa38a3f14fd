package trellis

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"

	"trellis/internal/clientconn"
	pb "trellis/internal/proto/trellisv1"
)

// TestShares: a Submit's calls split over leases in proportion to their
// slots: equal leases take equal shares (within one), and every call is in
// one share.
func TestShares(t *testing.T) {
	for _, tc := range []struct {
		name  string
		n     int
		slots []int32
		want  []int
	}{
		{"four equal leases", 20000, []int32{64, 64, 64, 64}, []int{5000, 5000, 5000, 5000}},
		{"four equal leases, a remainder", 10003, []int32{64, 64, 64, 64}, []int{2501, 2501, 2501, 2500}},
		{"by slots", 300, []int32{64, 128}, []int{100, 200}},
		{"fewer calls than leases", 2, []int32{64, 64, 64}, []int{1, 1, 0}},
		{"one lease", 7, []int32{64}, []int{7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, shares(tc.n, tc.slots)); diff != "" {
				t.Errorf("shares(%d, %v) mismatch (-want +got):\n%s", tc.n, tc.slots, diff)
			}
		})
	}
}

// heldLease is a manager whose Lease answers only when the test says.
type heldLease struct {
	clientconn.RPC // the rest: not called
	asked          chan struct{}
	answer         chan *pb.LeaseResponse
}

func (m heldLease) Lease(context.Context, *connect.Request[pb.LeaseRequest]) (*connect.Response[pb.LeaseResponse], error) {
	m.asked <- struct{}{}
	return connect.NewResponse(<-m.answer), nil
}

// TestDirectClosedWhileAsking: the client closes while a Submit asks the
// manager for a lease; the lease granted after opens no stream (close has
// collected them), and a Submit after close starts no pump: its calls go
// to the manager's path (which says the client closed).
func TestDirectClosedWhileAsking(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := heldLease{asked: make(chan struct{}), answer: make(chan *pb.LeaseResponse)}
	c := &Client{rpc: m, session: "s", log: slog.New(slog.DiscardHandler), gone: make(chan struct{})}
	WithDirectCalls()(c)
	d := c.direct
	calls := []*Task{NewCall("lib", "f", nil)}
	type submitted struct {
		handles []*Handle
		ok      bool
	}
	first := make(chan submitted, 1)
	go func() { // exits when submitDirect returns (the test answers its Lease)
		hs, ok := c.submitDirect(ctx, calls)
		first <- submitted{hs, ok}
	}()
	<-m.asked
	d.close()
	m.answer <- &pb.LeaseResponse{Lease: 1, Token: "token", Slots: 4, WorkerAddr: "127.0.0.1:1"}
	if got := <-first; got.ok {
		t.Errorf("a Submit whose lease came after close went direct (%d handles); want it to go through the manager", len(got.handles))
	}
	d.mu.Lock()
	s := d.leases["lib"].rpc
	d.mu.Unlock()
	if s != nil {
		s.stop()
		t.Errorf("a lease granted after close opened a stream; want none")
	}
	if hs, ok := c.submitDirect(ctx, calls); ok {
		t.Errorf("a Submit after close went direct (%d handles); want it to go through the manager", len(hs))
	}
}
