package transfer

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"trellis/internal/gate"
	"trellis/internal/proto"
	"trellis/internal/worker/archive"
	"trellis/internal/worker/cache"
)

// DirHeader marks a response whose body is a directory's tar stream.
const DirHeader = proto.DirHeader

// DigestHeader carries the served entry's digest, for diagnosis.
const DigestHeader = "X-Trellis-Digest"

// Server serves a cache to peers: GET (or HEAD) /cache/NAME?token=T. It
// implements http.Handler. Create it with NewServer.
type Server struct {
	cache  *cache.Cache
	secret string
	log    *slog.Logger
	now    func() time.Time

	// Requests counts requests answered with an entry.
	Requests atomic.Int64
	// Refused counts requests refused (400, 403, 404, 405).
	Refused atomic.Int64
	// Bytes counts bytes of entries sent.
	Bytes atomic.Int64
	// InFlight is the number of entries being sent now.
	InFlight atomic.Int64
}

// NewServer returns a Server of c whose tokens are checked with secret. A
// nil log discards.
func NewServer(c *cache.Cache, secret string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cache: c, secret: secret, log: log, now: time.Now}
}

// ServeHTTP serves one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/cache/")
	if !ok {
		s.refuse(w, r, http.StatusNotFound, "no such path: want /cache/NAME")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.refuse(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: want GET or HEAD")
		return
	}
	if err := proto.CheckCacheName(name); err != nil {
		s.refuse(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if err := CheckToken(s.secret, name, r.URL.Query().Get("token"), s.now()); err != nil {
		s.refuse(w, r, http.StatusForbidden, err.Error())
		return
	}
	gate.Admit(r.Context())
	if !s.cache.Pin(name) {
		s.refuse(w, r, http.StatusNotFound, name+" is not in this worker's cache")
		return
	}
	defer s.cache.Unpin(name)
	e, ok := s.cache.Get(name)
	if !ok {
		s.refuse(w, r, http.StatusNotFound, name+" is not in this worker's cache")
		return
	}
	s.InFlight.Add(1)
	defer s.InFlight.Add(-1)
	cw := &countingWriter{ResponseWriter: w}
	defer func() { s.Bytes.Add(cw.n) }()
	h := w.Header()
	h.Set(DigestHeader, e.Digest)
	if e.Dir {
		h.Set(DirHeader, "1")
		h.Set("Content-Type", "application/x-tar")
		if r.Method == http.MethodHead {
			s.Requests.Add(1)
			return
		}
		if err := archive.WriteTar(s.cache.Path(name), cw); err != nil {
			// The status is sent: break the stream so the peer sees a
			// failed transfer rather than a short, well-formed one.
			s.log.Warn("serve directory", "name", name, "err", err)
			panic(http.ErrAbortHandler)
		}
		s.Requests.Add(1)
		return
	}
	f, err := os.Open(s.cache.Path(name))
	if err != nil {
		s.log.Warn("serve file", "name", name, "err", err)
		http.Error(w, "open "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	h.Set("Content-Type", "application/octet-stream")
	// ServeContent sets Content-Length and, through countingWriter's
	// ReadFrom, lets the kernel send the file (sendfile).
	http.ServeContent(cw, r, "", time.Time{}, f)
	s.Requests.Add(1)
}

// refuse answers with status and a one-line reason.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int, why string) {
	s.Refused.Add(1)
	s.log.Info("refused cache request", "remote", r.RemoteAddr, "path", r.URL.Path, "status", status, "why", why)
	http.Error(w, why, status)
}

// countingWriter counts the bytes written through it. Its ReadFrom hands
// the source to the ResponseWriter's, keeping the sendfile path.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{c.ResponseWriter}, r)
	}
	c.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
