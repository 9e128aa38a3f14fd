package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// Limits of one frame.
const (
	// MaxHeader is the largest header, in bytes.
	MaxHeader = 64 << 10
	// MaxBody is the largest body, in bytes; larger arguments and results
	// travel as files.
	MaxBody = 64 << 20
)

// Frame types.
const (
	// TypeCall is a call, worker to library.
	TypeCall = "call"
	// TypeCancel asks the library to stop a call, worker to library.
	TypeCancel = "cancel"
	// TypeResult answers a call, library to worker.
	TypeResult = "result"
	// TypeLog carries a log message, library to worker.
	TypeLog = "log"
)

// ErrMalformed is matched (with errors.Is) by every error that ReadFrame
// returns for bytes that break the protocol.
var ErrMalformed = errors.New("wire: malformed frame")

// MalformedError describes bytes that break the frame format. It matches
// ErrMalformed.
type MalformedError struct {
	// Reason says what is wrong, e.g. "header of 70000 bytes is over the
	// limit of 65536".
	Reason string
}

// Error returns "wire: malformed frame: " and the reason.
func (e *MalformedError) Error() string { return "wire: malformed frame: " + e.Reason }

// Is reports whether target is ErrMalformed.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

func malformed(format string, args ...any) error {
	return &MalformedError{Reason: fmt.Sprintf(format, args...)}
}

// Header is the JSON header of a frame. Which fields mean something depends
// on Type; see the protocol document.
type Header struct {
	// Type is one of TypeCall, TypeCancel, TypeResult and TypeLog.
	Type string `json:"type"`
	// ID names the call, for call, cancel and result frames.
	ID uint64 `json:"id"`
	// Fn is the function name of a call.
	Fn string `json:"fn"`
	// TimeoutMS is a call's time limit in milliseconds; 0 means none.
	TimeoutMS int64 `json:"timeout_ms"`
	// OK reports that a result succeeded; its body is then the result.
	OK bool `json:"ok"`
	// Error is the message of a failed result.
	Error string `json:"error"`
	// Traceback is where a failed result failed, optional.
	Traceback string `json:"traceback"`
	// Cancelled reports that a result answers a cancelled call.
	Cancelled bool `json:"cancelled"`
	// Msg is the text of a log frame.
	Msg string `json:"msg"`
	// Dir is the absolute path of a call's own directory, where its input
	// files are and its output files go; "" for a call without files.
	Dir string `json:"dir"`
	// Key is a call's idempotency key, "SESSION/KEY": the same for every
	// attempt of the call; "" when the worker gives none.
	Key string `json:"key"`
}

// Frame is one protocol frame.
type Frame struct {
	Header Header
	// Body is the raw body: a call's arguments or a result's value. It is
	// nil when empty.
	Body []byte
}

// firstAlloc bounds the first allocation for a body; the rest grows as
// bytes actually arrive.
const firstAlloc = 1 << 20

// ReadFrame reads one frame. It returns io.EOF when r ends before the first
// byte of a frame, an error matching ErrMalformed for bytes that break the
// protocol (including a stream that ends inside a frame), and r's own error
// otherwise. The returned body does not alias r's buffer.
func ReadFrame(r *bufio.Reader) (Frame, error) {
	var f Frame
	var lens [8]byte
	if n, err := io.ReadFull(r, lens[:]); err != nil {
		if err == io.EOF {
			return f, io.EOF
		}
		if err == io.ErrUnexpectedEOF {
			return f, malformed("stream ends inside a frame's lengths (%d of 8 bytes)", n)
		}
		return f, err
	}
	hlen := binary.BigEndian.Uint32(lens[0:4])
	blen := binary.BigEndian.Uint32(lens[4:8])
	if hlen > MaxHeader {
		return f, malformed("header of %d bytes is over the limit of %d", hlen, MaxHeader)
	}
	if blen > MaxBody {
		return f, malformed("body of %d bytes is over the limit of %d", blen, MaxBody)
	}
	if hlen == 0 {
		return f, malformed("empty header")
	}
	var hbuf []byte
	if int(hlen) <= r.Size() {
		// Peek avoids a copy: the header is decoded before the buffer moves.
		p, err := r.Peek(int(hlen))
		if err != nil {
			return f, readErr(err, "header")
		}
		hbuf = p
	} else {
		hbuf = make([]byte, hlen)
		if _, err := io.ReadFull(r, hbuf); err != nil {
			return f, readErr(err, "header")
		}
	}
	err := decodeHeader(hbuf, &f.Header)
	if int(hlen) <= r.Size() {
		_, _ = r.Discard(int(hlen)) // Peek succeeded, so this cannot fail
	}
	if err != nil {
		return f, err
	}
	if blen == 0 {
		return f, nil
	}
	body, err := readBody(r, int(blen))
	if err != nil {
		return f, err
	}
	f.Body = body
	return f, nil
}

