package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"trellis/internal/proto"
	"trellis/internal/worker/archive"
	"trellis/internal/worker/cache"
)

// ErrSource is wrapped by failures that are the source's fault: the
// manager may try another source.
var ErrSource = errors.New("transfer: source failed")

// DefaultStallTimeout is the stall timeout of a Fetcher that sets none.
const DefaultStallTimeout = 30 * time.Second

// Fetcher gets files and directories from URLs into a cache. Its fields
// are read-only once it is in use; one Fetcher may serve many concurrent
// Fetch calls.
type Fetcher struct {
	// HTTP is the client for http and https URLs; nil means a client
	// without compression or timeouts (stalls are detected instead).
	HTTP *http.Client
	// Manager is the manager's base URL ("http://host:port"): the only
	// place ManagerSecret is sent.
	Manager string
	// ManagerSecret is sent as a bearer token with GETs of URLs under
	// Manager+"/files/", and with no others.
	ManagerSecret string
	// StallTimeout fails a fetch that receives no byte for that long
	// (awaiting the response included); 0 means DefaultStallTimeout.
	StallTimeout time.Duration
	// MaxBytes bounds one file or directory; 0 means no bound.
	MaxBytes int64
}

var defaultClient = &http.Client{Transport: &http.Transport{
	Proxy:               http.ProxyFromEnvironment,
	DisableCompression:  true,
	MaxIdleConnsPerHost: 8,
	IdleConnTimeout:     90 * time.Second,
	ReadBufferSize:      64 << 10,
	WriteBufferSize:     64 << 10,
}}

// Fetch makes the entry name (a directory when dir is true) present in c
// at level, from rawURL: http or https (a peer's /cache/NAME?token=T, the
// manager's /files/NAME, or an origin), or file (a path on this worker).
// wantSize and wantDigest are checked when known (-1 and "" otherwise). See
// doc.go for how failures are classified.
func (f *Fetcher) Fetch(ctx context.Context, c *cache.Cache, name string, level cache.Level, rawURL string, wantSize int64, wantDigest string, dir bool) (cache.Entry, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return cache.Entry{}, fmt.Errorf("fetch %s: %w", name, &sourceError{fmt.Errorf("bad url: %w", err)})
	}
	where := redact(u)
	var e cache.Entry
	switch u.Scheme {
	case "http", "https":
		if dir {
			e, err = c.Put(name, level, true, wantSize, wantDigest, func(tmp string) error {
				body, _, err := f.get(ctx, u, true)
				if err != nil {
					return err
				}
				defer body.Close()
				return archive.ExtractTar(ctx, body, tmp, f.MaxBytes)
			})
		} else {
			e, err = c.PutReader(name, level, wantSize, wantDigest, func() (io.ReadCloser, int64, error) {
				return f.get(ctx, u, false)
			})
		}
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			err = &sourceError{fmt.Errorf("file url names host %q: want a local path", u.Host)}
			break
		}
		e, err = f.fetchLocal(ctx, c, name, level, u.Path, wantSize, wantDigest, dir)
	default:
		err = &sourceError{fmt.Errorf("scheme %q not supported: want http, https or file", u.Scheme)}
	}
	if err != nil {
		return cache.Entry{}, fmt.Errorf("fetch %s from %s: %w", name, where, classify(ctx, err))
	}
	return e, nil
}

// fetchLocal copies the local file or directory p into the cache.
func (f *Fetcher) fetchLocal(ctx context.Context, c *cache.Cache, name string, level cache.Level, p string, wantSize int64, wantDigest string, dir bool) (cache.Entry, error) {
	if !dir {
		return c.PutReader(name, level, wantSize, wantDigest, func() (io.ReadCloser, int64, error) {
			fh, err := os.Open(p)
			if err != nil {
				return nil, 0, &sourceError{err}
			}
			fi, err := fh.Stat()
			if err == nil && !fi.Mode().IsRegular() {
				err = fmt.Errorf("%s is not a regular file", p)
			}
			if err == nil && f.MaxBytes > 0 && fi.Size() > f.MaxBytes {
				fh.Close()
				return nil, 0, fmt.Errorf("%s has %d bytes, more than %d: %w", p, fi.Size(), f.MaxBytes, archive.ErrTooLarge)
			}
			if err != nil {
				fh.Close()
				return nil, 0, &sourceError{err}
			}
			return &sourceReader{ctx: ctx, r: fh, closer: fh, max: f.MaxBytes}, fi.Size(), nil
		})
	}
	return c.Put(name, level, true, wantSize, wantDigest, func(tmp string) error {
		fi, err := os.Stat(p)
		if err != nil {
			return &sourceError{err}
		}
		if !fi.IsDir() {
			return &sourceError{fmt.Errorf("%s is not a directory", p)}
		}
		// The tree goes through the archive stream, so that the copy obeys
		// the same rules as one from a peer.
		pr, pw := io.Pipe()
		var wg sync.WaitGroup
		var werr error
		wg.Add(1)
		go func() { // exits when the tree is written or the pipe is closed
			defer wg.Done()
			werr = archive.WriteTar(p, pw)
			pw.CloseWithError(werr)
		}()
		err = archive.ExtractTar(ctx, pr, tmp, f.MaxBytes)
		pr.CloseWithError(errors.New("extraction ended"))
		wg.Wait()
		if werr != nil {
			return &sourceError{werr}
		}
		return err
	})
}

