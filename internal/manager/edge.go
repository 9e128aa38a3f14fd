package manager

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/framed"
	"trellis/internal/gate"
	"trellis/internal/proto"
	"trellis/internal/proto/trellisv1/trellisv1connect"
)

// What the manager does with a request before it reads a byte of its body:
// the secret is checked from the headers, so a stranger costs the manager
// a header's worth of memory, never a body's; and each RPC's request is
// bounded by what it may legitimately carry.

const (
	// maxStrangers bounds the open connections on which no request carried
	// the secret yet; beyond it a new one waits, and the oldest is closed
	// once it had strangerGrace to present the secret (package gate).
	maxStrangers = 256
	// strangerGrace is how long a new connection keeps its place among
	// the strangers: ample to send a request's headers, so a burst of
	// thousands of workers connecting at once loses none of them.
	strangerGrace = 2 * time.Second
	// maxHeaderBytes bounds a request's headers, HTTP/1.1 or HTTP/2.
	maxHeaderBytes = 16 << 10
	// smallRequestBytes bounds the requests that name a session, a file or
	// a cursor, nothing more.
	smallRequestBytes = 64 << 10
	// statusRequestBytes bounds a status request, which may carry a
	// factory's report naming up to 2,000 jobs (factories.go).
	statusRequestBytes = 256 << 10
	// envelopeBytes is the prefix of a message in a stream (and in every
	// gRPC request): the body may be that much over the message's limit.
	envelopeBytes = 5
)

// requestLimits bounds the request message of each RPC, after
// decompression; for the streams Work and Submits, each message the peer sends. Submit and
// InstallLibrary carry specs with inline files and Work carries reports
// with inline outputs, so theirs are generous; the others are small. An
// RPC missing here is not served.
var requestLimits = map[string]int{
	trellisv1connect.ManagerSubmitProcedure:         proto.MaxMessageBytes,
	trellisv1connect.ManagerSubmitsProcedure:        proto.MaxMessageBytes,
	trellisv1connect.ManagerInstallLibraryProcedure: proto.MaxMessageBytes,
	trellisv1connect.ManagerWorkProcedure:           proto.MaxMessageBytes,
	trellisv1connect.ManagerCancelProcedure:         1 << 20, // 100,000 task IDs of 10 bytes
	trellisv1connect.ManagerWatchProcedure:          smallRequestBytes,
	trellisv1connect.ManagerAckProcedure:            smallRequestBytes,
	trellisv1connect.ManagerStatusProcedure:         statusRequestBytes,
	trellisv1connect.ManagerFetchFileProcedure:      smallRequestBytes,
	trellisv1connect.ManagerEndSessionProcedure:     smallRequestBytes,
	trellisv1connect.ManagerRemoveLibraryProcedure:  smallRequestBytes,
	trellisv1connect.ManagerReconcileProcedure:      smallRequestBytes,
	trellisv1connect.ManagerLeaseProcedure:          smallRequestBytes,
}

// wrongSecret is the message a refused peer sees.
const wrongSecret = "wrong or missing secret: this manager was started with another --secret-file"

// handleRPCs registers each RPC on mux behind the secret and its request
// limit.
func (m *Manager) handleRPCs(mux *http.ServeMux) {
	svc := &service{m: m}
	handlers := make(map[int]http.Handler) // by limit: one connect handler serves every RPC
	for procedure, limit := range requestLimits {
		h, ok := handlers[limit]
		if !ok {
			_, h = trellisv1connect.NewManagerHandler(svc,
				connect.WithReadMaxBytes(limit),
				connect.WithSendMaxBytes(proto.MaxMessageBytes),
				connect.WithCompressMinBytes(proto.CompressMinBytes))
			handlers[limit] = h
		}
		mux.Handle(procedure, m.requireSecret(limitRequest(procedure, limit, h)))
	}
	mux.Handle(framed.Path, m.requireSecret(http.HandlerFunc(m.workFramed)))
	mux.Handle(framed.WatchPath, m.requireSecret(http.HandlerFunc(m.watchFramed)))
}

// requireSecret refuses a request without the secret from its headers,
// without reading its body, and closes its connection; a request with the
// secret admits its connection (see package gate).
func (m *Manager) requireSecret(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !checkSecret(r.Header.Get("Authorization"), m.cfg.Secret) {
			m.refused.log(m.log, r)
			w.Header().Set("Connection", "close")               // HTTP/2: a GOAWAY
			if !strings.HasPrefix(r.URL.Path, "/trellis.v1.") { // not an RPC: /files/, /metrics
				w.Header().Set("WWW-Authenticate", `Bearer realm="trellis"`)
				http.Error(w, wrongSecret, http.StatusUnauthorized)
				return
			}
			errorWriter.Write(w, r, connect.NewError(connect.CodeUnauthenticated, errors.New(wrongSecret)))
			return
		}
		gate.Admit(r.Context())
		next.ServeHTTP(w, r)
	})
}

// errorWriter answers a request that never reaches connect's handlers in
// the protocol the request speaks, so that clients read a coded error.
var errorWriter = connect.NewErrorWriter()

// limitRequest refuses a request whose declared length is over limit, and
// stops reading a body of unknown length beyond it. The bodies of Work and
// Submits are streams that last as long as the worker or client: connect
// bounds each of their messages.
func limitRequest(procedure string, limit int, next http.Handler) http.Handler {
	name := procedure[strings.LastIndexByte(procedure, '/')+1:]
	bodyLimit := int64(limit) + envelopeBytes
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > bodyLimit {
			errorWriter.Write(w, r, connect.NewError(connect.CodeResourceExhausted,
				fmt.Errorf("a %s request of %d bytes is larger than the limit of %d bytes for %s", name, r.ContentLength, limit, name)))
			return
		}
		if procedure != trellisv1connect.ManagerWorkProcedure && procedure != trellisv1connect.ManagerSubmitsProcedure {
			r.Body = http.MaxBytesReader(w, r.Body, bodyLimit)
		}
		next.ServeHTTP(w, r)
	})
}

// refusals keeps a flood of strangers from flooding the log as well: the
// first refusal is logged, then at most one a second, with the number of
// refusals since the last line.
type refusals struct {
	next     atomic.Int64 // Unix nanoseconds before which refusals are only counted
	unlogged atomic.Int64
}

func (rf *refusals) log(log *slog.Logger, r *http.Request) {
	now, next := time.Now().UnixNano(), rf.next.Load()
	if now < next || !rf.next.CompareAndSwap(next, now+int64(time.Second)) {
		rf.unlogged.Add(1)
		return
	}
	log.Warn("refused a peer: wrong secret", "peer", r.RemoteAddr, "path", r.URL.Path, "refused_since_last", rf.unlogged.Swap(0))
}

func checkSecret(header, secret string) bool {
	token, ok := strings.CutPrefix(header, "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(token), []byte(secret)) == 1
}
