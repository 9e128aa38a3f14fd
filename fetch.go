package trellis

import (
	"context"

	pb "trellis/internal/proto/trellisv1"
)

// maxFetches bounds the downloads of completed tasks' outputs (and large
// call results) that run at once. They run on the fetchers, never on the
// goroutine that follows the event stream, so that one large download
// holds up no other handle.
const maxFetches = 8

// fetch is a completed task whose outputs are to be downloaded before its
// handle is done.
type fetch struct {
	h   *Handle
	ev  *pb.TaskEvent // the task's DONE event
	out Event         // the event for WithEvents, less its Result
}

// needsFetch reports whether completing h with ev takes I/O at the client:
// a large result to fetch, or outputs to write.
func needsFetch(h *Handle, ev *pb.TaskEvent) bool {
	o := ev.GetOutcome()
	if ResultKind(o.GetKind()) != Success {
		return false
	}
	if o.GetResultFile() != nil {
		return true
	}
	for _, m := range h.task.Outputs {
		if m.File.local != "" {
			return true
		}
	}
	return false
}

// queueFetch hands f to the fetchers; it never blocks.
func (c *Client) queueFetch(f fetch) {
	c.fetchMu.Lock()
	c.fetches = append(c.fetches, f)
	c.fetchMu.Unlock()
	select {
	case c.fetchSig <- struct{}{}:
	default: // a fetcher is already signalled
	}
}

// fetchLoop completes queued fetches, one at a time, until ctx ends and
// none is queued. Once ctx has ended, the downloads fail at once and the
// handles are done with a failed result.
func (c *Client) fetchLoop(ctx context.Context) {
	for {
		c.fetchMu.Lock()
		n := len(c.fetches)
		var f fetch
		if n > 0 {
			f = c.fetches[0]
			c.fetches[0] = fetch{}
			c.fetches = c.fetches[1:]
		}
		c.fetchMu.Unlock()
		if n > 1 {
			select { // pass the signal on: more is queued
			case c.fetchSig <- struct{}{}:
			default:
			}
		}
		if n > 0 {
			c.complete(ctx, f)
			continue
		}
		select {
		case <-c.fetchSig:
		case <-ctx.Done():
			c.fetchMu.Lock()
			n = len(c.fetches)
			c.fetchMu.Unlock()
			if n == 0 {
				return
			}
		}
	}
}

// complete sets the handle's result, downloading its outputs, and reports
// the event; the handle is done once the WithEvents callback has seen it.
func (c *Client) complete(ctx context.Context, f fetch) {
	f.h.res = c.result(ctx, f.h, f.ev)
	f.out.Result = f.h.res
	c.emit(f.out, f.h.done)
}

// emitted is an event queued for the WithEvents callback, and the handle
// to mark done once the callback has seen it (nil but for a task's end).
type emitted struct {
	ev   Event
	done chan struct{}
}

// emit queues ev for the WithEvents callback, then closes done if it is
// not nil; without a callback it closes done at once. It never blocks.
func (c *Client) emit(ev Event, done chan struct{}) {
	if c.onEvent == nil {
		if done != nil {
			close(done)
		}
		return
	}
	c.eventMu.Lock()
	c.events = append(c.events, emitted{ev, done})
	c.eventMu.Unlock()
	select {
	case c.eventSig <- struct{}{}:
	default: // the emitter is already signalled
	}
}

// emitLoop calls the WithEvents callback for queued events, in order, from
// this one goroutine, until emitStop is closed and none is queued.
func (c *Client) emitLoop() {
	for {
		c.eventMu.Lock()
		batch := c.events
		c.events = nil
		c.eventMu.Unlock()
		for _, e := range batch {
			c.onEvent(e.ev)
			if e.done != nil {
				close(e.done)
			}
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-c.eventSig:
		case <-c.emitStop:
			c.eventMu.Lock()
			n := len(c.events)
			c.eventMu.Unlock()
			if n == 0 {
				return
			}
		}
	}
}

// halt stops the watch goroutine and the fetchers, which complete what is
// queued with failed downloads, then the emitter once it has reported all.
func (c *Client) halt() {
	c.stop()
	c.submits.close()
	c.wg.Wait()
	close(c.emitStop)
	c.emitWG.Wait()
}
