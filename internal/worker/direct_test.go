package worker

import (
	"context"
	"testing"
	"testing/synctest"

	"connectrpc.com/connect"

	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// TestLeaseTakeAcrossSessions: a direct call waits for the grant of its
// lease; meanwhile the manager's session ends and a new one (a restarted
// manager, whose lease IDs start again) grants the same lease ID to
// another client. The call is refused (NotFound): it must not run on the
// other client's lease.
func TestLeaseTakeAcrossSessions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		key := []byte("the Welcome's key")
		var table leaseTable
		old, next := &session{runID: "run-1"}, &session{runID: "run-2"}
		table.attach(old, key, 7)
		type taken struct {
			l   workerLease
			err error
		}
		done := make(chan taken, 1)
		go func() { // exits when take returns
			l, _, err := table.take(context.Background(), 1, proto.LeaseToken(key, 1, 7))
			done <- taken{l, err}
		}()
		synctest.Wait() // the call waits for the grant
		table.detach(old)
		table.attach(next, key, 7) // same key: the token would pass again
		table.grant(&pb.LeaseGranted{Lease: 1, Instance: 3, Slots: 1, Session: "another client", Library: "lib"})
		got := <-done
		if connect.CodeOf(got.err) != connect.CodeNotFound {
			t.Fatalf("take across a new session = %+v, %v; want refused with NotFound", got.l, got.err)
		}
	})
}
