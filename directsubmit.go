package trellis

import (
	"context"
	"strconv"
	"sync"
	"time"

	pb "trellis/internal/proto/trellisv1"
)

// Submit of calls on a lease (docs/direct-calls.md, "Asynchronous calls"):
// with WithDirectCalls, a Submit whose tasks are all plain calls of one
// library goes straight to the worker on the client's lease of that
// library, as Call does. The calls queue at the client and go out as the
// lease's slots free, several to a message; each handle is done when its
// answer comes. Calls the lease cannot run (it ends, the worker is lost, it
// refuses them) go through the manager with their keys, and their handles
// take the manager's results; so does, alone, a call whose result was too
// large for its answer (the lease and the other calls go on).

// directTask reports whether t may go straight to a worker: a call with no
// files, no order, no key or label of its own, not retried on error, and
// not at most once (whose dispatch the manager journals before it runs).
func directTask(t *Task, workflow string) bool {
	return t.Call != nil && len(t.Inputs) == 0 && len(t.Outputs) == 0 && len(t.After) == 0 && t.Key == "" &&
		!t.RetryOnError && t.Priority == 0 && t.Effects != EffectsAtMostOnce && t.Workflow == "" && workflow == "" &&
		len(t.Env) == 0 && t.Category == "" && len(t.Tags) == 0
}

// leaseWindow is how many calls a Submit keeps on a lease per slot: the
// worker holds the calls beyond the lease's slots until one frees (at most
// leaseWindow-1 per slot: the worker's maxQueuedPerSlot), so that the
// library has the next call at hand while an answer travels back.
const leaseWindow = 4

// directBatch is one Submit's calls on a lease, fed by its pump.
type directBatch struct {
	c     *Client
	lib   string
	l     *clientLease
	calls []directItem

	mu      sync.Mutex    // guards sent, open, failed
	sent    int           // calls[:sent] are sent (or failed as they went)
	open    int           // sent calls not yet answered
	failed  []int         // indexes of calls to send through the manager
	answers chan struct{} // the pump's: an answer came
}

type directItem struct {
	h   *Handle
	t   *Task
	req *pb.DirectCallRequest
}

// submitDirect sends tasks on a lease when they can all go direct, and
// returns their handles; ok is false when they are to go through the
// manager (no lease held or lent now, or a task that cannot go direct).
func (c *Client) submitDirect(ctx context.Context, tasks []*Task) (handles []*Handle, ok bool) {
	d := c.direct
	if len(tasks) == 0 || tasks[0].Call == nil {
		return nil, false
	}
	lib := tasks[0].Call.Library
	for _, t := range tasks {
		if !directTask(t, c.workflow) || t.Call.Library != lib {
			return nil, false
		}
	}
	l, held := d.takeOrQueue(ctx, c, lib, true) // a slot of it for the first call, if one is free
	if l == nil {
		return nil, false
	}
	// More calls than the lease's window: spread them over further leases
	// on the library's other instances, in shares by their slots.
	leases := []*clientLease{l}
	if len(tasks) > int(leaseWindow*l.slots) {
		leases = append(leases, d.extraLeases(ctx, c, lib, len(tasks), l)...)
	}
	slots := make([]int32, len(leases))
	for i, l := range leases {
		slots[i] = l.slots
	}
	handles = make([]*Handle, 0, len(tasks))
	for i, n := range shares(len(tasks), slots) {
		l := leases[i]
		if n == 0 {
			break
		}
		b := &directBatch{c: c, lib: lib, l: l, calls: make([]directItem, n), answers: make(chan struct{}, 1)}
		for j, t := range tasks[:n] {
			key := "direct-" + strconv.FormatUint(d.keys.Add(1), 10)
			h := &Handle{Name: t.Name, key: key, task: t, c: c, done: make(chan struct{})}
			handles = append(handles, h)
			b.calls[j] = directItem{h: h, t: t, req: &pb.DirectCallRequest{Lease: l.id, Token: l.token, Key: key, Function: t.Call.Function,
				Args: t.Call.Args, TimeLimitMs: t.TimeLimit.Milliseconds(), IdempotencyKey: c.session + "/" + key}}
		}
		tasks = tasks[n:]
		d.goPump(b, held)
		held = 0 // the slot take counted is the first lease's
	}
	d.sent.Add(uint64(len(handles)))
	return handles, true
}