// readBody reads n bytes, allocating at most firstAlloc ahead of what has
// arrived.
func readBody(r *bufio.Reader, n int) ([]byte, error) {
	if n <= firstAlloc {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, readErr(err, "body")
		}
		return b, nil
	}
	b := make([]byte, 0, firstAlloc)
	for len(b) < n {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grow by append's policy
		}
		k, err := io.ReadFull(r, b[len(b):min(cap(b), n)])
		b = b[:len(b)+k]
		if err != nil {
			return nil, readErr(err, "body")
		}
	}
	return b, nil
}

func readErr(err error, part string) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return malformed("stream ends inside a frame's %s", part)
	}
	return err
}

// decodeHeader decodes a header that must be a JSON object.
func decodeHeader(b []byte, h *Header) error {
	if decodeHeaderFast(b, h) {
		return nil
	}
	*h = Header{}
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 || b[0] != '{' {
		return malformed("header is not a JSON object: %s", quoteStart(b))
	}
	if err := json.Unmarshal(b, h); err != nil {
		return malformed("header %s: %v", quoteStart(b), err)
	}
	return nil
}

// quoteStart quotes the first bytes of b for an error message.
func quoteStart(b []byte) string {
	const max = 64
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}

// WriteFrame writes one frame to w without flushing it. It refuses a body
// over MaxBody and a header that encodes to more than MaxHeader bytes; then
// nothing is written.
func WriteFrame(w *bufio.Writer, h *Header, body []byte) error {
	if len(body) > MaxBody {
		return fmt.Errorf("wire: body of %d bytes is over the limit of %d", len(body), MaxBody)
	}
	buf := w.AvailableBuffer()
	buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0)
	buf = AppendHeader(buf, h)
	hlen := len(buf) - 8
	if hlen > MaxHeader {
		return fmt.Errorf("wire: header of %d bytes is over the limit of %d", hlen, MaxHeader)
	}
	binary.BigEndian.PutUint32(buf[0:4], uint32(hlen))
	binary.BigEndian.PutUint32(buf[4:8], uint32(len(body)))
	if _, err := w.Write(buf); err != nil {
		return err
	}
	if len(body) > 0 {
		if _, err := w.Write(body); err != nil {
			return err
		}
	}
	return nil
}

// AppendHeader appends h as a JSON object to dst. It writes type always, id
// for call, cancel and result frames, timeout_ms for calls, ok for results,
// and every other field when it is not empty.
func AppendHeader(dst []byte, h *Header) []byte {
	dst = append(dst, `{"type":`...)
	dst = appendString(dst, h.Type)
	hasID := h.Type == TypeCall || h.Type == TypeCancel || h.Type == TypeResult
	if hasID || h.ID != 0 {
		dst = append(dst, `,"id":`...)
		dst = strconv.AppendUint(dst, h.ID, 10)
	}
	if h.Fn != "" {
		dst = append(dst, `,"fn":`...)
		dst = appendString(dst, h.Fn)
	}
	if h.Type == TypeCall || h.TimeoutMS != 0 {
		dst = append(dst, `,"timeout_ms":`...)
		dst = strconv.AppendInt(dst, h.TimeoutMS, 10)
	}
	if h.Type == TypeResult || h.OK {
		dst = append(dst, `,"ok":`...)
		dst = strconv.AppendBool(dst, h.OK)
	}
	if h.Error != "" {
		dst = append(dst, `,"error":`...)
		dst = appendString(dst, h.Error)
	}
	if h.Traceback != "" {
		dst = append(dst, `,"traceback":`...)
		dst = appendString(dst, h.Traceback)
	}
	if h.Cancelled {
		dst = append(dst, `,"cancelled":true`...)
	}
	if h.Dir != "" {
		dst = append(dst, `,"dir":`...)
		dst = appendString(dst, h.Dir)
	}
	if h.Key != "" {
		dst = append(dst, `,"key":`...)
		dst = appendString(dst, h.Key)
	}
	if h.Msg != "" {
		dst = append(dst, `,"msg":`...)
		dst = appendString(dst, h.Msg)
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
