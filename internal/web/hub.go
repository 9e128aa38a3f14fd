package web

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// updateEvery is how often the hub looks for a new snapshot while someone
// watches.
const updateEvery = time.Second

// hub renders the overview once per new snapshot for every open event
// stream.
type hub struct {
	s *Server

	mu      sync.Mutex               // guards watch
	watch   map[chan []byte]struct{} // one-slot mailboxes of open streams
	version uint64                   // owned by run: the snapshot last rendered
}

func newHub(s *Server) *hub { return &hub{s: s, watch: make(map[chan []byte]struct{})} }

// run renders and hands out updates until ctx ends.
func (h *hub) run(ctx context.Context) {
	t := time.NewTicker(updateEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		n := len(h.watch)
		h.mu.Unlock()
		if n == 0 {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		snap, err := h.s.src.Snapshot(sctx)
		cancel()
		if err != nil || snap.Version == h.version {
			continue
		}
		h.version = snap.Version
		var b bytes.Buffer
		if err := h.s.pages.ExecuteTemplate(&b, "live", newOverview(snap, h.s.recent())); err != nil {
			continue
		}
		h.publish(b.Bytes())
	}
}

// publish hands b to every stream, replacing what it has not sent yet.
func (h *hub) publish(b []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.watch {
		select {
		case <-ch:
		default:
		}
		ch <- b
	}
}

func (h *hub) subscribe() chan []byte {
	ch := make(chan []byte, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.watch[ch] = struct{}{}
	return ch
}

func (h *hub) unsubscribe(ch chan []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.watch, ch)
}

// events streams the overview as server-sent events: one "overview"
// event per new snapshot, at most one a second.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	flush, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "dashboard: this connection cannot stream events", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	ch := s.hub.subscribe()
	defer s.hub.unsubscribe(ch)
	fmt.Fprint(w, "retry: 2000\n\n")
	flush.Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case b := <-ch:
			w.Write([]byte("event: overview\n"))
			for _, line := range bytes.Split(b, []byte("\n")) {
				w.Write([]byte("data: "))
				w.Write(line)
				w.Write([]byte("\n"))
			}
			if _, err := w.Write([]byte("\n")); err != nil {
				return
			}
			flush.Flush()
		}
	}
}
