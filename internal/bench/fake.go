package bench

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/proto/trellisv1/trellisv1connect"
)

// fakeWorkers are worker sessions that speak the real protocol to a real
// manager (hello, welcome, heartbeats, Run answered by AttemptDone) but run
// nothing: each task succeeds the moment it arrives. They measure what the
// manager can carry, as HyperQueue measures its server, without the cost of
// starting processes hiding it. Each has its own HTTP/2 connection, as a
// real worker does.
type fakeWorkers struct {
	addr, secret string
	cores        float64

	welcomed atomic.Int64 // workers the manager welcomed at least once
	retries  atomic.Int64 // connections that failed before a welcome, and were tried again
	stuck    atomic.Int64 // of those, hellos left unanswered for handshakeTimeout
	mu       sync.Mutex
	runs     map[uint64]int // guards: attempts received per task
	wg       sync.WaitGroup // every session's goroutines
}

func newFakeWorkers(addr, secret string, cores float64) *fakeWorkers {
	return &fakeWorkers{addr: addr, secret: secret, cores: cores, runs: make(map[uint64]int)}
}

// start opens n sessions; each keeps going until ctx ends or its stream
// breaks. Wait for them with wait.
func (f *fakeWorkers) start(ctx context.Context, n int) {
	for i := range n {
		f.wg.Add(1)
		go func() { // exits when ctx ends or the stream breaks
			defer f.wg.Done()
			f.worker(ctx, i)
		}()
	}
}

func (f *fakeWorkers) wait() { f.wg.Wait() }

// runsPerTask returns how many times each task was run.
func (f *fakeWorkers) runsPerTask() map[uint64]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[uint64]int, len(f.runs))
	for k, v := range f.runs {
		out[k] = v
	}
	return out
}

// handshakeTimeout is how long a fake worker waits for its welcome.
const handshakeTimeout = 20 * time.Second

// worker connects again after a failed connection, as a real worker does
// (200 ms, doubling up to 5 s), until ctx ends.
func (f *fakeWorkers) worker(ctx context.Context, i int) {
	backoff := 200 * time.Millisecond
	seen := false
	for {
		welcomed := f.session(ctx, i, !seen)
		seen = seen || welcomed
		if welcomed {
			backoff = 200 * time.Millisecond
		} else {
			f.retries.Add(1)
		}
		if sleepCtx(ctx, backoff) != nil {
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// session holds one connection until it breaks or ctx ends; it reports
// whether the manager welcomed it, and counts the first welcome.
func (f *fakeWorkers) session(ctx context.Context, i int, first bool) (welcomed bool) {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: protocols, DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext}
	defer tr.CloseIdleConnections()
	rpc := trellisv1connect.NewManagerClient(&http.Client{Transport: tr}, "http://"+f.addr,
		connect.WithReadMaxBytes(proto.MaxMessageBytes), connect.WithSendMaxBytes(proto.MaxMessageBytes))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream := rpc.Work(ctx)
	stream.RequestHeader().Set("Authorization", "Bearer "+f.secret)
	hello := &pb.Hello{Protocol: proto.Protocol, Name: "fake-" + strconv.Itoa(i), Version: "bench",
		Resources: &pb.Resources{Cores: f.cores, MemoryMb: 1 << 20, DiskMb: 1 << 20}, FileServer: ":1"}
	if err := stream.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Hello{Hello: hello}}); err != nil {
		return false
	}
	// A hello that the manager never answers (its connection lost in a
	// flood of others) is given up and tried again, as a broken one is.
	giveUp := time.AfterFunc(handshakeTimeout, func() { f.stuck.Add(1); cancel() })
	welcome, err := stream.Receive()
	if !giveUp.Stop() || err != nil || welcome.GetWelcome() == nil {
		return false
	}
	if first {
		f.welcomed.Add(1)
	}
	out := make(chan *pb.WorkerMessage, 4096)
	f.wg.Add(1)
	go func() { // exits when ctx ends or a send fails
		defer f.wg.Done()
		defer cancel()
		beat := time.NewTicker(time.Duration(max(welcome.GetWelcome().HeartbeatMs, 100)) * time.Millisecond)
		defer beat.Stop()
		for {
			var msg *pb.WorkerMessage
			select {
			case msg = <-out:
			case <-beat.C:
				msg = &pb.WorkerMessage{Msg: &pb.WorkerMessage_Heartbeat{Heartbeat: &pb.Heartbeat{}}}
			case <-ctx.Done():
				stream.CloseRequest()
				return
			}
			if proto.SendQueued(msg, out, wrapBatch, stream.Send) != nil {
				return
			}
		}
	}()
	for {
		msg, err := stream.Receive()
		if err != nil {
			cancel()
			return true
		}
		if b := msg.GetBatch(); b != nil {
			for _, m := range b.Msgs {
				f.handle(ctx, m, out)
			}
			continue
		}
		f.handle(ctx, msg, out)
	}
}

// handle answers a Run at once with success; the fake takes no other order.
func (f *fakeWorkers) handle(ctx context.Context, msg *pb.ManagerMessage, out chan<- *pb.WorkerMessage) {
	run := msg.GetRun()
	if run == nil {
		return
	}
	f.mu.Lock()
	f.runs[run.TaskId]++
	f.mu.Unlock()
	done := &pb.WorkerMessage{Msg: &pb.WorkerMessage_Done{Done: &pb.AttemptDone{TaskId: run.TaskId, Attempt: run.Attempt,
		Outcome: &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS}}}}
	select {
	case out <- done:
	case <-ctx.Done():
	}
}

func wrapBatch(msgs []*pb.WorkerMessage) *pb.WorkerMessage {
	return &pb.WorkerMessage{Msg: &pb.WorkerMessage_Batch{Batch: &pb.WorkerBatch{Msgs: msgs}}}
}
