package manager

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
	goproto "google.golang.org/protobuf/proto"

	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/proto/trellisv1/trellisv1connect"
)

// Every RPC of the service has a request limit: one added later without
// one would not be served at all.
func TestEveryRPCHasALimit(t *testing.T) {
	methods := pb.File_trellis_proto.Services().ByName("Manager").Methods()
	for i := range methods.Len() {
		procedure := "/trellis.v1.Manager/" + string(methods.Get(i).Name())
		if _, ok := requestLimits[procedure]; !ok {
			t.Errorf("%s has no entry in requestLimits", procedure)
		}
	}
	if len(requestLimits) != methods.Len() {
		t.Errorf("requestLimits has %d entries, the service %d methods", len(requestLimits), methods.Len())
	}
}

// untouchable is a body that fails the test if anyone reads it.
type untouchable struct{ t *testing.T }

func (u untouchable) Read([]byte) (int, error) {
	u.t.Errorf("the body of a request without the secret was read")
	return 0, io.EOF
}

// A request without the secret is refused from its headers: its body is
// never read, and the client reads the refusal as its protocol's error.
func TestStrangersBodiesAreNotRead(t *testing.T) {
	m := startManager(t)
	tests := []struct {
		name, path, contentType, auth string
		wantStatus                    int
		wantCode                      string // connect's code in a JSON body; "" for /files/
	}{
		{"Submit, no secret", trellisv1connect.ManagerSubmitProcedure, "application/proto", "", 401, "unauthenticated"},
		{"Submit, wrong secret", trellisv1connect.ManagerSubmitProcedure, "application/json", "Bearer x", 401, "unauthenticated"},
		{"Status", trellisv1connect.ManagerStatusProcedure, "application/proto", "", 401, "unauthenticated"},
		{"Work", trellisv1connect.ManagerWorkProcedure, "application/connect+proto", "", 200, ""},
		{"Submits", trellisv1connect.ManagerSubmitsProcedure, "application/connect+proto", "", 200, ""},
		{"Watch", trellisv1connect.ManagerWatchProcedure, "application/connect+proto", "s", 200, ""},
		{"files", "/files/sha256-x?task=1&attempt=1", "", "", 401, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", tc.path, untouchable{t})
			req.ContentLength = 15 << 20
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			m.srv.Handler.ServeHTTP(rec, req)
			body := rec.Body.String()
			if rec.Code != tc.wantStatus || !strings.Contains(body, wrongSecret) {
				t.Errorf("HTTP %d %q, want %d with %q", rec.Code, body, tc.wantStatus, wrongSecret)
			}
			if got := rec.Header().Get("Connection"); got != "close" {
				t.Errorf("Connection: %q, want close", got)
			}
			if tc.wantCode != "" {
				var e struct{ Code string }
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code != tc.wantCode {
					t.Errorf("body %q: code %q (%v), want %q", body, e.Code, err, tc.wantCode)
				}
			}
		})
	}
}

// oversized returns msg with an unknown field that makes it size bytes.
func oversized[M goproto.Message](msg M, size int) M {
	b := protowire.AppendTag(nil, 1000, protowire.BytesType)
	pad := size - len(b) - protowire.SizeVarint(uint64(size))
	msg.ProtoReflect().SetUnknown(protowire.AppendBytes(b, make([]byte, pad)))
	return msg
}