// shares splits n calls over leases of slots, in proportion to their
// slots (the last takes what is left).
func shares(n int, slots []int32) []int {
	var total int
	for _, s := range slots {
		total += int(s)
	}
	out := make([]int, len(slots))
	left := n
	for i, s := range slots {
		share := (n*int(s) + total - 1) / total
		if i == len(slots)-1 {
			share = left
		}
		share = min(share, left)
		out[i] = share
		left -= share
	}
	return out
}

// goPump starts b's pump, unless the client closed meanwhile: then b's
// handles say ErrClosed.
func (d *directCalls) goPump(b *directBatch, held int32) {
	if !d.track() {
		b.closed(rangeInts(0, len(b.calls)))
		return
	}
	go b.pump(held) // exits when every call is answered or handed to the manager, or the client closes
}

// goViaManager sends the calls at indexes through the manager (viaManager)
// on a goroutine of their own, unless the client closed: then their
// handles say ErrClosed.
func (b *directBatch) goViaManager(indexes []int, why string) {
	d := b.c.direct
	if !d.track() {
		b.closed(indexes)
		return
	}
	go func() { // exits when the manager has answered them, or the client closes
		defer d.pumps.Done()
		b.viaManager(indexes, why)
	}()
}

// track counts a goroutine of a Submit among the pumps that close waits
// for, unless the client closed: then it reports false, and the goroutine
// must not start.
func (d *directCalls) track() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.closed {
		d.pumps.Add(1) // under d.mu: before close's Wait, or not at all
	}
	return !d.closed
}

// closed ends the handles of the calls at indexes with ErrClosed.
func (b *directBatch) closed(indexes []int) {
	for _, i := range indexes {
		h := b.calls[i].h
		h.err = ErrClosed
		close(h.done)
	}
}

// pump sends the batch's calls as slots of the lease free (held: one
// counted busy for it already, or none), then hands the calls that failed
// on the way to the manager.
func (b *directBatch) pump(held int32) {
	d := b.c.direct
	defer d.pumps.Done()
	slots := held // counted busy by takeOrQueue
	for {
		b.mu.Lock()
		left := int32(len(b.calls) - b.sent)
		open := b.open
		failing := len(b.failed) > 0
		b.mu.Unlock()
		// More of the lease's free slots, up to what is left to send: once
		// a quarter of the window is free, or nothing of this batch is on
		// the way (fewer, larger messages; the worker holds the calls
		// beyond the lease's slots meanwhile).
		d.mu.Lock()
		live := !b.l.dropped
		free := max(leaseWindow*b.l.slots-b.l.busy, 0)
		var n int32
		var starved chan struct{} // the lease's window is full with others' calls
		switch {
		case !live || failing:
			b.l.freeLocked(slots) // held and not used
		case free >= leaseWindow*b.l.slots/4 || open == 0 || free >= left-slots:
			n = min(free, left-slots)
			b.l.busy += n
			if n+slots == 0 {
				starved = b.l.freedLocked()
			}
		}
		d.mu.Unlock()
		if !live || failing || left == 0 {
			break
		}
		if slots += n; slots > 0 {
			b.mu.Lock()
			first, k := b.sent, int(slots)
			reqs := make([]*pb.DirectCallRequest, k)
			for i := range reqs {
				reqs[i] = b.calls[first+i].req
			}
			b.sent += k
			b.open += k
			b.mu.Unlock()
			if !b.l.rpc.send(reqs, b.answer, first) {
				b.mu.Lock()
				b.open -= k
				b.failed = append(b.failed, rangeInts(first, first+k)...)
				b.mu.Unlock()
				d.mu.Lock()
				b.l.freeLocked(slots)
				d.mu.Unlock()
				slots = 0
				continue // the loop's top sees them failing: no answer will come for them
			}
			slots = 0
		}
		select {
		case <-b.answers:
		case <-starved:
		case <-b.c.gone:
			return // Wait on the handles says ErrClosed
		}
	}
	// The lease failed or ended with calls left: wait for the answers of
	// those sent, then send what failed or was left through the manager.
	for {
		b.mu.Lock()
		open := b.open
		b.mu.Unlock()
		if open == 0 {
			break
		}
		select {
		case <-b.answers:
		case <-b.c.gone:
			return
		}
	}
	b.mu.Lock()
	rest := append(b.failed, rangeInts(b.sent, len(b.calls))...)
	b.failed, b.sent = nil, len(b.calls)
	b.mu.Unlock()
	if len(rest) == 0 {
		return
	}
	if d.drop(b.lib, b.l) {
		b.c.release(b.lib, b.l)
	}
	b.viaManager(rest, "direct calls failed on the way: they go through the manager")
}

