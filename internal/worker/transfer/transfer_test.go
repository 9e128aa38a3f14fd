package transfer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"trellis/internal/worker/archive"
	"trellis/internal/worker/cache"
)

const secret = "peer-secret"

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func openCache(t testing.TB, capacity int64) (*cache.Cache, string) {
	t.Helper()
	dir := t.TempDir()
	c, err := cache.Open(dir, capacity)
	if err != nil {
		t.Fatalf("cache.Open = %v", err)
	}
	return c, dir
}

// peer is a worker's cache served over HTTP.
type peer struct {
	cache *cache.Cache
	srv   *Server
	ts    *httptest.Server
}

func newPeer(t testing.TB) *peer {
	t.Helper()
	c, _ := openCache(t, 0)
	srv := NewServer(c, secret, nil)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &peer{cache: c, srv: srv, ts: ts}
}

// url returns the URL of name on the peer with a token good for a minute.
func (p *peer) url(name string) string {
	return p.ts.URL + "/cache/" + name + "?token=" + Token(secret, name, time.Now().Add(time.Minute))
}

// settled waits until the peer has no request in flight: a handler counts
// its request and bytes as it returns, which may be after its client has
// read the whole body.
func (p *peer) settled(t testing.TB) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); p.srv.InFlight.Load() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the peer still has %d requests in flight", p.srv.InFlight.Load())
		}
	}
}

func (p *peer) putFile(t testing.TB, name string, content []byte) cache.Entry {
	t.Helper()
	e, err := p.cache.Put(name, cache.LevelWorkflow, false, -1, "", func(tmp string) error {
		return os.WriteFile(tmp, content, 0o644)
	})
	if err != nil {
		t.Fatalf("peer Put(%s) = %v", name, err)
	}
	return e
}

func (p *peer) putDir(t testing.TB, name string, files map[string]string) cache.Entry {
	t.Helper()
	e, err := p.cache.Put(name, cache.LevelWorkflow, true, -1, "", func(tmp string) error {
		return writeTree(tmp, files)
	})
	if err != nil {
		t.Fatalf("peer Put(%s) = %v", name, err)
	}
	return e
}

