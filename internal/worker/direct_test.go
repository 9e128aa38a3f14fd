package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"

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

// TestLeaseEnded: a call on a lease that ended (its ID not above the
// highest seen in the session, and not held) is refused at once, without
// waiting for a grant; one on a lease held runs.
func TestLeaseEnded(t *testing.T) {
	key := []byte("the Welcome's key")
	var table leaseTable
	table.attach(&session{runID: "run-1"}, key, 7)
	for id := range uint64(3) {
		table.grant(&pb.LeaseGranted{Lease: id + 1, Instance: 3, Slots: 1, Session: "client", Library: "lib"})
	}
	table.end(1)
	table.end(3)
	for id, ended := range map[uint64]bool{1: true, 2: false, 3: true} {
		_, _, err := table.take(context.Background(), id, proto.LeaseToken(key, id, 7))
		if got := err != nil && connect.CodeOf(err) == connect.CodeNotFound && strings.Contains(err.Error(), "it ended"); got != ended || !ended && err != nil {
			t.Errorf("take(lease %d) = %v; want it refused as ended: %v", id, err, ended)
		}
	}
}

// TestAnswersPacked: answers that end while another is being sent go out
// together, packed into the next message in the order they ended; a lone
// answer goes alone; after a failed send, answers are dropped.
func TestAnswersPacked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan error)
		var sent [][]string // each message's keys
		a := &answers{send: func(r *pb.DirectCallResponse) error {
			keys := []string{r.Key}
			for _, m := range r.More {
				keys = append(keys, m.Key)
			}
			sent = append(sent, keys)
			return <-release
		}}
		go a.put(&pb.DirectCallResponse{Key: "a"}) // exits when its send and the queue's are done
		synctest.Wait()                            // "a" is being sent
		for _, k := range []string{"b", "c", "d"} {
			a.put(&pb.DirectCallResponse{Key: k}) // queued: returns at once
		}
		release <- nil // "a" sent; then "b", "c", "d" in one message
		release <- nil
		synctest.Wait()
		go a.put(&pb.DirectCallResponse{Key: "e"}) // alone; its send fails
		release <- errors.New("stream broken")
		synctest.Wait()
		a.put(&pb.DirectCallResponse{Key: "f"}) // dropped: nothing sent, nothing waits
		want := [][]string{{"a"}, {"b", "c", "d"}, {"e"}}
		if diff := cmp.Diff(want, sent); diff != "" {
			t.Errorf("messages sent (-want +got):\n%s", diff)
		}
	})
}

// TestLeaseQueue: a call on a lease whose slots are all busy waits at the
// worker for one (up to maxQueuedPerSlot per slot; more are refused with
// ResourceExhausted); a freed slot admits one waiting call; a lease that
// ends refuses those still waiting (NotFound).
func TestLeaseQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var table leaseTable
		token := grantOne(&table, 1)
		if _, _, err := table.take(context.Background(), 1, token); err != nil {
			t.Fatalf("the first call: %v", err)
		}
		errs := make(chan error, maxQueuedPerSlot)
		for range maxQueuedPerSlot {
			go func() { // exits when take returns
				_, _, err := table.take(context.Background(), 1, token)
				errs <- err
			}()
		}
		synctest.Wait() // they all wait
		if _, _, err := table.take(context.Background(), 1, token); connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Fatalf("a call beyond the lease's slot and queue: %v; want ResourceExhausted", err)
		}
		table.give(1, table.sess)
		synctest.Wait()
		if err := <-errs; err != nil {
			t.Fatalf("a waiting call after a slot freed: %v", err)
		}
		select {
		case err := <-errs:
			t.Fatalf("a second waiting call returned %v with no slot free", err)
		default:
		}
		table.end(1)
		for range maxQueuedPerSlot - 1 {
			if err := <-errs; connect.CodeOf(err) != connect.CodeNotFound {
				t.Errorf("a waiting call when its lease ended: %v; want NotFound", err)
			}
		}
	})
}

