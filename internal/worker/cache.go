package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// cache holds the files this worker fetched, by cache name, so that each is
// fetched once however many tasks read it.
type cache struct {
	dir string

	mu       sync.Mutex // guards fetching
	fetching map[string]*fetch
}

// fetch is one download in progress; others wanting the file wait on done.
type fetch struct {
	done chan struct{}
	err  error
}

func openCache(dir string) (*cache, error) {
	if err := os.MkdirAll(filepath.Join(dir, ".tmp"), 0o755); err != nil {
		return nil, fmt.Errorf("worker: create cache: %w", err)
	}
	return &cache{dir: dir, fetching: make(map[string]*fetch)}, nil
}

func (c *cache) path(name string) string { return filepath.Join(c.dir, name) }

// ensure makes ref present in the cache, fetching it from the manager once.
func (w *Worker) ensure(ctx context.Context, ref *pb.FileRef) (string, error) {
	if err := proto.CheckCacheName(ref.Name); err != nil {
		return "", err
	}
	c := w.cache
	p := c.path(ref.Name)
	for {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		c.mu.Lock()
		if f := c.fetching[ref.Name]; f != nil {
			c.mu.Unlock()
			select {
			case <-f.done:
				if f.err != nil {
					return "", f.err
				}
				continue
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		f := &fetch{done: make(chan struct{})}
		c.fetching[ref.Name] = f
		c.mu.Unlock()
		f.err = w.download(ctx, ref, p)
		c.mu.Lock()
		delete(c.fetching, ref.Name)
		c.mu.Unlock()
		close(f.done)
		if f.err != nil {
			return "", f.err
		}
	}
}

// download fetches ref from the manager into dest, checking size and digest.
func (w *Worker) download(ctx context.Context, ref *pb.FileRef, dest string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.base+"/files/"+ref.Name, nil)
	if err != nil {
		return err
	}
	w.authorize(req.Header)
	resp, err := w.files.Do(req)
	if err != nil {
		return fmt.Errorf("fetch %s from the manager: %w", ref.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("fetch %s from the manager: %s: %s", ref.Name, resp.Status, trimSpace(msg))
	}
	if err := w.cache.store(ref, dest, resp.Body); err != nil {
		return fmt.Errorf("fetch %s from the manager: %w", ref.Name, err)
	}
	return nil
}

// store writes r into the cache at dest, read-only, after checking its size
// and digest against ref (and a sha256 cache name against the content).
func (c *cache) store(ref *pb.FileRef, dest string, r io.Reader) error {
	tmp, err := os.CreateTemp(filepath.Join(c.dir, ".tmp"), "get-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if ref.Size > 0 && n != ref.Size {
		return fmt.Errorf("%s: got %d bytes, want %d", ref.Name, n, ref.Size)
	}
	digest := hex.EncodeToString(h.Sum(nil))
	if want := ref.Digest; want != "" && want != "sha256:"+digest {
		return fmt.Errorf("%s: content does not match digest %s", ref.Name, want)
	}
	if want, ok := strings.CutPrefix(ref.Name, "sha256-"); ok && want != digest {
		return fmt.Errorf("%s: content does not match its cache name", ref.Name)
	}
	if err := os.Chmod(tmp.Name(), 0o444); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dest)
}

func trimSpace(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return string(b)
}
