package proto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// envelope returns a message of size bytes in Connect's framing.
func envelope(size int, fill byte) []byte {
	b := make([]byte, 5+size)
	binary.BigEndian.PutUint32(b[1:5], uint32(size))
	for i := 5; i < len(b); i++ {
		b[i] = fill
	}
	return b
}

// writeAsConnect writes each envelope to w as Connect does, the prefix and
// the message in two writes, then closes w.
func writeAsConnect(w *io.PipeWriter, envs [][]byte) {
	for _, e := range envs {
		if _, err := w.Write(e[:5]); err != nil {
			return
		}
		if len(e) > 5 {
			if _, err := w.Write(e[5:]); err != nil {
				return
			}
		}
	}
	w.Close()
}

// TestEnvelopeBodyWholeReads: envelopes written as Connect writes them
// (two writes each) are read back one whole envelope per Read.
func TestEnvelopeBodyWholeReads(t *testing.T) {
	envs := [][]byte{envelope(3, 'a'), envelope(0, 0), envelope(100, 'b'), envelope(16<<10-5, 'c')}
	pr, pw := io.Pipe()
	go writeAsConnect(pw, envs) // exits once every envelope is read (the pipe)
	body := &envelopeBody{body: pr}
	buf := make([]byte, 16<<10)
	var got [][]byte
	for {
		n, err := body.Read(buf)
		if n > 0 {
			got = append(got, bytes.Clone(buf[:n]))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
	}
	if diff := cmp.Diff(envs, got); diff != "" {
		t.Errorf("one Read per envelope (-want +got):\n%s", diff)
	}
}

// TestEnvelopeBodyAfterSmallRead: a Read too small for a prefix gets
// part of it; the next Reads return the rest of the prefix, the message,
// and then whole envelopes again.
func TestEnvelopeBodyAfterSmallRead(t *testing.T) {
	first, second := envelope(3, 'a'), envelope(4, 'b')
	pr, pw := io.Pipe()
	go writeAsConnect(pw, [][]byte{first, second}) // exits once every envelope is read (the pipe)
	body := &envelopeBody{body: pr}
	var got [][]byte
	for _, size := range []int{2, 64, 64, 64} {
		buf := make([]byte, size)
		n, err := body.Read(buf)
		if err != nil {
			t.Fatalf("Read of %d bytes: %v", size, err)
		}
		got = append(got, buf[:n])
	}
	want := [][]byte{first[:2], first[2:5], first[5:], second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reads (-want +got):\n%s", diff)
	}
}

// TestEnvelopeBodySameBytes: whatever the sizes of the envelopes and of
// the reader's buffers (smaller than a prefix too), the bytes read are the
// bytes written.
func TestEnvelopeBodySameBytes(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 1))
		var envs [][]byte
		var want []byte
		for i := range 1 + rng.IntN(20) {
			e := envelope(rng.IntN(300), byte(i))
			envs = append(envs, e)
			want = append(want, e...)
		}
		pr, pw := io.Pipe()
		go writeAsConnect(pw, envs) // exits once every envelope is read (the pipe)
		body := &envelopeBody{body: pr}
		var got []byte
		for {
			size := 1 + rng.IntN(400)
			if rng.IntN(4) == 0 {
				size = 1 + rng.IntN(6) // around the prefix's 5 bytes
			}
			buf := make([]byte, size)
			n, err := body.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("seed %d: Read: %v", seed, err)
			}
		}
		if !bytes.Equal(want, got) {
			t.Fatalf("seed %d: read %d bytes that differ from the %d written", seed, len(got), len(want))
		}
	}
}

// TestEnvelopeBodyCut: a body that ends inside an envelope is an
// unexpected EOF, not a clean end.
func TestEnvelopeBodyCut(t *testing.T) {
	whole := envelope(10, 'x')
	for _, cut := range []int{2, 5, 9} {
		body := &envelopeBody{body: io.NopCloser(bytes.NewReader(whole[:cut]))}
		var err error
		for err == nil {
			_, err = body.Read(make([]byte, 64))
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("body cut after %d bytes: %v, want io.ErrUnexpectedEOF", cut, err)
		}
	}
}

type recordRT struct{ got *http.Request }

func (r *recordRT) RoundTrip(req *http.Request) (*http.Response, error) {
	r.got = req
	return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
}

// TestWholeEnvelopesOnlyStreams: only Connect streaming requests get their
// body read by envelopes; the caller's request is left as it is.
func TestWholeEnvelopesOnlyStreams(t *testing.T) {
	for _, tc := range []struct {
		contentType string
		wrapped     bool
	}{
		{"application/connect+proto", true},
		{"application/proto", false}, // a unary Connect request: one body, no envelopes
		{"application/octet-stream", false},
	} {
		rec := &recordRT{}
		req, _ := http.NewRequest(http.MethodPost, "http://x/y", bytes.NewReader(envelope(1, 'a')))
		req.Header.Set("Content-Type", tc.contentType)
		body := req.Body
		if _, err := WholeEnvelopes(rec).RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		_, wrapped := rec.got.Body.(*envelopeBody)
		if wrapped != tc.wrapped {
			t.Errorf("%s: body read by envelopes = %v, want %v", tc.contentType, wrapped, tc.wrapped)
		}
		if req.Body != body {
			t.Errorf("%s: the caller's request was changed", tc.contentType)
		}
	}
}
