package trellis

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"trellis/internal/dirtar"
	"trellis/internal/proto"
)

type fileKind int

const (
	kindLocal fileKind = iota + 1
	kindBuffer
	kindOutput
	kindURL
	kindTemp
	kindUnpack
)

// CacheLevel says how long workers keep a file.
type CacheLevel int

// Cache levels. enums.go converts them to the wire's.
const (
	CacheTask     CacheLevel = 1 // until the tasks that read it are done
	CacheWorkflow CacheLevel = 2 // until the client closes (the default)
	CacheWorker   CacheLevel = 3 // until the worker exits
	CacheForever  CacheLevel = 4 // across worker restarts
)

// File is a declared piece of data. Its cache name comes from its content
// (local files and buffers) or is unique to it (outputs), so the same data
// is never moved twice to one worker.
type File struct {
	kind     fileKind
	local    string // client path: what to upload, or where an output lands
	data     []byte
	url      string
	from     *File  // kindUnpack: the archive
	format   string // kindUnpack: "tar", "tar.gz", "zip" or "" (by content)
	level    CacheLevel
	replicas int
	depth    int // temp: PruneDepth

	mu      sync.Mutex // guards name, missing, inline, inSession
	name    string
	missing error  // a local file that could not be read
	inline  []byte // the content of a small local file, read while hashing it
	// inSession: an output named after a session and its path (nameIn).
	inSession bool
}

// LocalFile declares a file at the client, uploaded when a task needs it.
func LocalFile(path string) *File {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return &File{kind: kindLocal, local: abs}
}

// Buffer declares a file holding data.
func Buffer(data []byte) *File { return &File{kind: kindBuffer, data: data} }

// Output declares a file that a task produces. When the task succeeds it is
// written to path at the client, unless path is "". Another task may read
// it as an input: that task then waits for the producer.
func Output(path string) *File {
	if path != "" {
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
	}
	var b [12]byte
	rand.Read(b[:])
	return &File{kind: kindOutput, local: path, name: "out-" + hex.EncodeToString(b[:])}
}

// URL declares a file that workers fetch themselves from its origin
// (http, https, or file for a path on the worker). Its cache name comes
// from the URL, so each worker fetches it once.
func URL(url string) *File {
	sum := sha256.Sum256([]byte(url))
	return &File{kind: kindURL, url: url, name: "url-" + hex.EncodeToString(sum[:20])}
}

// Temp declares a file that a task produces and other tasks read. It stays
// in the workers' caches, moves worker to worker, and is never sent to the
// client unless asked (Client.Fetch). If its last copy is lost, the task
// that produced it runs again.
func Temp() *File {
	var b [12]byte
	rand.Read(b[:])
	return &File{kind: kindTemp, name: "tmp-" + hex.EncodeToString(b[:])}
}

// Unpack declares the directory made on a worker by unpacking archive (a
// tar, tar.gz or zip file; format "" tells by content). Each worker
// unpacks a given archive once and caches the result.
func Unpack(archive *File, format string) *File {
	sum := sha256.Sum256([]byte(archive.cacheName() + "|" + format))
	return &File{kind: kindUnpack, from: archive, format: format, name: "unpack-" + hex.EncodeToString(sum[:20])}
}

// Cache sets how long workers keep the file, and returns f.
func (f *File) Cache(level CacheLevel) *File {
	f.level = level
	return f
}

// Keep keeps a temp file in the workers' caches until the client closes,
// so that it may fetch it (Client.Fetch), and returns f. Without it a temp
// file is pruned: unlinked from every worker once no unfinished task reads
// it (see PruneDepth). Keep is Cache(CacheWorkflow).
func (f *File) Keep() *File { return f.Cache(CacheWorkflow) }

// PruneDepth keeps a pruned temp file until the readers of its readers, n
// levels down, are done too, and returns f. A lost file then re-runs at
// most n producers back instead of the whole chain; 0 (the default) frees
// the space soonest. At most 16.
func (f *File) PruneDepth(n int) *File {
	f.depth = n
	return f
}

// Replicas asks that a temp file be kept on n distinct workers, and returns f.
func (f *File) Replicas(n int) *File {
	f.replicas = n
	return f
}

// Name is the file's cache name.
func (f *File) Name() string { return f.cacheName() }

// Path is the client path of a local file or output ("" for buffers).
func (f *File) Path() string { return f.local }

// nameIn names an output with a client path after the session and that
// path, once, for a client of a resumable session (WithSession): a new
// client process that takes the session over then gives the outputs of
// the tasks it submits again the names the manager knows them by. Other
// outputs are named at random (Output), so that runs in other sessions
// that write the same path never share a name.
func (f *File) nameIn(session string) {
	if f.kind != kindOutput || f.local == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.inSession {
		f.name, f.inSession = "out-"+shortHash(session+"\n"+f.local), true
	}
}

