package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// rawFrame builds a frame from raw lengths, header and body bytes.
func rawFrame(hlen, blen uint32, header, body string) []byte {
	b := binary.BigEndian.AppendUint32(nil, hlen)
	b = binary.BigEndian.AppendUint32(b, blen)
	return append(append(b, header...), body...)
}

func frame(header, body string) []byte {
	return rawFrame(uint32(len(header)), uint32(len(body)), header, body)
}

func TestExampleExchange(t *testing.T) {
	// The example of docs/library-protocol.md, byte for byte.
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	if err := WriteFrame(w, &Header{Type: TypeCall, ID: 1, Fn: "add"}, []byte("[1,2]")); err != nil {
		t.Fatal(err)
	}
	if err := WriteFrame(w, &Header{Type: TypeResult, ID: 1, OK: true}, []byte("3")); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	want := string(frame(`{"type":"call","id":1,"fn":"add","timeout_ms":0}`, "[1,2]")) +
		string(frame(`{"type":"result","id":1,"ok":true}`, "3"))
	if got := buf.String(); got != want {
		t.Errorf("frames = %q; want %q", got, want)
	}
	if want[0:8] != "\x00\x00\x00\x30\x00\x00\x00\x05" || strings.Index(want, "\x00\x00\x00\x22\x00\x00\x00\x01") < 0 {
		t.Errorf("lengths differ from the protocol document's example: %q", want)
	}
}

func TestRoundTrip(t *testing.T) {
	headers := []Header{
		{Type: TypeCall, ID: 1, Fn: "add", TimeoutMS: 1500},
		{Type: TypeCancel, ID: 1<<64 - 1},
		{Type: TypeResult, ID: 7, OK: true},
		{Type: TypeResult, ID: 8, Error: "boom \"quoted\" \\ \x00\x1f\u2028 é", Traceback: "line 1\n\tline 2\r\n"},
		{Type: TypeResult, ID: 9, Error: "cancelled", Cancelled: true},
		{Type: TypeLog, Msg: "hello, 世界"},
	}
	bodies := [][]byte{nil, []byte("[1,2]"), bytes.Repeat([]byte{0, 1, 2, 0xff}, 3<<17)}
	var buf bytes.Buffer
	w := bufio.NewWriterSize(&buf, 4096)
	var want []Frame
	for i, h := range headers {
		body := bodies[i%len(bodies)]
		if err := WriteFrame(w, &h, body); err != nil {
			t.Fatal(err)
		}
		want = append(want, Frame{Header: h, Body: body})
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReaderSize(&buf, 16) // smaller than the headers: the copy path
	var got []Frame
	for {
		f, err := ReadFrame(r)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("ReadFrame: %v", err)
		}
		got = append(got, f)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d frames; want %d", len(got), len(want))
	}
	for i := range want {
		// cmp.Diff walks a byte slice element by element: slow for megabytes.
		if diff := cmp.Diff(want[i].Header, got[i].Header); diff != "" {
			t.Errorf("frame %d header mismatch (-want +got):\n%s", i, diff)
		}
		if !bytes.Equal(want[i].Body, got[i].Body) || (want[i].Body == nil) != (got[i].Body == nil) {
			t.Errorf("frame %d body = %d bytes; want %d", i, len(got[i].Body), len(want[i].Body))
		}
	}
}

func TestInvalidUTF8Header(t *testing.T) {
	h := Header{Type: TypeLog, Msg: "a\xffb"}
	var got Header
	if err := json.Unmarshal(AppendHeader(nil, &h), &got); err != nil {
		t.Fatal(err)
	}
	if got.Msg != "a\ufffdb" {
		t.Errorf("Msg = %q; want %q", got.Msg, "a\ufffdb")
	}
}

func TestReadFrameErrors(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		want  string // substring of the error; "" for io.EOF
	}{
		{"empty", nil, ""},
		{"short lengths", []byte{0, 0, 0}, "inside a frame's lengths"},
		{"header over limit", rawFrame(MaxHeader+1, 0, "", ""), "header of 65537 bytes is over the limit"},
		{"body over limit", rawFrame(2, MaxBody+1, "{}", ""), "body of 67108865 bytes is over the limit"},
		{"empty header", rawFrame(0, 0, "", ""), "empty header"},
		{"array header", frame(`[1]`, ""), "not a JSON object"},
		{"null header", frame(`null`, ""), "not a JSON object"},
		{"bad JSON", frame(`{"type":`, ""), "header"},
		{"wrong field type", frame(`{"id":"x"}`, ""), "header"},
		{"ends in header", rawFrame(10, 0, `{"ty`, ""), "inside a frame's header"},
		{"ends in body", rawFrame(2, 10, `{}`, "abc"), "inside a frame's body"},
		{"ends in huge body", rawFrame(2, MaxBody, `{}`, "abc"), "inside a frame's body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrame(bufio.NewReader(bytes.NewReader(tt.input)))
			if tt.want == "" {
				if err != io.EOF {
					t.Fatalf("ReadFrame = %v; want io.EOF", err)
				}
				return
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ReadFrame = %v; want an ErrMalformed containing %q", err, tt.want)
			}
			var me *MalformedError
			if !errors.As(err, &me) || me.Reason == "" {
				t.Errorf("ReadFrame = %#v; want a *MalformedError with a reason", err)
			}
		})
	}
}

func TestReadFrameUnknownFields(t *testing.T) {
	in := frame(`{"type":"result","id":3,"ok":true,"future":{"a":[1,2]},"x":null}`, "42")
	f, err := ReadFrame(bufio.NewReader(bytes.NewReader(in)))
	if err != nil {
		t.Fatal(err)
	}
	want := Frame{Header: Header{Type: TypeResult, ID: 3, OK: true}, Body: []byte("42")}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("frame mismatch (-want +got):\n%s", diff)
	}
}

