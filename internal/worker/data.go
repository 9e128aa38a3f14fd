package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/worker/archive"
	"trellis/internal/worker/cache"
	"trellis/internal/worker/transfer"
)

// errEvicted: a claimed copy (Source KIND_CACHE) was evicted before the
// claim came; the worker reported it dropped.
var errEvicted = errors.New("evicted from the cache before the manager claimed it")

// fetch carries out one Fetch from the manager and says how it went.
func (w *Worker) fetch(ctx context.Context, f *pb.Fetch) *pb.FetchDone {
	start := time.Now()
	src := f.GetSource()
	var e cache.Entry
	var err error
	switch src.GetKind() {
	case pb.Source_KIND_CACHE: // a claim of a copy the manager released: held now, if it is still here
		var ok bool
		if e, ok = w.cache.Get(f.Name); !ok {
			err = fmt.Errorf("claim %s: %w", f.Name, errEvicted)
		}
	case pb.Source_KIND_UNPACK: // the archive was staged first
		e, err = transfer.Unpack(ctx, w.cache, f.Name, level(f.Level), src.From, src.Format)
	case pb.Source_KIND_MANAGER:
		size := f.Size
		if f.Dir {
			size = -1 // the store holds its tar stream; the cache measures the tree
		}
		e, err = w.fetcher.Fetch(ctx, w.cache, f.Name, level(f.Level), w.base+src.Url, size, f.Digest, f.Dir)
	case pb.Source_KIND_PEER:
		e, err = cmp.Or(w.peers, w.fetcher).Fetch(ctx, w.cache, f.Name, level(f.Level), src.Url, f.Size, f.Digest, f.Dir)
	default:
		e, err = w.fetcher.Fetch(ctx, w.cache, f.Name, level(f.Level), src.Url, f.Size, f.Digest, f.Dir)
	}
	done := &pb.FetchDone{Id: f.Id, Name: f.Name, Ms: time.Since(start).Milliseconds()}
	if err != nil {
		done.Error = err.Error()
		done.SourceFault = errors.Is(err, transfer.ErrSource) || errors.Is(err, cache.ErrMismatch) || errors.Is(err, archive.ErrUnsafe) || errors.Is(err, errEvicted)
		done.CacheFull = !done.SourceFault && errors.Is(err, cache.ErrDiskFull)
		w.log.Warn("fetch failed", "file", f.Name, "source", src.GetKind(), "err", err)
		return done
	}
	done.Ok, done.Size, done.Digest, done.Dir = true, e.Size, e.Digest, e.Dir
	return done
}

// uploadCached sends a cached file to the manager's store (the manager asked
// for it: a client wants a temp file back).
func (w *Worker) uploadCached(ctx context.Context, name string) error {
	e, ok := w.cache.Get(name)
	if !ok {
		return fmt.Errorf("upload %s: not in the cache", name)
	}
	if e.Dir {
		return fmt.Errorf("upload %s: it is a directory", name)
	}
	f, err := os.Open(w.cache.Path(name))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := w.put(ctx, "/files/"+name, f, e.Size); err != nil {
		return fmt.Errorf("upload %s: %w", name, err)
	}
	return nil
}

// unlink drops files from the cache, returning those it held.
func (w *Worker) unlink(names []string) []string {
	var gone []string
	for _, n := range names {
		if _, held := w.cache.Get(n); held && w.cache.Remove(n) == nil {
			gone = append(gone, n)
		}
	}
	return gone
}

// cachedFiles lists what the cache holds at start: forever-level files
// kept from an earlier run, for the manager to know.
func (w *Worker) cachedFiles() []*pb.CachedFile {
	var out []*pb.CachedFile
	for _, e := range w.cache.Entries() {
		out = append(out, &pb.CachedFile{Name: e.Name, Size: e.Size, Digest: e.Digest, Level: protoLevel(e.Level), Dir: e.Dir})
	}
	return out
}

func cacheDir(workdir string) string { return filepath.Join(workdir, "cache") }
