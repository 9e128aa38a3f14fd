package wire

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzReadFrame feeds arbitrary bytes to ReadFrame: it must not panic, must
// classify every failure, and every frame it accepts must survive a write and
// a second read unchanged.
func FuzzReadFrame(f *testing.F) {
	f.Add(frame(`{"type":"call","id":1,"fn":"add","timeout_ms":0}`, "[1,2]"))
	f.Add(frame(`{"type":"result","id":1,"ok":true}`, "3"))
	f.Add(append(frame(`{"type":"log","msg":"hi\n"}`, ""), frame(`{"type":"cancel","id":2}`, "")...))
	f.Add(frame(`{"type":"result","id":2,"ok":false,"error":"x","traceback":"\u00e9","cancelled":true,"extra":[{}]}`, ""))
	f.Add(rawFrame(MaxHeader+1, 0, "", ""))
	f.Add(rawFrame(2, MaxBody, "{}", "short"))
	f.Add([]byte{0, 0, 0, 2, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 16)
		for i := 0; i < 100; i++ {
			fr, err := ReadFrame(r)
			if err == io.EOF {
				return
			}
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("ReadFrame = %v; want io.EOF or ErrMalformed", err)
				}
				return
			}
			var buf bytes.Buffer
			w := bufio.NewWriter(&buf)
			if err := WriteFrame(w, &fr.Header, fr.Body); err != nil {
				// A header with many escaped characters can grow past the
				// limit when written back; nothing else may fail.
				if len(AppendHeader(nil, &fr.Header)) <= MaxHeader {
					t.Fatalf("WriteFrame(%+v): %v", fr.Header, err)
				}
				continue
			}
			w.Flush()
			again, err := ReadFrame(bufio.NewReader(&buf))
			if err != nil {
				t.Fatalf("ReadFrame of rewritten %+v: %v", fr.Header, err)
			}
			if diff := cmp.Diff(fr, again); diff != "" {
				t.Fatalf("frame changed by a write and read (-first +second):\n%s", diff)
			}
		}
	})
}

// FuzzParseHandshake checks that ParseHandshake never panics, refuses with
// ErrHandshake only, and accepts exactly the lines FormatHandshake writes.
func FuzzParseHandshake(f *testing.F) {
	f.Add([]byte("TRELLIS-LIBRARY|1|math|add,mul\n"))
	f.Add([]byte("TRELLIS-LIBRARY|1|none|"))
	f.Add([]byte("TRELLIS-LIBRARY|2|math|add\n"))
	f.Add([]byte("TRELLIS-LIBRARY|1|a|b|c\n"))
	f.Add([]byte("TRELLIS-LIBRARY|+1|é|x,x\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, line []byte) {
		h, err := ParseHandshake(line)
		if err != nil {
			if !errors.Is(err, ErrHandshake) {
				t.Fatalf("ParseHandshake(%q) = %v; want an ErrHandshake", line, err)
			}
			return
		}
		out, err := FormatHandshake(h)
		if err != nil {
			t.Fatalf("FormatHandshake(%+v) of an accepted line: %v", h, err)
		}
		if want := string(bytes.TrimSuffix(line, []byte("\n"))) + "\n"; out != want {
			t.Fatalf("FormatHandshake(ParseHandshake(%q)) = %q", line, out)
		}
		again, err := ReadHandshake(bufio.NewReader(bytes.NewReader([]byte(out))))
		if err != nil {
			t.Fatalf("ReadHandshake(%q): %v", out, err)
		}
		if diff := cmp.Diff(h, again); diff != "" {
			t.Fatalf("handshake changed (-parsed +read):\n%s", diff)
		}
	})
}

// FuzzDecodeHeader checks that the fast header decoder agrees with
// encoding/json on every input it accepts.
func FuzzDecodeHeader(f *testing.F) {
	for _, s := range []string{
		`{"type":"call","id":1,"fn":"add","timeout_ms":0}`,
		`{"type":"result","id":18446744073709551615,"ok":true}`,
		` { "type" : "result" , "id" : 2 , "ok" : false , "error" : "é x" , "cancelled" : true } `,
		`{"type":"log","msg":"a\nb"}`,
		`{"timeout_ms":-5,"timeout_ms":7}`,
		`{"id":01}`, `{"id":1.0}`, `{"id":1e3}`, `{"id":-1}`, `{"ID":3}`, `{"x":1}`, `{}`, `{"ok":null}`,
		`{"timeout_ms":-0}`, `{"type":"\xff"}`, `{"type":"a"}x`, `{"type":"a",}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast Header
		if !decodeHeaderFast(b, &fast) {
			return
		}
		var slow Header
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatalf("fast decoder accepted %q, encoding/json refuses it: %v", b, err)
		}
		if diff := cmp.Diff(slow, fast); diff != "" {
			t.Fatalf("decoders disagree on %q (-json +fast):\n%s", b, diff)
		}
	})
}