// TestLeaseQueueInOrder: calls waiting for a slot of a lease get the freed
// slots one at a time, in the order they came: one freed slot lets exactly
// one proceed, the first waiting, and a call that comes after a slot freed
// does not take it ahead of them. A waiting call that gives up leaves its
// place to the next.
func TestLeaseQueueInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const slots = 2
		var table leaseTable
		token := grantOne(&table, slots)
		for range slots {
			if _, _, err := table.take(context.Background(), 1, token); err != nil {
				t.Fatalf("a call with a slot free: %v", err)
			}
		}
		const n = maxQueuedPerSlot * slots
		proceeded := make(chan int, n)
		quit := make([]context.CancelFunc, n)
		defer func() { // the calls still waiting give up: their goroutines exit
			for _, cancel := range quit {
				cancel()
			}
		}()
		for i := range n {
			ctx, cancel := context.WithCancel(context.Background())
			quit[i] = cancel
			go func() { // exits when take returns
				if _, _, err := table.take(ctx, 1, token); err == nil {
					proceeded <- i
				}
			}()
			synctest.Wait() // it waits, behind the ones before it
		}
		quit[1]() // the second gives up its place
		synctest.Wait()
		var got []int
		for range 3 {
			table.give(1, table.sess)
			gone, cancel := context.WithCancel(context.Background())
			cancel()
			if _, _, err := table.take(gone, 1, token); err == nil {
				t.Fatalf("a call that came after a slot freed took it ahead of %d waiting", n)
			}
			synctest.Wait()
			got = append(got, len(proceeded))
			for len(proceeded) > 0 {
				got = append(got, <-proceeded)
			}
		}
		// Each give: how many proceeded, then which.
		want := []int{1, 0, 1, 2, 1, 3}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("calls let through by 3 freed slots, one at a time (-want +got):\n%s", diff)
		}
	})
}

// TestGiveAcrossSessions: a call that took a slot in one session and ends
// in the next frees nothing there, even on a lease with the same ID (a new
// manager run numbers its leases from 1 again).
func TestGiveAcrossSessions(t *testing.T) {
	key := []byte("the Welcome's key")
	var table leaseTable
	first := &session{runID: "run-1"}
	table.attach(first, key, 7)
	table.grant(&pb.LeaseGranted{Lease: 1, Instance: 3, Slots: 1, Session: "client", Library: "lib"})
	_, sess, err := table.take(context.Background(), 1, proto.LeaseToken(key, 1, 7))
	if err != nil {
		t.Fatalf("a call in the first session: %v", err)
	}
	table.detach(first)
	table.attach(&session{runID: "run-2"}, key, 7)
	table.grant(&pb.LeaseGranted{Lease: 1, Instance: 4, Slots: 1, Session: "other", Library: "lib"})
	if _, _, err := table.take(context.Background(), 1, proto.LeaseToken(key, 1, 7)); err != nil {
		t.Fatalf("a call in the second session: %v", err)
	}
	table.give(1, sess) // the first session's call ends
	if l := table.byID[1]; l.busy != 1 {
		t.Errorf("the second session's lease 1 has %d busy slots after the first session's call ended; want 1 (its own call still runs)", l.busy)
	}
}

// TestReportsPaced: the reports of direct calls go to the session's loop
// together: the first of a batch wakes it reportDelay later (not at once),
// with every report queued by then; reportBatch queued wake it at once; a
// session that ended takes no more reports.
func TestReportsPaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &directReports{signal: make(chan struct{}, 1)}
		report := func(key string) *pb.WorkerMessage {
			return &pb.WorkerMessage{Msg: &pb.WorkerMessage_DirectCallEnded{DirectCallEnded: &pb.DirectCallEnded{Key: key}}}
		}
		keys := func(msgs []*pb.WorkerMessage) []string {
			var ks []string
			for _, m := range msgs {
				ks = append(ks, m.GetDirectCallEnded().Key)
			}
			return ks
		}
		woken := func() bool {
			select {
			case <-r.signal:
				return true
			default:
				return false
			}
		}
		start := time.Now()
		r.put(report("a"))
		time.Sleep(reportDelay / 2)
		r.put(report("b"))
		synctest.Wait()
		if woken() {
			t.Fatalf("the loop was woken %v after the first report; want %v", time.Since(start), reportDelay)
		}
		time.Sleep(reportDelay / 2)
		synctest.Wait()
		if !woken() {
			t.Fatalf("the loop was not woken %v after the first report", time.Since(start))
		}
		if diff := cmp.Diff([]string{"a", "b"}, keys(r.take(false))); diff != "" {
			t.Errorf("reports taken (-want +got):\n%s", diff)
		}
		// A new batch waits again; a full one wakes the loop at once.
		for i := range reportBatch - 1 {
			r.put(report(fmt.Sprint(i)))
		}
		synctest.Wait()
		if woken() {
			t.Fatalf("the loop was woken at once by %d reports; want after %v", reportBatch-1, reportDelay)
		}
		r.put(report("last"))
		if !woken() {
			t.Fatalf("the loop was not woken at once by %d reports", reportBatch)
		}
		if got := len(r.take(false)); got != reportBatch {
			t.Errorf("took %d reports, want %d", got, reportBatch)
		}
		time.Sleep(reportDelay) // the batch's timer fires with nothing queued
		synctest.Wait()
		if woken() {
			t.Errorf("the loop was woken with nothing queued")
		}
		// The session ends: no more reports, no wake.
		r.take(true)
		if r.put(report("late")) {
			t.Errorf("a report was queued after the session ended")
		}
		time.Sleep(2 * reportDelay)
		synctest.Wait()
		if woken() {
			t.Errorf("the loop was woken after the session ended")
		}
	})
}

