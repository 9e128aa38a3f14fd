// Package framed carries a stream of protobuf messages over one byte
// stream (a TCP or TLS connection that an HTTP/1.1 Upgrade handed over),
// each message one frame, read and written by the goroutine that uses it.
// A worker's Work stream may go this way instead of over HTTP/2, whose
// frames, flow control and goroutine hand-offs cost the manager about half
// of its CPU per task (docs/benchmarks.md).
//
// A frame is a uvarint n, then n bytes: one byte of kind, then the payload.
// A message frame (kindMessage) holds one encoded message; a compressed
// one (kindGzip), one encoded message in gzip, for messages of at least the
// stream's compressMin bytes (as the HTTP/2 stream compresses). An end frame
// (kindEnd) says why the sender ends the stream: a connect.Code byte and a
// message in UTF-8; the reader's Receive returns it as a *connect.Error,
// as an HTTP/2 stream's end would. A frame longer than the limit, or of
// an unknown kind, is an error that names it; the stream is then unusable.
package framed

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"connectrpc.com/connect"
	goproto "google.golang.org/protobuf/proto"
)

// Upgrade is the protocol name of the HTTP/1.1 Upgrade that hands a
// connection over to a framed Work stream; Path is where it is asked.
const (
	Upgrade = "trellis-work/1"
	Path    = "/trellis.v1.Manager/WorkFramed"
)

const (
	kindMessage byte = 0
	kindEnd     byte = 1
	kindGzip    byte = 2
)

// ErrTooLarge is what a frame or message over the stream's limit gives
// (wrapped, with the sizes).
var ErrTooLarge = errors.New("over the size limit")

// Stream sends Out and receives In messages on a connection. Send and
// Receive may be called from two goroutines at once; Send is safe for
// several.
type Stream[Out, In goproto.Message] struct {
	conn        net.Conn
	r           *bufio.Reader
	max         int // bytes of one frame's payload, and of one message, at most
	compressMin int // messages this long or longer go compressed (0: none)
	newIn       func() In

	wmu sync.Mutex
	w   *bufio.Writer
	buf []byte // reused for encoding (under wmu), up to keepBuf
	rb  []byte // reused for reading (Receive is not concurrent), up to keepBuf
}

// keepBuf bounds the buffers a stream keeps between messages: one large
// message must not leave megabytes behind on each of a manager's
// thousands of streams.
const keepBuf = 64 << 10

// New returns a stream on conn that reads through r (which may hold bytes
// already read from conn: an Upgrade's buffered reader), refuses frames
// and messages over max bytes, compresses the messages it sends of
// compressMin bytes or more (0: none), and makes each received message
// with newIn.
func New[Out, In goproto.Message](conn net.Conn, r *bufio.Reader, max, compressMin int, newIn func() In) *Stream[Out, In] {
	if r == nil {
		r = bufio.NewReaderSize(conn, 32<<10)
	}
	return &Stream[Out, In]{conn: conn, r: r, max: max, compressMin: compressMin, newIn: newIn, w: bufio.NewWriterSize(conn, 32<<10)}
}

// Send writes m as one frame and flushes it.
func (s *Stream[Out, In]) Send(m Out) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	b, err := goproto.MarshalOptions{}.MarshalAppend(s.buf[:0], m)
	if err != nil {
		return fmt.Errorf("framed: encode: %w", err)
	}
	if cap(b) <= keepBuf {
		s.buf = b[:0]
	}
	if len(b) > s.max {
		return fmt.Errorf("framed: a message of %d bytes, %w of %d", len(b), ErrTooLarge, s.max)
	}
	if s.compressMin > 0 && len(b) >= s.compressMin {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(b)
		if err := zw.Close(); err != nil {
			return fmt.Errorf("framed: compress: %w", err)
		}
		if z.Len() <= s.max {
			return s.write(kindGzip, z.Bytes())
		}
	}
	return s.write(kindMessage, b)
}

// End sends the end frame for err (nil: a clean end, connect.Code 0) and
// flushes it; the caller then closes the connection.
func (s *Stream[Out, In]) End(err error) error {
	var code connect.Code
	msg := ""
	if err != nil {
		code, msg = connect.CodeOf(err), err.Error()
		var ce *connect.Error
		if errors.As(err, &ce) {
			msg = ce.Message()
		}
	}
	payload := append([]byte{byte(code)}, msg...)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.write(kindEnd, payload[:min(len(payload), s.max)])
}

func (s *Stream[Out, In]) write(kind byte, payload []byte) error {
	var hdr [binary.MaxVarintLen64 + 1]byte
	n := binary.PutUvarint(hdr[:], uint64(len(payload)+1))
	hdr[n] = kind
	if _, err := s.w.Write(hdr[:n+1]); err != nil {
		return err
	}
	if _, err := s.w.Write(payload); err != nil {
		return err
	}
	return s.w.Flush()
}

// Receive reads the next message. After the sender's end frame it returns
// nil for a clean end, as io.EOF, or the error the frame carries as a
// *connect.Error.
func (s *Stream[Out, In]) Receive() (In, error) {
	var zero In
	kind, payload, err := s.readFrame()
	if err != nil {
		return zero, err
	}
	switch kind {
	case kindGzip:
		zr, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return zero, fmt.Errorf("framed: a compressed frame of %d bytes: %w", len(payload), err)
		}
		b, err := io.ReadAll(io.LimitReader(zr, int64(s.max)+1))
		if err != nil {
			return zero, fmt.Errorf("framed: a compressed frame of %d bytes: %w", len(payload), err)
		}
		if len(b) > s.max {
			return zero, fmt.Errorf("framed: a compressed message %w of %d bytes", ErrTooLarge, s.max)
		}
		payload = b
		fallthrough
	case kindMessage:
		m := s.newIn()
		if err := goproto.Unmarshal(payload, m); err != nil {
			return zero, fmt.Errorf("framed: decode a message of %d bytes: %w", len(payload), err)
		}
		return m, nil
	default: // kindEnd: readFrame checked the kinds
		if len(payload) == 0 || payload[0] == 0 {
			return zero, io.EOF
		}
		return zero, connect.NewError(connect.Code(payload[0]), errors.New(string(payload[1:])))
	}
}

// readFrame reads one frame: its kind and payload (valid until the next
// call).
func (s *Stream[Out, In]) readFrame() (byte, []byte, error) {
	n, err := binary.ReadUvarint(s.r)
	if err != nil {
		if err == io.EOF {
			return 0, nil, io.ErrUnexpectedEOF // the peer went without an end frame
		}
		return 0, nil, err
	}
	if n == 0 {
		return 0, nil, errors.New("framed: a frame without its kind byte")
	}
	if n-1 > uint64(s.max) {
		return 0, nil, fmt.Errorf("framed: a frame of %d bytes, %w of %d", n-1, ErrTooLarge, s.max)
	}
	b := s.rb
	if cap(b) < int(n) {
		if b = make([]byte, n); n <= keepBuf {
			s.rb = b
		}
	}
	b = b[:n]
	if _, err := io.ReadFull(s.r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	if b[0] != kindMessage && b[0] != kindEnd && b[0] != kindGzip {
		return 0, nil, fmt.Errorf("framed: a frame of unknown kind %d", b[0])
	}
	return b[0], b[1:], nil
}

// Close closes the connection: a Receive blocked on it returns.
func (s *Stream[Out, In]) Close() error { return s.conn.Close() }