// Each RPC refuses a request over its limit, with a message naming the
// limit, and the manager goes on serving.
func TestRequestLimits(t *testing.T) {
	m := startManager(t)
	client := clientOf(t, m)
	ctx := context.Background()

	unary := func(limit int, f func(int) error) func(*testing.T) {
		return func(t *testing.T) {
			// Work's code is the hello's (invalid argument); the message
			// is connect's.
			err := f(limit + 1)
			if want := "larger than the limit of " + strconv.Itoa(limit); err == nil || !strings.Contains(err.Error(), want) &&
				!strings.Contains(err.Error(), "larger than configured max "+strconv.Itoa(limit)) {
				t.Errorf("request of %d bytes: %v; want it refused naming the limit %d", limit+1, err, limit)
			}
			if err := f(limit / 2); connect.CodeOf(err) == connect.CodeResourceExhausted {
				t.Errorf("request of %d bytes: %v; want it under the limit", limit/2, err)
			}
		}
	}
	t.Run("Status", unary(statusRequestBytes, func(n int) error {
		_, err := client.Status(ctx, connect.NewRequest(oversized(&pb.StatusRequest{}, n)))
		return err
	}))
	t.Run("Ack", unary(smallRequestBytes, func(n int) error {
		_, err := client.Ack(ctx, connect.NewRequest(oversized(&pb.AckRequest{Session: "s1"}, n)))
		return err
	}))
	t.Run("EndSession", unary(smallRequestBytes, func(n int) error {
		_, err := client.EndSession(ctx, connect.NewRequest(oversized(&pb.EndSessionRequest{Session: "s9"}, n)))
		return err
	}))
	t.Run("FetchFile", unary(smallRequestBytes, func(n int) error {
		_, err := client.FetchFile(ctx, connect.NewRequest(oversized(&pb.FetchFileRequest{Name: "!"}, n)))
		return err
	}))
	t.Run("Cancel", unary(requestLimits[trellisv1connect.ManagerCancelProcedure], func(n int) error {
		_, err := client.Cancel(ctx, connect.NewRequest(oversized(&pb.CancelRequest{}, n)))
		return err
	}))
	t.Run("Submit", unary(requestLimits[trellisv1connect.ManagerSubmitProcedure], func(n int) error {
		_, err := client.Submit(ctx, connect.NewRequest(oversized(&pb.SubmitRequest{}, n)))
		return err
	}))
	t.Run("Watch", unary(smallRequestBytes, func(n int) error {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := client.Watch(wctx, connect.NewRequest(oversized(&pb.WatchRequest{Session: "w"}, n)))
		if err != nil {
			return err
		}
		stream.Receive()
		return stream.Err()
	}))
	t.Run("Work", unary(requestLimits[trellisv1connect.ManagerWorkProcedure], func(n int) error {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream := client.Work(wctx)
		stream.Send(oversized(&pb.WorkerMessage{}, n))
		_, err := stream.Receive()
		return err
	}))

	// A body of unknown length stops being read at the limit; a
	// compressed one is bounded once decompressed.
	post := func(body io.Reader, encoding string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+m.Addr()+trellisv1connect.ManagerStatusProcedure, body)
		req.Header.Set("Content-Type", "application/proto")
		req.Header.Set("Authorization", "Bearer s")
		if encoding != "" {
			req.Header.Set("Content-Encoding", encoding)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	big, _ := goproto.Marshal(oversized(&pb.StatusRequest{}, 1<<20))
	t.Run("unknown length", func(t *testing.T) {
		code, body := post(io.MultiReader(bytes.NewReader(big)), "") // hides the length
		if code != http.StatusTooManyRequests || !strings.Contains(body, fmt.Sprint(statusRequestBytes)) {
			t.Errorf("HTTP %d %s; want 429 naming the limit %d", code, body, statusRequestBytes)
		}
	})
	t.Run("gzip", func(t *testing.T) {
		var zipped bytes.Buffer
		zw := gzip.NewWriter(&zipped)
		zw.Write(big)
		zw.Close()
		code, body := post(&zipped, "gzip")
		if code != http.StatusTooManyRequests || !strings.Contains(body, fmt.Sprint(statusRequestBytes)) {
			t.Errorf("%d compressed bytes: HTTP %d %s; want 429 naming the limit %d", zipped.Len(), code, body, statusRequestBytes)
		}
	})
	if _, err := client.Status(ctx, connect.NewRequest(&pb.StatusRequest{})); err != nil {
		t.Errorf("status after the refusals: %v", err)
	}
}

// authed adds the secret to every request.
// clientOf returns an HTTP/2 client of m's RPCs with its secret ("s").
func clientOf(t *testing.T, m *Manager) trellisv1connect.ManagerClient {
	t.Helper()
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: protocols}
	t.Cleanup(tr.CloseIdleConnections)
	return trellisv1connect.NewManagerClient(&http.Client{Transport: authed{tr, "s"}}, "http://"+m.Addr())
}

type authed struct {
	rt     http.RoundTripper
	secret string
}

func (a authed) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+a.secret)
	return a.rt.RoundTrip(r)
}
