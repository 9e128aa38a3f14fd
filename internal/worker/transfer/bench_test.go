package transfer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"

	"trellis/internal/worker/cache"
)

const benchBytes = 64 << 20

// benchPeer is a peer holding one 64 MiB file of random bytes.
func benchPeer(b *testing.B) (*peer, cache.Entry) {
	b.Helper()
	p := newPeer(b)
	content := make([]byte, benchBytes)
	rand.Read(content)
	return p, p.putFile(b, "big", content)
}

// BenchmarkPeerTransfer64MiB moves one 64 MiB file from a Server to a
// Fetcher over 127.0.0.1: send (sendfile), receive, hash, write, check.
// Compare its MB/s with BenchmarkFileCopy64MiB's.
func BenchmarkPeerTransfer64MiB(b *testing.B) {
	p, e := benchPeer(b)
	c, _ := openCache(b, 0)
	f := &Fetcher{}
	url := p.url("big")
	b.SetBytes(benchBytes)
	b.ResetTimer()
	for b.Loop() {
		if _, err := f.Fetch(context.Background(), c, "big", cache.LevelWorkflow, url, e.Size, e.Digest, false); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := c.Remove("big"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkFileCopy64MiB is the baseline: a plain copy of the same bytes
// on the same disk, as cp makes it (io.Copy between files lets the kernel
// copy, with copy_file_range on Linux).
func BenchmarkFileCopy64MiB(b *testing.B) {
	p, _ := benchPeer(b)
	benchCopy(b, p.cache.Path("big"), func(dst io.Writer, src io.Reader) error {
		_, err := io.Copy(dst, src)
		return err
	})
}

// BenchmarkFileCopyUserspace64MiB copies through a 1 MiB buffer in user
// space, without the kernel's help: the floor of any copy that looks at
// the bytes.
func BenchmarkFileCopyUserspace64MiB(b *testing.B) {
	p, _ := benchPeer(b)
	buf := make([]byte, 1<<20)
	benchCopy(b, p.cache.Path("big"), func(dst io.Writer, src io.Reader) error {
		_, err := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, buf)
		return err
	})
}

// BenchmarkFileCopyHashed64MiB copies through a 1 MiB buffer and computes
// the SHA-256 the cache checks, on one goroutine: what a verified local
// copy costs.
func BenchmarkFileCopyHashed64MiB(b *testing.B) {
	p, _ := benchPeer(b)
	buf := make([]byte, 1<<20)
	benchCopy(b, p.cache.Path("big"), func(dst io.Writer, src io.Reader) error {
		h := sha256.New()
		_, err := io.CopyBuffer(io.MultiWriter(dst, h), struct{ io.Reader }{src}, buf)
		return err
	})
}

func benchCopy(b *testing.B, src string, copyFn func(io.Writer, io.Reader) error) {
	dst := filepath.Join(b.TempDir(), "copy")
	b.SetBytes(benchBytes)
	b.ResetTimer()
	for b.Loop() {
		in, err := os.Open(src)
		if err != nil {
			b.Fatal(err)
		}
		out, err := os.Create(dst)
		if err != nil {
			b.Fatal(err)
		}
		if err := copyFn(out, in); err != nil {
			b.Fatal(err)
		}
		in.Close()
		if err := out.Close(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.Remove(dst)
		b.StartTimer()
	}
}