// writeTree makes dir with files (a name ending in "*" executable, one
// ending in "@" a symbolic link to its content).
func writeTree(dir string, files map[string]string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	for name, content := range files {
		mode := fs.FileMode(0o644)
		link := false
		if n, ok := strings.CutSuffix(name, "*"); ok {
			name, mode = n, 0o755
		}
		if n, ok := strings.CutSuffix(name, "@"); ok {
			name, link = n, true
		}
		full := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		var err error
		if link {
			err = os.Symlink(content, full)
		} else {
			err = os.WriteFile(full, []byte(content), mode)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkEmpty fails if c holds anything, or a fill left something behind.
func checkEmpty(t *testing.T, c *cache.Cache, dir string) {
	t.Helper()
	if got := c.Entries(); len(got) != 0 {
		t.Errorf("cache Entries = %v; want none", got)
	}
	if got := c.Used(); got != 0 {
		t.Errorf("cache Used = %d; want 0", got)
	}
	for _, sub := range []string{"files", "tmp"} {
		if des, _ := os.ReadDir(filepath.Join(dir, sub)); len(des) != 0 {
			t.Errorf("cache %s/ holds %q; want nothing", sub, des[0].Name())
		}
	}
}

func fetcher() *Fetcher { return &Fetcher{StallTimeout: 5 * time.Second} }

func TestPeerFileRoundTrip(t *testing.T) {
	p := newPeer(t)
	content := bytes.Repeat([]byte("0123456789abcdef"), 100_000) // 1.6 MB
	want := p.putFile(t, "sha256-"+digestOf(content)[7:], content)
	c, _ := openCache(t, 0)
	got, err := fetcher().Fetch(context.Background(), c, want.Name, cache.LevelWorker, p.url(want.Name), want.Size, want.Digest, false)
	if err != nil {
		t.Fatalf("Fetch = %v", err)
	}
	if got.Size != want.Size || got.Digest != want.Digest || got.Level != cache.LevelWorker || !got.Droppable {
		t.Errorf("Fetch = %+v; want size %d, digest %s, level worker, droppable", got, want.Size, want.Digest)
	}
	b, err := os.ReadFile(c.Path(want.Name))
	if err != nil || !bytes.Equal(b, content) {
		t.Errorf("fetched file: %d bytes, %v; want the %d bytes served", len(b), err, len(content))
	}
	p.settled(t)
	if r, n := p.srv.Requests.Load(), p.srv.Bytes.Load(); r != 1 || n != want.Size {
		t.Errorf("server counters: requests %d, bytes %d; want 1, %d", r, n, want.Size)
	}
	// Unknown size and digest are learnt.
	c2, _ := openCache(t, 0)
	got, err = fetcher().Fetch(context.Background(), c2, want.Name, cache.LevelWorker, p.url(want.Name), -1, "", false)
	if err != nil || got.Digest != want.Digest {
		t.Errorf("Fetch without expectations = %v, %v; want digest %s", got.Digest, err, want.Digest)
	}
}

func TestPeerDirRoundTrip(t *testing.T) {
	p := newPeer(t)
	want := p.putDir(t, "tree", map[string]string{"a": "alpha", "sub/b*": "#!/bin/sh\n", "sub/l@": "../a", "empty/x/y": ""})
	c, _ := openCache(t, 0)
	got, err := fetcher().Fetch(context.Background(), c, "tree", cache.LevelWorkflow, p.url("tree"), want.Size, want.Digest, true)
	if err != nil {
		t.Fatalf("Fetch = %v", err)
	}
	if diff := cmp.Diff(want.Digest, got.Digest); diff != "" || got.Size != want.Size || !got.Dir {
		t.Errorf("Fetch = %+v; want size %d, digest %s, a directory", got, want.Size, want.Digest)
	}
	if target, err := os.Readlink(filepath.Join(c.Path("tree"), "sub", "l")); err != nil || target != "../a" {
		t.Errorf("fetched link = %q, %v; want ../a", target, err)
	}
	// A directory cannot be fetched as a file.
	c2, dir2 := openCache(t, 0)
	_, err = fetcher().Fetch(context.Background(), c2, "tree", cache.LevelWorkflow, p.url("tree"), -1, "", false)
	if !errors.Is(err, ErrSource) {
		t.Errorf("Fetch of a directory as a file = %v; want ErrSource", err)
	}
	checkEmpty(t, c2, dir2)
}

func TestServerRefusals(t *testing.T) {
	p := newPeer(t)
	p.putFile(t, "f", []byte("content"))
	good := Token(secret, "f", time.Now().Add(time.Minute))
	tests := []struct {
		name   string
		method string
		path   string
		status int
		says   string
	}{
		{name: "no token", path: "/cache/f", status: 403, says: "missing"},
		{name: "wrong token", path: "/cache/f?token=" + Token("guess", "f", time.Now().Add(time.Minute)), status: 403, says: "wrong signature"},
		{name: "expired token", path: "/cache/f?token=" + Token(secret, "f", time.Now().Add(-time.Second)), status: 403, says: "expired"},
		{name: "token of another name", path: "/cache/g?token=" + good, status: 403, says: "wrong signature"},
		{name: "unknown name", path: "/cache/g?token=" + Token(secret, "g", time.Now().Add(time.Minute)), status: 404, says: "not in this worker's cache"},
		{name: "bad name", path: "/cache/..%2Fsecret?token=" + good, status: 400, says: "cache name"},
		{name: "hidden name", path: "/cache/.x?token=" + good, status: 400, says: "cache name"},
		{name: "other path", path: "/files/f", status: 404, says: "want /cache/NAME"},
		{name: "post", method: "POST", path: "/cache/f?token=" + good, status: 405, says: "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = "GET"
			}
			req, _ := http.NewRequest(method, p.ts.URL+tt.path, nil)
			resp, err := p.ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.says) {
				t.Errorf("%s %s = %d %q; want %d and a body saying %q", method, tt.path, resp.StatusCode, body, tt.status, tt.says)
			}
		})
	}
	if got, want := p.srv.Refused.Load(), int64(len(tests)); got != want {
		t.Errorf("Refused = %d; want %d", got, want)
	}
	if got := p.srv.Requests.Load(); got != 0 {
		t.Errorf("Requests = %d; want 0", got)
	}
}