// answer takes the answer to call i (nil: the stream broke), from the
// stream's receive goroutine: it must not block.
func (b *directBatch) answer(i int, resp *pb.DirectCallResponse) {
	d := b.c.direct
	failed := resp == nil || resp.Refused != ""
	tooLarge := resp.GetResultTooLarge() > 0 // it ran, but its result is for the manager's path
	b.mu.Lock()
	b.open--
	if failed {
		b.failed = append(b.failed, i)
	}
	b.mu.Unlock()
	d.mu.Lock()
	b.l.freeLocked(1)
	d.mu.Unlock()
	switch {
	case tooLarge: // it alone: the lease and the batch go on
		b.goViaManager([]int{i}, "a direct call's result is too large for its answer: it runs again through the manager")
	case !failed:
		h := b.calls[i].h
		h.res = directResult(h.Name, resp.GetOutcome())
		close(h.done)
	}
	select {
	case b.answers <- struct{}{}:
	default:
	}
}

// viaManager submits the calls at indexes to the manager under their keys,
// and gives each handle the manager's result; why is logged.
func (b *directBatch) viaManager(indexes []int, why string) {
	c := b.c
	c.direct.fellBack.Add(uint64(len(indexes)))
	c.log.Info(why, "library", b.lib, "calls", len(indexes))
	tasks := make([]*Task, len(indexes))
	for i, j := range indexes {
		t := *b.calls[j].t
		t.Key = b.calls[j].h.key // the key it had on the worker: one idempotency key for both
		tasks[i] = &t
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // exits when viaManager returns or the client closes
		select {
		case <-c.gone:
			cancel()
		case <-ctx.Done():
		}
	}()
	hs, err := c.submitViaManager(ctx, tasks)
	for i, j := range indexes {
		h := b.calls[j].h
		if i < len(hs) { // (h.ID stays 0: the caller may read it; the Result has the task's)
			h.res, h.err = hs[i].Wait(ctx)
		} else {
			h.err = err
		}
		close(h.done)
	}
}

// rangeInts returns from, from+1, …, to-1.
func rangeInts(from, to int) []int {
	r := make([]int, 0, max(to-from, 0))
	for i := from; i < to; i++ {
		r = append(r, i)
	}
	return r
}

// directResult is the Result of a call answered on a lease.
func directResult(name string, o *pb.Outcome) *Result {
	return &Result{Name: name, Kind: resultKindOf(o.GetKind()), ExitCode: int(o.GetExitCode()), Message: o.GetMessage(),
		Output: o.GetResult(), Traceback: o.GetTraceback(), Attempts: 1, RunTime: time.Duration(o.GetRunMs()) * time.Millisecond}
}

// freedLocked returns a channel closed when a slot of l frees (d.mu held).
func (l *clientLease) freedLocked() chan struct{} {
	if l.freed == nil {
		l.freed = make(chan struct{})
	}
	return l.freed
}

// freeLocked frees n slots of l and wakes whoever waits for one (d.mu
// held).
func (l *clientLease) freeLocked(n int32) {
	l.busy -= n
	if l.freed != nil && n > 0 {
		close(l.freed)
		l.freed = nil
	}
}
