package sandbox

import "io"

// tailBuffer is an io.Writer that keeps the last limit bytes written to it.
// It grows on demand up to limit and then reuses its storage as a ring, so a
// command that writes nothing costs nothing. It is also an io.ReaderFrom that
// reads straight into that storage, so a pipe is read with no copy buffer.
// It is not safe for concurrent use: on Linux the drainer reads into a
// run's buffers under drains.mu, and collect reads them once it has taken
// the pipes back from the drainer (detach); elsewhere one goroutine per
// stream reads into its buffer and Run reads it only after that goroutine
// is done.
type tailBuffer struct {
	limit   int
	buf     []byte
	pos     int  // in ring mode: index of the oldest byte, and where to write next
	ring    bool // buf has length limit and is full
	written int64
}

func newTailBuffer(limit int) *tailBuffer {
	return &tailBuffer{limit: limit}
}

// Write keeps the tail of p and never fails.
func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	b.written += int64(n)
	if b.limit <= 0 {
		return n, nil
	}
	if n >= b.limit {
		if len(b.buf) != b.limit {
			b.buf = make([]byte, b.limit)
		}
		copy(b.buf, p[n-b.limit:])
		b.pos, b.ring = 0, true
		return n, nil
	}
	if !b.ring {
		if len(b.buf)+n <= b.limit {
			b.buf = append(b.buf, p...)
			return n, nil
		}
		full := make([]byte, b.limit)
		copy(full, b.buf)
		b.pos, b.buf, b.ring = len(b.buf), full, true
	}
	for len(p) > 0 {
		k := copy(b.buf[b.pos:], p)
		p = p[k:]
		b.pos = (b.pos + k) % b.limit
	}
	return n, nil
}

// minGrow is the first allocation ReadFrom makes.
const minGrow = 512

// ReadFrom reads r to end of file, keeping the tail. It reads into the
// buffer's own storage, so it relies on r writing only the n bytes it
// reports, as files and pipes do.
func (b *tailBuffer) ReadFrom(r io.Reader) (int64, error) {
	if b.limit <= 0 {
		n, err := io.Copy(io.Discard, r)
		b.written += n
		return n, err
	}
	var total int64
	for {
		var p []byte
		if b.ring {
			p = b.buf[b.pos:]
		} else {
			room := min(cap(b.buf), b.limit)
			if len(b.buf) == room {
				if room == b.limit {
					b.ring, b.pos = true, 0
					continue
				}
				grown := make([]byte, len(b.buf), min(max(2*cap(b.buf), minGrow), b.limit))
				copy(grown, b.buf)
				b.buf, room = grown, cap(grown)
			}
			p = b.buf[len(b.buf):room]
		}
		n, err := r.Read(p)
		if n > 0 {
			if b.ring {
				b.pos = (b.pos + n) % b.limit
			} else {
				b.buf = b.buf[:len(b.buf)+n]
			}
			b.written += int64(n)
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Bytes returns the kept bytes, oldest first. The result may share storage
// with b, so b must not be written to afterwards.
func (b *tailBuffer) Bytes() []byte {
	if !b.ring {
		return b.buf
	}
	out := make([]byte, 0, b.limit)
	out = append(out, b.buf[b.pos:]...)
	return append(out, b.buf[:b.pos]...)
}

// Truncated reports whether bytes were dropped.
func (b *tailBuffer) Truncated() bool {
	return b.written > int64(b.limit)
}
