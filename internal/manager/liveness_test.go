package manager

import (
	"context"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// Heartbeats stop at the session's reader, which only notes when the worker
// was last heard; the watchdog fires once per timeout. A silent worker must
// still be lost, and one that only heartbeats must stay.
func TestSilentWorkerLostHeartbeatingWorkerKept(t *testing.T) {
	const beat = 50 * time.Millisecond
	m, ctx := runManager(t, Config{Listen: "127.0.0.1:0", Secret: "s", Heartbeat: beat})

	silent := joinWorker(ctx, t, m)
	defer silent.Close()
	first, err := m.Snapshot(ctx)
	if err != nil || len(first.Status.Workers) != 1 {
		t.Fatalf("snapshot %v, %v; want one worker", first, err)
	}
	silentID := first.Status.Workers[0].Id
	alive := joinWorker(ctx, t, m)
	defer alive.Close()
	go func() { // exits when the test ends or a send fails
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(beat):
			}
			if alive.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Heartbeat{Heartbeat: &pb.Heartbeat{}}}) != nil {
				return
			}
		}
	}()
	go func() { // exits when the stream ends: the manager's messages are not read otherwise
		for {
			if _, err := alive.Receive(); err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		snap, err := m.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Status.Workers) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d workers after 10s, want the silent one lost after %s", len(snap.Status.Workers), 3*beat)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The one left stays over many timeouts: heartbeats alone keep it.
	time.Sleep(20 * beat)
	snap, err := m.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(snap.Status.Workers); n != 1 {
		t.Fatalf("%d workers after %s of heartbeats, want 1", n, 20*beat)
	}
	if got := snap.Status.Workers[0].Id; got == silentID {
		t.Errorf("worker %d left, the silent one; want the one that heartbeats", got)
	}
}

// A hello that the loop cannot take (its queue full) is answered
// unavailable within joinTimeout, which the worker retries, rather than
// left unanswered.
func TestJoinAnswersUnavailableWhenBusy(t *testing.T) {
	m, err := Listen(Config{Listen: "127.0.0.1:0", Secret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.ln.Close()
	old := joinTimeout
	joinTimeout = 50 * time.Millisecond
	t.Cleanup(func() { joinTimeout = old })
	for len(m.events) < cap(m.events) { // no loop runs: the queue stays full
		m.events <- evCancel{}
	}
	sess := &session{hello: &pb.Hello{Name: "w1"}, out: newOutQueue(), closed: make(chan struct{})}
	_, err = m.join(context.Background(), sess)
	if got := connect.CodeOf(err); got != connect.CodeUnavailable {
		t.Errorf("join with the loop's queue full: %v (code %v), want unavailable", err, got)
	}
}

// An idle manager's one-second tick is not a step: the snapshot, a status
// of every worker, is not rebuilt each second while nothing happens (that
// would cost the idle manager in proportion to its workers).
func TestIdleTickIsNoStep(t *testing.T) {
	m := startManager(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := joinWorker(ctx, t, m)
	defer w.Close()
	snap, err := m.Snapshot(ctx)
	if err != nil || len(snap.Status.Workers) != 1 {
		t.Fatalf("snapshot %v, %v; want one worker", snap, err)
	}
	before := m.steps.Load()
	time.Sleep(2500 * time.Millisecond) // two ticks at least
	if after := m.steps.Load(); after != before {
		t.Errorf("steps went from %d to %d over two idle ticks, want no step", before, after)
	}
}

// A session whose stream has no pings of its own (framed) is pinged once
// after proto.PingIdle of silence, and lost proto.PingTimeout after the
// ping if it stays silent; an answer keeps it. Other sessions are neither
// pinged nor lost before the heartbeat's timeout.
func TestLivenessPingsFramedSessions(t *testing.T) {
	const timeout = 90 * time.Second
	now := time.Unix(1000, 0)
	l := newLiveness()
	mk := func(pings bool, silentFor time.Duration) *session {
		s := &session{out: newOutQueue(), closed: make(chan struct{}), pings: pings}
		s.lastSeen.Store(now.Add(-silentFor).UnixNano())
		l.add(s)
		return s
	}
	framedQuiet, framedAnswers := mk(true, 46*time.Second), mk(true, 46*time.Second)
	mk(false, 60*time.Second) // HTTP/2: its stream pings; the heartbeat's timeout loses it
	mk(true, 10*time.Second)  // heard from lately
	silent, ping := l.silent(now, timeout, nil, nil)
	if len(silent) != 0 || len(ping) != 2 || !slices.Contains(ping, framedQuiet) || !slices.Contains(ping, framedAnswers) {
		t.Fatalf("first sweep: lost %d, pinged %d; want the two framed sessions silent for 46 s pinged, none lost", len(silent), len(ping))
	}
	// The next sweep, before the ping's timeout: no second ping.
	if silent, ping = l.silent(now.Add(5*time.Second), timeout, nil, nil); len(silent)+len(ping) != 0 {
		t.Fatalf("sweep 5 s after the ping: lost %d, pinged %d; want none", len(silent), len(ping))
	}
	framedAnswers.lastSeen.Store(now.Add(time.Second).UnixNano()) // its heartbeat
	silent, ping = l.silent(now.Add(proto.PingTimeout), timeout, nil, nil)
	if len(ping) != 0 || len(silent) != 1 || silent[0] != framedQuiet {
		t.Fatalf("sweep at the ping's timeout: lost %d, pinged %d; want the silent framed session lost alone", len(silent), len(ping))
	}
}
