package web

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"trellis/internal/manager"
	pb "trellis/internal/proto/trellisv1"
)

// Source is what the dashboard reads: *manager.Manager.
type Source interface {
	Snapshot(ctx context.Context) (*manager.Snapshot, error)
	Task(id uint64) *manager.TaskInfo
	Tasks(state pb.TaskState, skip, n int) manager.TaskPage
	Producer(name string) *manager.TaskInfo
}

//go:embed assets
var assets embed.FS

// Server serves the dashboard. Create it with New, then Run it.
type Server struct {
	src      Source
	secret   string
	sessions sessions
	pages    *template.Template
	hub      *hub
	mux      *http.ServeMux
	limit    *limiter         // wrong secrets by client address
	now      func() time.Time // the clock of sessions and the limiter; tests set it
}

// New returns a dashboard reading src, signing in with secret.
func New(src Source, secret string) *Server {
	s := &Server{src: src, secret: secret, sessions: sessions{expires: make(map[string]time.Time)}, limit: newLimiter(), now: time.Now}
	s.pages = template.Must(template.New("").Funcs(funcs).ParseFS(assets, "assets/*.html"))
	s.hub = newHub(s)
	static, _ := fs.Sub(assets, "assets/static")
	mux := http.NewServeMux()
	mux.HandleFunc("/login", s.login)
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.Handle("POST /logout", s.requireSignIn(http.HandlerFunc(s.logout)))
	mux.Handle("GET /{$}", s.requireSignIn(http.HandlerFunc(s.overview)))
	mux.Handle("GET /events", s.requireSignIn(http.HandlerFunc(s.events)))
	mux.Handle("GET /tasks", s.requireSignIn(http.HandlerFunc(s.taskList)))
	mux.Handle("GET /tasks/{id}", s.requireSignIn(http.HandlerFunc(s.task)))
	mux.Handle("GET /workers", s.requireSignIn(s.pagedSnapshot("workers", func(snap *manager.Snapshot, page int) any { return newWorkerPage(snap, page) })))
	mux.Handle("GET /files", s.requireSignIn(s.pagedSnapshot("files", func(snap *manager.Snapshot, page int) any { return newFiles(snap, page) })))
	s.mux = mux
	return s
}

// ServeHTTP serves the dashboard's pages.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	s.mux.ServeHTTP(w, r)
}

// Run serves on ln until ctx ends.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	g, ctx := errgroup.WithContext(ctx)
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return ctx }} // event streams end with ctx
	g.Go(func() error { s.hub.run(ctx); return nil }) // exits when ctx ends
	g.Go(func() error {                               // exits when the listener closes
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("dashboard: serve: %w", err)
		}
		return nil
	})
	g.Go(func() error { // closes the server when ctx ends
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		return nil
	})
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// render executes page into a buffer, so that a failure is an error page
// rather than half a page.
func (s *Server) render(w http.ResponseWriter, code int, page string, data any) {
	var b bytes.Buffer
	if err := s.pages.ExecuteTemplate(&b, page, data); err != nil {
		http.Error(w, "dashboard: render "+page+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

// snapshot reads a snapshot for a page, bounded in time.
func (s *Server) snapshot(r *http.Request) (*manager.Snapshot, error) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	return s.src.Snapshot(ctx)
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	snap, err := s.snapshot(r)
	if err != nil {
		http.Error(w, "dashboard: read the manager's snapshot: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	s.render(w, http.StatusOK, "overview", newOverview(snap, s.recent()))
}

// recent is the newest tasks of the index, for the timeline.
func (s *Server) recent() []*manager.TaskInfo {
	return s.src.Tasks(pb.TaskState_TASK_STATE_UNSPECIFIED, 0, timelineTasks).Tasks
}

// pageParam is the page a request asks for (?page=N, from 1), or an error
// it has answered.
func pageParam(w http.ResponseWriter, r *http.Request) (int, bool) {
	p := r.FormValue("page")
	if p == "" {
		return 1, true
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 {
		http.Error(w, fmt.Sprintf("page %q: give a number from 1", p), http.StatusBadRequest)
		return 0, false
	}
	return n, true
}

// pagedSnapshot serves page, built by view from a snapshot and the page
// number the request asks for.
func (s *Server) pagedSnapshot(page string, view func(*manager.Snapshot, int) any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n, ok := pageParam(w, r)
		if !ok {
			return
		}
		snap, err := s.snapshot(r)
		if err != nil {
			http.Error(w, "dashboard: read the manager's snapshot: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		s.render(w, http.StatusOK, page, view(snap, n))
	}
}

// pageSize is how many tasks a page of the task list shows.
const pageSize = 100

func (s *Server) taskList(w http.ResponseWriter, r *http.Request) {
	state := pb.TaskState_TASK_STATE_UNSPECIFIED
	if name := r.FormValue("state"); name != "" {
		v, ok := pb.TaskState_value["TASK_STATE_"+upper(name)]
		if !ok {
			http.Error(w, fmt.Sprintf("state %q: give waiting, running or done", name), http.StatusBadRequest)
			return
		}
		state = pb.TaskState(v)
	}
	page, ok := pageParam(w, r)
	if !ok {
		return
	}
	s.render(w, http.StatusOK, "tasks", newTaskList(s.src.Tasks(state, (page-1)*pageSize, pageSize), state, page))
}

func (s *Server) task(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		http.Error(w, fmt.Sprintf("task %q: give a task ID, a number", r.PathValue("id")), http.StatusBadRequest)
		return
	}
	t := s.src.Task(id)
	if t == nil {
		s.render(w, http.StatusNotFound, "notask", id)
		return
	}
	s.render(w, http.StatusOK, "task", newTaskView(t, s.src.Producer))
}