// get sends a GET for u and returns its body (watched for stalls, counted
// against MaxBytes, its errors marked as the source's) and its declared
// length, -1 when unknown.
func (f *Fetcher) get(ctx context.Context, u *url.URL, dir bool) (io.ReadCloser, int64, error) {
	stall := f.StallTimeout
	if stall <= 0 {
		stall = DefaultStallTimeout
	}
	rctx, cancel := context.WithCancelCause(ctx)
	stalled := fmt.Errorf("no byte for %v: %w", stall, ErrSource)
	timer := time.AfterFunc(stall, func() { cancel(stalled) })
	fail := func(err error) (io.ReadCloser, int64, error) {
		timer.Stop()
		cause := context.Cause(rctx)
		cancel(nil)
		switch {
		case ctx.Err() != nil:
			return nil, 0, context.Cause(ctx)
		case cause == stalled:
			return nil, 0, stalled
		}
		return nil, 0, err
	}
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fail(&sourceError{err})
	}
	req.Header.Set("Accept-Encoding", "identity")
	if f.toManager(u) {
		req.Header.Set("Authorization", "Bearer "+f.ManagerSecret)
		req.Header.Set(proto.WorkerHeader, "1") // the manager counts bytes sent to workers
	}
	client := f.HTTP
	if client == nil {
		client = defaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		// The client's error repeats the URL, token included: keep only
		// its cause.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fail(&sourceError{err})
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return fail(&sourceError{fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))})
	}
	if !dir && resp.Header.Get(DirHeader) == "1" {
		resp.Body.Close()
		return fail(&sourceError{errors.New("a directory was served, a file wanted")})
	}
	if f.MaxBytes > 0 && resp.ContentLength > f.MaxBytes {
		resp.Body.Close()
		return fail(fmt.Errorf("%d bytes declared, more than %d: %w", resp.ContentLength, f.MaxBytes, archive.ErrTooLarge))
	}
	return &sourceReader{ctx: ctx, r: resp.Body, closer: resp.Body, max: f.MaxBytes, timer: timer, stall: stall,
		stalled: stalled, rctx: rctx, cancel: cancel}, resp.ContentLength, nil
}

// toManager reports whether u is under the manager's file store.
func (f *Fetcher) toManager(u *url.URL) bool {
	if f.Manager == "" || f.ManagerSecret == "" {
		return false
	}
	m, err := url.Parse(f.Manager)
	if err != nil {
		return false
	}
	return u.Scheme == m.Scheme && u.Host == m.Host && strings.HasPrefix(u.Path, strings.TrimSuffix(m.Path, "/")+"/files/")
}

// sourceReader reads a source: it marks read errors as the source's,
// counts bytes against max, and restarts the stall timer on progress.
type sourceReader struct {
	ctx    context.Context // the caller's: its end is not the source's fault
	r      io.Reader
	closer io.Closer
	n, max int64

	// HTTP sources only.
	timer   *time.Timer
	stall   time.Duration
	stalled error
	rctx    context.Context
	cancel  context.CancelCauseFunc
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 && s.timer != nil {
		s.timer.Reset(s.stall)
	}
	s.n += int64(n)
	if s.max > 0 && s.n > s.max {
		return n, fmt.Errorf("more than %d bytes: %w", s.max, archive.ErrTooLarge)
	}
	if err == nil || err == io.EOF {
		return n, err
	}
	if s.ctx.Err() != nil {
		return n, context.Cause(s.ctx)
	}
	if s.rctx != nil && context.Cause(s.rctx) == s.stalled {
		return n, s.stalled
	}
	return n, &sourceError{err}
}

func (s *sourceReader) Close() error {
	if s.timer != nil {
		s.timer.Stop()
		s.cancel(nil)
	}
	return s.closer.Close()
}

// sourceError marks an error as the source's fault.
type sourceError struct{ err error }

func (e *sourceError) Error() string        { return e.err.Error() }
func (e *sourceError) Unwrap() error        { return e.err }
func (e *sourceError) Is(target error) bool { return target == ErrSource }

// classify marks err as the source's fault when it is not already and is
// not this worker's or the caller's.
func classify(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, ErrSource):
		return err
	case ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		return err
	case errors.Is(err, cache.ErrDiskFull), errors.Is(err, archive.ErrTooLarge), errors.Is(err, proto.ErrInvalid):
		return err
	}
	var perr *fs.PathError
	var lerr *os.LinkError
	var serr *os.SyscallError
	if errors.As(err, &perr) || errors.As(err, &lerr) || errors.As(err, &serr) {
		return err // this worker's file system
	}
	// Mismatched size or digest, a truncated or malformed stream, an
	// unsafe archive entry: the source sent something wrong.
	return &sourceError{err}
}

// redact returns u without its query (which may hold a token) or
// credentials.
func redact(u *url.URL) string {
	v := *u
	v.RawQuery, v.ForceQuery, v.User, v.Fragment = "", false, nil, ""
	return v.String()
}