// TestQueuedCalls: a call of a Calls stream that finds every slot of its
// lease busy waits in the line without a goroutine (admit: queued); each
// freed slot is handed to the first queued call, for the call that freed
// it to run (give returns it), in order of coming and mixed with blocked
// callers (take); the calls of a stream that went are taken off the line
// and refused (dropQueued), as are the queued calls of a lease that ends.
func TestQueuedCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var table leaseTable
		token := grantOne(&table, 2)
		var refused []string // "key: code"
		var mu sync.Mutex
		stream := func() *answers {
			return &answers{send: func(r *pb.DirectCallResponse) error {
				mu.Lock()
				defer mu.Unlock()
				for _, a := range append([]*pb.DirectCallResponse{r}, r.More...) {
					refused = append(refused, a.Key+": "+strings.SplitN(a.Refused, ":", 2)[0]) // the code
				}
				return nil
			}}
		}
		var wg sync.WaitGroup
		a, b := stream(), stream()
		call := func(k string, out *answers) *queuedCall {
			wg.Add(1)
			return &queuedCall{ctx: context.Background(), r: &pb.DirectCallRequest{Lease: 1, Token: token, Key: k}, out: out, wg: &wg}
		}
		for range 2 {
			if _, _, err := table.take(context.Background(), 1, token); err != nil {
				t.Fatalf("a call with a slot free: %v", err)
			}
		}
		first, second, third := call("a1", a), call("b1", b), call("a2", a)
		for _, c := range []*queuedCall{first, second} {
			if _, _, queued, err := table.admit(c); !queued || err != nil {
				t.Fatalf("call %s with the lease's slot busy: queued %v, %v; want queued", c.r.Key, queued, err)
			}
		}
		blocked := make(chan error, 1)
		go func() { // exits when take returns
			_, _, err := table.take(context.Background(), 1, token)
			blocked <- err
		}()
		synctest.Wait() // it waits behind the two queued calls
		if _, _, queued, err := table.admit(third); !queued || err != nil {
			t.Fatalf("a third queued call: queued %v, %v", queued, err)
		}
		if h := table.give(1, table.sess); h.call != first || h.l.instance != 3 || h.sess != table.sess {
			t.Fatalf("the first freed slot went to %+v; want the first queued call on instance 3", h)
		}
		if h := table.give(1, table.sess); h.call != second {
			t.Fatalf("the second freed slot went to %+v; want the second queued call", h)
		}
		if h := table.give(1, table.sess); h.call != nil {
			t.Fatalf("the third freed slot went to queued call %s; want the blocked caller", h.call.r.Key)
		}
		if err := <-blocked; err != nil {
			t.Fatalf("the blocked caller after a slot was handed to it: %v", err)
		}
		// Stream a goes: its call still in line is refused, not run.
		fourth := call("b2", b)
		if _, _, queued, _ := table.admit(fourth); !queued {
			t.Fatalf("a fourth call was not queued")
		}
		table.dropQueued(a, connect.NewError(connect.CodeCanceled, context.Canceled))
		if h := table.give(1, table.sess); h.call != fourth {
			t.Fatalf("the slot after stream a went went to %+v; want b's queued call", h)
		}
		fifth := call("b3", b)
		if _, _, queued, _ := table.admit(fifth); !queued {
			t.Fatalf("a fifth call was not queued")
		}
		table.end(1)
		synctest.Wait()
		want := []string{"a2: canceled", "b3: not_found"}
		if diff := cmp.Diff(want, refused); diff != "" {
			t.Errorf("calls refused (-want +got):\n%s", diff)
		}
		wg.Add(-3) // first, second and fourth ran elsewhere
		wg.Wait()
	})
}