func TestServerHead(t *testing.T) {
	p := newPeer(t)
	e := p.putFile(t, "f", []byte("seven b"))
	resp, err := http.Head(p.url("f"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != 7 || resp.Header.Get(DigestHeader) != e.Digest {
		t.Errorf("HEAD = %d, length %d, digest %q; want 200, 7, %s", resp.StatusCode, resp.ContentLength, resp.Header.Get(DigestHeader), e.Digest)
	}
}

// serve returns the URL of a test server running h.
func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL + "/cache/x?token=t"
}

func TestFetchFileFailures(t *testing.T) {
	content := bytes.Repeat([]byte("data"), 64<<10) // 256 KiB
	p := newPeer(t)
	p.putFile(t, "x", content)
	corrupt := append([]byte(nil), content...)
	corrupt[len(corrupt)/2] ^= 1
	refused := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return "http://" + addr + "/cache/x"
	}()
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })

	tests := []struct {
		name       string
		url        string
		wantSize   int64
		wantDigest string
		capacity   int64
		maxBytes   int64
		source     bool  // want ErrSource
		want       error // and this too, when not nil
		says       string
	}{
		{name: "wrong token", url: p.ts.URL + "/cache/x?token=" + Token("guess", "x", time.Now().Add(time.Minute)), source: true, says: "403"},
		{name: "expired token", url: p.ts.URL + "/cache/x?token=" + Token(secret, "x", time.Now().Add(-time.Minute)), source: true, says: "expired"},
		{name: "not found", url: serve(t, func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }), source: true, says: "404 Not Found"},
		{name: "server error", url: serve(t, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }), source: true, says: "500"},
		{name: "connection refused", url: refused, source: true, says: "refused"},
		{name: "dies mid-transfer", url: serve(t, func(w http.ResponseWriter, r *http.Request) {
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(err)
			}
			fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(content))
			buf.Write(content[:len(content)/2])
			buf.Flush()
			conn.Close()
		}), source: true},
		{name: "truncated body", url: serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(content)+100))
			w.Write(content)
		}), source: true},
		{name: "corrupt byte", url: serve(t, func(w http.ResponseWriter, r *http.Request) { w.Write(corrupt) }),
			wantSize: int64(len(content)), wantDigest: digestOf(content), source: true, want: cache.ErrMismatch, says: "digest"},
		{name: "wrong size", url: serve(t, func(w http.ResponseWriter, r *http.Request) { w.Write(content) }),
			wantSize: 10, source: true, want: cache.ErrMismatch},
		{name: "bad scheme", url: "ftp://example.com/x", source: true, says: "scheme"},
		{name: "disk full, size known", url: p.url("x"), wantSize: int64(len(content)), capacity: 1000, want: cache.ErrDiskFull},
		{name: "disk full, content length", url: p.url("x"), wantSize: -1, capacity: 1000, want: cache.ErrDiskFull},
		{name: "disk full, chunked", url: serve(t, func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i < len(content); i += 4096 {
				w.Write(content[i : i+4096])
				http.NewResponseController(w).Flush()
			}
		}), wantSize: -1, capacity: 100_000, want: cache.ErrDiskFull},
		{name: "over max bytes", url: p.url("x"), wantSize: -1, maxBytes: 1000, want: archive.ErrTooLarge},
		{name: "over max bytes, chunked", url: serve(t, func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i < len(content); i += 4096 {
				w.Write(content[i : i+4096])
				http.NewResponseController(w).Flush()
			}
		}), wantSize: -1, maxBytes: 100_000, want: archive.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, dir := openCache(t, tt.capacity)
			f := &Fetcher{StallTimeout: 5 * time.Second, MaxBytes: tt.maxBytes}
			wantSize := tt.wantSize
			if wantSize == 0 {
				wantSize = -1
			}
			_, err := f.Fetch(context.Background(), c, "x", cache.LevelWorkflow, tt.url, wantSize, tt.wantDigest, false)
			if err == nil {
				t.Fatalf("Fetch = nil; want an error")
			}
			if got := errors.Is(err, ErrSource); got != tt.source {
				t.Errorf("Fetch = %v; errors.Is(err, ErrSource) = %v, want %v", err, got, tt.source)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Fetch = %v; want an error wrapping %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("Fetch = %q; want it to say %q", err, tt.says)
			}
			if strings.Contains(err.Error(), "token=") {
				t.Errorf("Fetch = %q; want no token in the message", err)
			}
			checkEmpty(t, c, dir)
		})
	}
}

func TestFetchStall(t *testing.T) {
	const stall = 200 * time.Millisecond
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	tests := []struct {
		name string
		h    http.HandlerFunc
	}{
		{name: "after headers", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(200)
			http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}},
		{name: "after some bytes", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			w.Write(make([]byte, 10))
			http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}},
		{name: "before headers", h: func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, dir := openCache(t, 0)
			f := &Fetcher{StallTimeout: stall}
			start := time.Now()
			_, err := f.Fetch(context.Background(), c, "x", cache.LevelWorkflow, serve(t, tt.h), -1, "", false)
			took := time.Since(start)
			if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "no byte for 200ms") {
				t.Errorf("Fetch = %v; want ErrSource saying no byte for 200ms", err)
			}
			if took > 10*stall {
				t.Errorf("Fetch took %v to see a stall of %v", took, stall)
			}
			checkEmpty(t, c, dir)
		})
	}
}