func TestWriteFrameLimits(t *testing.T) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	if err := WriteFrame(w, &Header{Type: TypeLog, Msg: strings.Repeat("x", MaxHeader)}, nil); err == nil {
		t.Error("WriteFrame with an overlong header succeeded")
	}
	if err := WriteFrame(w, &Header{Type: TypeResult}, make([]byte, MaxBody+1)); err == nil {
		t.Error("WriteFrame with an overlong body succeeded")
	}
	w.Flush()
	if buf.Len() != 0 {
		t.Errorf("refused frames wrote %d bytes", buf.Len())
	}
}

func TestHandshake(t *testing.T) {
	tests := []struct {
		line string
		want Handshake
		err  string
	}{
		{line: "TRELLIS-LIBRARY|1|math|add,mul\n", want: Handshake{Version: 1, Name: "math", Functions: []string{"add", "mul"}}},
		{line: "TRELLIS-LIBRARY|1|my lib é|a.b-c_D9", want: Handshake{Version: 1, Name: "my lib é", Functions: []string{"a.b-c_D9"}}},
		{line: "TRELLIS-LIBRARY|1|none|\n", want: Handshake{Version: 1, Name: "none"}},
		{line: "TRELLIS-LIBRARY|2|math|add\n", err: "unsupported protocol version 2"},
		{line: "TRELLIS-LIBRARY|01|math|add\n", err: "not a number"},
		{line: "TRELLIS-LIBRARY|x|math|add\n", err: "not a number"},
		{line: "TRELLIS-LIBRARY|1|math|add,\n", err: `invalid function name ""`},
		{line: "TRELLIS-LIBRARY|1|math|a b\n", err: "invalid function name"},
		{line: "TRELLIS-LIBRARY|1|math|add,add\n", err: "duplicate function"},
		{line: "TRELLIS-LIBRARY|1||add\n", err: "invalid library name"},
		{line: "TRELLIS-LIBRARY|1|a\tb|add\n", err: "invalid library name"},
		{line: "TRELLIS-LIBRARY|1|math|add|x\n", err: "want TRELLIS-LIBRARY"},
		{line: "TRELLIS-LIBRARY|1|math|add\r\n", err: "invalid function name"},
		{line: "hello world\n", err: "want TRELLIS-LIBRARY"},
		{line: "", err: "want TRELLIS-LIBRARY"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := ParseHandshake([]byte(tt.line))
			if tt.err != "" {
				if !errors.Is(err, ErrHandshake) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseHandshake(%q) = %v; want an ErrHandshake containing %q", tt.line, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHandshake(%q): %v", tt.line, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseHandshake(%q) mismatch (-want +got):\n%s", tt.line, diff)
			}
			line, err := FormatHandshake(got)
			if err != nil || line != strings.TrimSuffix(tt.line, "\n")+"\n" {
				t.Errorf("FormatHandshake = %q, %v; want %q", line, err, tt.line)
			}
		})
	}
}

func TestReadHandshake(t *testing.T) {
	tests := []struct {
		name, input, err string
		rest             string // what remains for frames
	}{
		{name: "ok", input: "TRELLIS-LIBRARY|1|m|f\nREST", rest: "REST"},
		{name: "empty", input: "", err: "EOF"},
		{name: "unterminated", input: "TRELLIS-LIBRARY|1|m|f", err: "ends inside the line"},
		{name: "overlong", input: "TRELLIS-LIBRARY|1|m|" + strings.Repeat("f", MaxHandshake) + "\n", err: "no end of line within"},
		{name: "garbage", input: "hello\n", err: "want TRELLIS-LIBRARY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tt.input), 16)
			h, err := ReadHandshake(r)
			if tt.err == "EOF" {
				if err != io.EOF {
					t.Fatalf("ReadHandshake = %v; want io.EOF", err)
				}
				return
			}
			if tt.err != "" {
				if !errors.Is(err, ErrHandshake) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ReadHandshake = %v; want an ErrHandshake containing %q", err, tt.err)
				}
				return
			}
			if err != nil || h.Name != "m" {
				t.Fatalf("ReadHandshake = %+v, %v", h, err)
			}
			if rest, _ := io.ReadAll(r); string(rest) != tt.rest {
				t.Errorf("rest = %q; want %q", rest, tt.rest)
			}
		})
	}
}

func TestFormatHandshakeRefuses(t *testing.T) {
	for _, h := range []Handshake{
		{Version: 2, Name: "x"},
		{Version: 1, Name: "a|b"},
		{Version: 1, Name: "x", Functions: []string{"a,b"}},
		{Version: 1, Name: "x", Functions: []string{strings.Repeat("f", MaxHandshake)}},
	} {
		if line, err := FormatHandshake(h); !errors.Is(err, ErrHandshake) {
			t.Errorf("FormatHandshake(%+v) = %q, %v; want an ErrHandshake", h, line, err)
		}
	}
}

func BenchmarkWriteReadFrame(b *testing.B) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	r := bufio.NewReader(&buf)
	h := Header{Type: TypeCall, ID: 12345, Fn: "add", TimeoutMS: 1000}
	body := []byte("[1,2]")
	b.ReportAllocs()
	for b.Loop() {
		if err := WriteFrame(w, &h, body); err != nil {
			b.Fatal(err)
		}
		w.Flush()
		if _, err := ReadFrame(r); err != nil {
			b.Fatal(err)
		}
	}
}