// TestServeRunsQueued: a call whose slot is handed to a queued call runs
// that call next on its goroutine; a queued call whose client went by the
// time it has the slot is refused and passes the slot on.
func TestServeRunsQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &Worker{}
		token := grantOne(&w.leases, 1)
		var got []string
		out := &answers{send: func(r *pb.DirectCallResponse) error {
			for _, a := range append([]*pb.DirectCallResponse{r}, r.More...) {
				got = append(got, a.Key+": "+strings.SplitN(a.Refused, ":", 2)[0]) // the code
			}
			return nil
		}}
		d := directService{w}
		var wg sync.WaitGroup
		gone, cancel := context.WithCancel(context.Background())
		cancel()
		var calls []*queuedCall
		for i, ctx := range []context.Context{context.Background(), gone, context.Background()} {
			wg.Add(1)
			c := &queuedCall{d: d, ctx: ctx, r: &pb.DirectCallRequest{Lease: 1, Token: token, Key: fmt.Sprint(i)}, out: out, wg: &wg}
			calls = append(calls, c)
		}
		l, sess, queued, err := w.leases.admit(calls[0])
		if queued || err != nil {
			t.Fatalf("the first call: queued %v, %v", queued, err)
		}
		for _, c := range calls[1:] {
			if _, _, queued, _ := w.leases.admit(c); !queued {
				t.Fatalf("call %s was not queued", c.r.Key)
			}
		}
		d.serve(calls[0], l, sess, nil) // no instance 3 here: each that runs is refused as Unavailable
		wg.Wait()
		want := []string{"0: unavailable", "1: canceled", "2: unavailable"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("answers (-want +got):\n%s", diff)
		}
		if l := w.leases.byID[1]; l.busy != 0 || len(l.waiting) != 0 {
			t.Errorf("lease after the calls: %d busy, %d waiting; want none", l.busy, len(l.waiting))
		}
	})
}

// grantOne attaches table to a session and grants it lease 1, of slots on
// instance 3; it returns the lease's token.
func grantOne(table *leaseTable, slots int32) string {
	key := []byte("the Welcome's key")
	table.attach(&session{runID: "run-1"}, key, 7)
	table.grant(&pb.LeaseGranted{Lease: 1, Instance: 3, Slots: slots, Session: "client", Library: "lib"})
	return proto.LeaseToken(key, 1, 7)
}

// TestQueuedCallAfterLeaseEnded: with one slot, call A runs and call B
// waits in the line; A's answer is held up on its way out (a slow client)
// while the lease ends. B, handed A's slot and out of the line already, is
// refused (NotFound), not run, once A's answer is out.
func TestQueuedCallAfterLeaseEnded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &Worker{}
		token := grantOne(&w.leases, 1)
		release := make(chan struct{})
		var got []string
		var mu sync.Mutex
		out := &answers{send: func(r *pb.DirectCallResponse) error {
			for _, a := range append([]*pb.DirectCallResponse{r}, r.More...) {
				mu.Lock()
				got = append(got, a.Key+": "+strings.SplitN(a.Refused, ":", 2)[0]) // the code
				mu.Unlock()
				if a.Key == "A" {
					<-release // A's answer is held up
				}
			}
			return nil
		}}
		d := directService{w}
		var wg sync.WaitGroup
		call := func(key string) *queuedCall {
			wg.Add(1)
			return &queuedCall{d: d, ctx: context.Background(), r: &pb.DirectCallRequest{Lease: 1, Token: token, Key: key}, out: out, wg: &wg}
		}
		a, b := call("A"), call("B")
		l, sess, queued, err := w.leases.admit(a)
		if queued || err != nil {
			t.Fatalf("call A: queued %v, %v", queued, err)
		}
		if _, _, queued, _ := w.leases.admit(b); !queued {
			t.Fatalf("call B was not queued")
		}
		go d.serve(a, l, sess, nil) // exits when A, and any call handed its slot, are answered
		synctest.Wait()             // A ran (no instance 3 here: Unavailable) and its answer is held up
		w.leases.end(1)
		synctest.Wait()
		close(release)
		wg.Wait()
		synctest.Wait()
		want := []string{"A: unavailable", "B: not_found"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("answers (-want +got):\n%s", diff)
		}
	})
}