func TestFetchCancelled(t *testing.T) {
	started := make(chan struct{})
	url := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(200)
		http.NewResponseController(w).Flush()
		close(started)
		<-r.Context().Done()
	})
	c, dir := openCache(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	_, err := fetcher().Fetch(ctx, c, "x", cache.LevelWorkflow, url, -1, "", false)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrSource) {
		t.Errorf("Fetch with a cancelled context = %v; want context.Canceled, not ErrSource", err)
	}
	checkEmpty(t, c, dir)
}

func TestFetchDirFailures(t *testing.T) {
	tree := t.TempDir() + "/tree"
	if err := writeTree(tree, map[string]string{"a": strings.Repeat("a", 100_000), "b": strings.Repeat("b", 100_000)}); err != nil {
		t.Fatal(err)
	}
	var tarBuf bytes.Buffer
	if err := archive.WriteTar(tree, &tarBuf); err != nil {
		t.Fatal(err)
	}
	var unsafe bytes.Buffer
	tw := tar.NewWriter(&unsafe)
	tw.WriteHeader(&tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
	tw.Write([]byte("x"))
	tw.Close()

	tests := []struct {
		name     string
		h        http.HandlerFunc
		capacity int64
		source   bool
		want     error
	}{
		{name: "dies mid-stream", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(DirHeader, "1")
			w.Write(tarBuf.Bytes()[:tarBuf.Len()/2])
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		}, source: true},
		{name: "clean end mid-archive", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(DirHeader, "1")
			w.Write(tarBuf.Bytes()[:tarBuf.Len()/2])
		}, source: true},
		{name: "unsafe entry", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(DirHeader, "1")
			w.Write(unsafe.Bytes())
		}, source: true, want: archive.ErrUnsafe},
		{name: "not a tar", h: func(w http.ResponseWriter, r *http.Request) {
			w.Write(bytes.Repeat([]byte("garbage!"), 200))
		}, source: true},
		{name: "disk full", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(DirHeader, "1")
			w.Write(tarBuf.Bytes())
		}, capacity: 1000, want: cache.ErrDiskFull},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, dir := openCache(t, tt.capacity)
			_, err := fetcher().Fetch(context.Background(), c, "d", cache.LevelWorkflow, serve(t, tt.h), -1, "", true)
			if err == nil {
				t.Fatalf("Fetch = nil; want an error")
			}
			if got := errors.Is(err, ErrSource); got != tt.source {
				t.Errorf("Fetch = %v; errors.Is(err, ErrSource) = %v, want %v", err, got, tt.source)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Fetch = %v; want an error wrapping %v", err, tt.want)
			}
			checkEmpty(t, c, dir)
		})
	}
}