// cacheName returns the file's cache name, hashing its content once.
func (f *File) cacheName() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.name != "" {
		return f.name
	}
	switch f.kind {
	case kindBuffer:
		sum := sha256.Sum256(f.data)
		f.name = "sha256-" + hex.EncodeToString(sum[:])
	case kindLocal:
		if fi, err := os.Stat(f.local); err == nil && fi.IsDir() {
			// A directory travels as its deterministic tar stream.
			if _, digest, err := dirtar.DirDigest(f.local); err != nil {
				f.missing = err
				f.name = "missing-" + shortHash(f.local)
			} else {
				f.name = proto.DirPrefix + strings.TrimPrefix(digest, "sha256:")
			}
			return f.name
		}
		h := sha256.New()
		in, err := os.Open(f.local)
		if err == nil {
			var fi os.FileInfo
			if fi, err = in.Stat(); err == nil && !fi.Mode().IsRegular() {
				err = fmt.Errorf("%s is not a regular file", f.local)
			}
			if err == nil && fi.Size() <= proto.MaxInlineBytes {
				// Small enough to travel inside the task: keep it.
				if f.inline, err = io.ReadAll(in); err == nil {
					h.Write(f.inline)
				}
			} else if err == nil {
				_, err = io.Copy(h, in)
			}
			in.Close()
		}
		if err != nil {
			f.missing = err
			f.name = "missing-" + shortHash(f.local)
		} else {
			f.name = "sha256-" + hex.EncodeToString(h.Sum(nil))
		}
	}
	return f.name
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// inlineContent returns the file's content if it is small enough to travel
// inside a message, else nil.
func (f *File) inlineContent() []byte {
	f.cacheName()
	switch {
	case f.kind == kindBuffer && len(f.data) <= proto.MaxInlineBytes:
		if f.data == nil {
			return []byte{}
		}
		return f.data
	case f.kind == kindLocal && f.missing == nil:
		return f.inline
	}
	return nil
}

// upload sends a local file or buffer to the manager unless it is there.
func (c *Client) upload(ctx context.Context, f *File) error {
	name := f.cacheName()
	if f.kind == kindOutput || f.missing != nil {
		return nil
	}
	c.mu.Lock()
	done := c.uploaded[name]
	c.mu.Unlock()
	if done {
		return nil
	}
	head, err := c.fileRequest(ctx, http.MethodHead, name, nil, 0)
	if err != nil {
		return err
	}
	head.Body.Close()
	if head.StatusCode != http.StatusOK {
		var body io.Reader
		var size int64
		if f.kind == kindBuffer {
			body, size = bytes.NewReader(f.data), int64(len(f.data))
		} else if strings.HasPrefix(name, proto.DirPrefix) {
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(dirtar.WriteTar(f.local, pw)) }() // exits when the tar is written or the upload stops reading
			defer pr.Close()
			body, size = pr, -1
		} else {
			in, err := os.Open(f.local)
			if err != nil {
				return fmt.Errorf("upload %s: %w", f.local, err)
			}
			defer in.Close()
			fi, err := in.Stat()
			if err != nil {
				return err
			}
			body, size = in, fi.Size()
		}
		resp, err := c.fileRequest(ctx, http.MethodPut, name, body, size)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return fmt.Errorf("upload %s: %s: %s", f.describe(), resp.Status, msg)
		}
	}
	c.mu.Lock()
	c.uploaded[name] = true
	c.mu.Unlock()
	return nil
}

func (f *File) describe() string {
	if f.kind == kindBuffer {
		return fmt.Sprintf("buffer of %d bytes", len(f.data))
	}
	return f.local
}

// download writes the output name to path, through a temporary file.
func (c *Client) download(ctx context.Context, name, path string) error {
	resp, err := c.fileRequest(ctx, http.MethodGet, name, nil, 0)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("fetch output %s: %s: %s", path, resp.Status, msg)
	}
	if resp.Header.Get(proto.DirHeader) == "1" {
		err = writeLocalDir(ctx, path, resp.Body)
	} else {
		err = writeLocal(path, resp.Body)
	}
	if err != nil {
		return fmt.Errorf("fetch output %s: %w", path, err)
	}
	return nil
}

// writeLocalDir unpacks a directory's tar stream at path, replacing what
// was there only once the whole tree is written.
func writeLocalDir(ctx context.Context, path string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".trellis-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	tree := filepath.Join(tmp, "d")
	if err := dirtar.ExtractTar(ctx, r, tree, 0); err != nil {
		return err
	}
	os.RemoveAll(path)
	return os.Rename(tree, path)
}

// writeLocal writes r to path through a temporary file in the same
// directory, so that path never holds a partial file. The file gets the
// mode os.Create gives (0666 under the umask).
func writeLocal(path string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := createTemp(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// createTemp creates a new file in dir with a random name, as
// os.CreateTemp does but with os.Create's mode rather than 0600.
func createTemp(dir string) (*os.File, error) {
	for {
		var b [8]byte
		rand.Read(b[:])
		f, err := os.OpenFile(filepath.Join(dir, ".trellis-"+hex.EncodeToString(b[:])), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
}

func (c *Client) fileRequest(ctx context.Context, method, name string, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/files/"+name, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
	}
	req.Header.Set("Authorization", "Bearer "+c.secret)
	resp, err := c.files.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, name, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		resp.Body.Close()
		return nil, fmt.Errorf("%w %s: wrong or missing secret", ErrUnauthenticated, c.addr)
	}
	return resp, nil
}
