package proto

import (
	"encoding/binary"
	"io"
	"net/http"
	"strings"
)

// WholeEnvelopes wraps the transport of a Go client of the manager (the
// client package, the worker) so that each message of a client stream
// goes out in one HTTP/2 DATA frame instead of two.
//
// Connect writes a stream message to the request body as two writes, its
// 5-byte envelope prefix and then the message, and Go's HTTP/2 transport
// sends (and flushes) a DATA frame for each read of the body: two frames
// and two writes per message, and at the manager two frame reads and two
// wake-ups of the handler reading the stream. The wrapped transport reads
// the body of a Connect streaming request (Content-Type
// application/connect+…) an envelope at a time: the prefix, then the
// message it announces, returned by one Read when they fit. The bytes on
// the wire are the same; other requests are left as they are.
func WholeEnvelopes(next http.RoundTripper) http.RoundTripper {
	return wholeEnvelopes{next: next}
}

type wholeEnvelopes struct{ next http.RoundTripper }

func (t wholeEnvelopes) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody || !strings.HasPrefix(req.Header.Get("Content-Type"), "application/connect+") {
		return t.next.RoundTrip(req)
	}
	r := *req // a RoundTripper leaves the caller's request as it is
	r.Body = &envelopeBody{body: req.Body}
	return t.next.RoundTrip(&r)
}

// envelopeBody reads a stream of envelopes (a byte of flags, a 4-byte
// big-endian length, that many bytes) from body: each Read returns one
// whole envelope when it fits in the caller's buffer, and passes the rest
// through otherwise.
type envelopeBody struct {
	body io.ReadCloser
	// held: bytes of a prefix read from body and not yet returned (a Read
	// of fewer than 5 bytes); rest: how many bytes of the current
	// envelope's message are still to pass through.
	held []byte
	rest int64
	hdr  [5]byte
}

func (e *envelopeBody) Read(p []byte) (int, error) {
	if len(e.held) > 0 {
		n := copy(p, e.held)
		e.held = e.held[n:]
		return n, nil
	}
	if e.rest > 0 {
		if int64(len(p)) > e.rest {
			p = p[:e.rest]
		}
		n, err := e.body.Read(p)
		e.rest -= int64(n)
		return n, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if n, err := io.ReadFull(e.body, e.hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return copy(p, e.hdr[:n]), io.ErrUnexpectedEOF // a cut prefix: the server sees it as such
		}
		return 0, err // io.EOF: the stream ended between envelopes
	}
	size := int64(binary.BigEndian.Uint32(e.hdr[1:]))
	if size > int64(len(p)-5) {
		// The prefix alone (what fits of it), the message in the next Reads.
		n := copy(p, e.hdr[:])
		e.held, e.rest = e.hdr[n:], size
		return n, nil
	}
	copy(p, e.hdr[:])
	n, err := io.ReadFull(e.body, p[5:5+size])
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return 5 + n, err
}

func (e *envelopeBody) Close() error { return e.body.Close() }