func TestFetchManagerSecret(t *testing.T) {
	content := []byte("from the manager's store")
	var mu sync.Mutex
	auth := map[string]string{}
	handler := func(who string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			auth[who] = r.Header.Get("Authorization")
			mu.Unlock()
			w.Write(content)
		}
	}
	manager := httptest.NewServer(handler("manager"))
	t.Cleanup(manager.Close)
	origin := httptest.NewServer(handler("origin"))
	t.Cleanup(origin.Close)
	f := &Fetcher{Manager: manager.URL, ManagerSecret: "manager-secret", StallTimeout: 5 * time.Second}
	urls := map[string]string{"manager": manager.URL + "/files/m", "origin": origin.URL + "/files/o", "manager, other path": manager.URL + "/elsewhere/m"}
	for _, name := range []string{"m", "o", "e"} {
		c, _ := openCache(t, 0)
		u := map[string]string{"m": urls["manager"], "o": urls["origin"], "e": urls["manager, other path"]}[name]
		if _, err := f.Fetch(context.Background(), c, name, cache.LevelWorkflow, u, int64(len(content)), digestOf(content), false); err != nil {
			t.Fatalf("Fetch(%s) = %v", u, err)
		}
		if name == "m" {
			mu.Lock()
			if got := auth["manager"]; got != "Bearer manager-secret" {
				t.Errorf("manager got Authorization %q; want the bearer secret", got)
			}
			mu.Unlock()
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if got := auth["origin"]; got != "" {
		t.Errorf("origin got Authorization %q; want none", got)
	}
	if got := auth["manager"]; got != "" {
		t.Errorf("the manager outside /files/ got Authorization %q; want none", got)
	}
}

func TestFetchFileURL(t *testing.T) {
	src := t.TempDir()
	content := []byte("a local file")
	file := filepath.Join(src, "f.txt")
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(src, "tree")
	if err := writeTree(tree, map[string]string{"x": "1", "y/z*": "2", "y/l@": "z"}); err != nil {
		t.Fatal(err)
	}
	_, treeDigest, _ := archive.DirDigest(tree)
	bad := filepath.Join(src, "bad")
	if err := writeTree(bad, map[string]string{"l@": "/etc/passwd"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		url    string
		dir    bool
		digest string // want, when it succeeds
		source bool   // else: want ErrSource
	}{
		{name: "file", url: "file://" + file, digest: digestOf(content)},
		{name: "localhost", url: "file://localhost" + file, digest: digestOf(content)},
		{name: "directory", url: "file://" + tree, dir: true, digest: treeDigest},
		{name: "missing", url: "file://" + filepath.Join(src, "nope"), source: true},
		{name: "directory as file", url: "file://" + tree, source: true},
		{name: "file as directory", url: "file://" + file, dir: true, source: true},
		{name: "escaping link", url: "file://" + bad, dir: true, source: true},
		{name: "other host", url: "file://example.com" + file, source: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, dir := openCache(t, 0)
			e, err := fetcher().Fetch(context.Background(), c, "x", cache.LevelWorkflow, tt.url, -1, "", tt.dir)
			if tt.source {
				if !errors.Is(err, ErrSource) {
					t.Errorf("Fetch = %v; want ErrSource", err)
				}
				checkEmpty(t, c, dir)
				return
			}
			if err != nil || e.Digest != tt.digest || e.Dir != tt.dir {
				t.Errorf("Fetch = %+v, %v; want digest %s, dir %v", e, err, tt.digest, tt.dir)
			}
		})
	}
}

func TestFetchConcurrentOnce(t *testing.T) {
	p := newPeer(t)
	content := bytes.Repeat([]byte{7}, 1<<20)
	p.putFile(t, "x", content)
	c, _ := openCache(t, 0)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := fetcher().Fetch(context.Background(), c, "x", cache.LevelWorkflow, p.url("x"), int64(len(content)), "", false)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Fetch = %v", err)
		}
	}
	p.settled(t)
	if got := p.srv.Requests.Load(); got != 1 {
		t.Errorf("the peer served %d requests; want 1", got)
	}
}

func tarGz(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(bytes.Repeat([]byte("u"), int(h.Size)))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestUnpack(t *testing.T) {
	good := tarGz(t, &tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "d/f", Typeflag: tar.TypeReg, Size: 300, Mode: 0o644})
	unsafe := tarGz(t, &tar.Header{Name: "/etc/x", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
	tests := []struct {
		name     string
		archive  []byte // nil: not in the cache
		format   string
		capacity int64
		source   bool  // want ErrSource (else success, or want)
		want     error // when not nil
	}{
		{name: "detected", archive: good},
		{name: "named", archive: good, format: "tar.gz"},
		{name: "missing archive", source: true, want: cache.ErrNotFound},
		{name: "unsafe", archive: unsafe, source: true, want: archive.ErrUnsafe},
		{name: "corrupt", archive: good[:len(good)/2], source: true},
		{name: "not an archive", archive: []byte("hello"), source: true, want: archive.ErrFormat},
		{name: "too large", archive: good, capacity: int64(len(good)) + 100, want: archive.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := openCache(t, tt.capacity)
			if tt.archive != nil {
				if _, err := c.Put("ar", cache.LevelWorkflow, false, -1, "", func(p string) error {
					return os.WriteFile(p, tt.archive, 0o644)
				}); err != nil {
					t.Fatal(err)
				}
			}
			e, err := Unpack(context.Background(), c, "un", cache.LevelWorker, "ar", tt.format)
			if !tt.source && tt.want == nil {
				if err != nil || !e.Dir || e.Size != 300 || e.Level != cache.LevelWorker {
					t.Fatalf("Unpack = %+v, %v; want a 300-byte directory at level worker", e, err)
				}
				b, err := os.ReadFile(filepath.Join(c.Path("un"), "d", "f"))
				if err != nil || len(b) != 300 {
					t.Errorf("unpacked d/f: %d bytes, %v; want 300", len(b), err)
				}
				return
			}
			if got := errors.Is(err, ErrSource); got != tt.source {
				t.Errorf("Unpack = %v; errors.Is(err, ErrSource) = %v, want %v", err, got, tt.source)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Unpack = %v; want an error wrapping %v", err, tt.want)
			}
			if _, ok := c.Get("un"); ok {
				t.Errorf("a failed Unpack left an entry")
			}
		})
	}
}
