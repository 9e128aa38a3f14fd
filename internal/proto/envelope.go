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
	// rest is how many bytes of the current envelope's message are still
	// to pass through (one that did not fit in a Read).
	rest int64
}

func (e *envelopeBody) Read(p []byte) (int, error) {
	if e.rest > 0 {
		if int64(len(p)) > e.rest {
			p = p[:e.rest]
		}
		n, err := e.body.Read(p)
		e.rest -= int64(n)
		return n, err
	}
	if len(p) < 5 {
		return e.body.Read(p) // never, from net/http: no whole prefix fits
	}
	if n, err := io.ReadFull(e.body, p[:5]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return n, io.ErrUnexpectedEOF // a cut prefix: the server sees it as such
		}
		return n, err // io.EOF: the stream ended between envelopes
	}
	size := int64(binary.BigEndian.Uint32(p[1:5]))
	if size > int64(len(p)-5) {
		e.rest = size // the prefix alone, the message in the next Reads
		return 5, nil
	}
	n, err := io.ReadFull(e.body, p[5:5+size])
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return 5 + n, err
}

func (e *envelopeBody) Close() error { return e.body.Close() }
