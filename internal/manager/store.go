package manager

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// store keeps files at the manager: inputs that clients upload and outputs
// that workers upload. Outputs are staged per attempt and committed only
// when the core accepts that attempt.
//
//	files/NAME                 committed files
//	staging/TASK.ATTEMPT/NAME  outputs of an attempt, not yet accepted
//	tmp/                       uploads in progress
type store struct {
	root string
	ckpt string // the checkpoint directory, where files missing from files/ may be; "" for none

	mu         sync.Mutex // guards small, smallBytes
	small      map[string][]byte
	smallBytes int

	dirsMu sync.Mutex      // guards dirs
	dirs   map[string]bool // stored files that are directories' tar streams

	// syncOnCheck: outputs checkpointed with their report (Keep checkpoint
	// sync), whose staged uploads checkReport syncs to disk, on the
	// stream's reader, so that the loop's move into the checkpoint
	// directory is cheap. Set by the loop at submit; names only.
	syncOnCheck sync.Map
}

func (s *store) markDir(name string) {
	s.dirsMu.Lock()
	s.dirs[name] = true
	s.dirsMu.Unlock()
}

func (s *store) isDir(name string) bool {
	if strings.HasPrefix(name, proto.DirPrefix) {
		return true
	}
	s.dirsMu.Lock()
	defer s.dirsMu.Unlock()
	return s.dirs[name]
}

// smallLimit bounds the bytes of small files the store keeps in memory;
// past it, small files go to disk like the others.
const smallLimit = 256 << 20

// maxUpload bounds one uploaded file.
const maxUpload = 64 << 30

func openStore(root string) (*store, error) {
	for _, d := range []string{"files", "staging", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, fmt.Errorf("manager: create store: %w", err)
		}
	}
	return &store{root: root, small: make(map[string][]byte), dirs: make(map[string]bool)}, nil
}

func (s *store) path(name string) string { return filepath.Join(s.root, "files", name) }

// find returns where a stored file is to be read: files/, or else the
// checkpoint directory (checkpoints are written there, not to files/).
func (s *store) find(name string) string {
	p := s.path(name)
	if s.ckpt == "" {
		return p
	}
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return filepath.Join(s.ckpt, name)
	}
	return p
}

func (s *store) stagedPath(task uint64, attempt uint32, name string) string {
	return filepath.Join(s.root, "staging", fmt.Sprintf("%d.%d", task, attempt), name)
}

// smallFile returns the content of a small file kept in memory.
func (s *store) smallFile(name string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.small[name]
	return b, ok
}

// inline returns the content of a small file to send inside a message:
// kept in memory, or read from disk (and kept, while the memory allows).
func (s *store) inline(name string) ([]byte, bool) {
	if b, ok := s.smallFile(name); ok {
		return b, true
	}
	path := s.find(name)
	if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() || fi.Size() > proto.MaxInlineBytes {
		return nil, false
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) > proto.MaxInlineBytes {
		return nil, false
	}
	s.mu.Lock()
	if _, had := s.small[name]; !had && s.smallBytes+len(b) <= smallLimit {
		s.small[name] = b
		s.smallBytes += len(b)
	}
	s.mu.Unlock()
	return b, true
}

func (s *store) stat(name string) (*pb.FileInfo, bool) {
	if b, ok := s.smallFile(name); ok {
		sum := sha256.Sum256(b)
		return &pb.FileInfo{Name: name, Size: int64(len(b)), Digest: "sha256:" + hex.EncodeToString(sum[:])}, true
	}
	fi, err := os.Stat(s.find(name))
	if err != nil || !fi.Mode().IsRegular() {
		return nil, false
	}
	info := &pb.FileInfo{Name: name, Size: fi.Size()}
	if hexDigest, ok := contentDigest(name); ok {
		info.Digest = "sha256:" + hexDigest
	}
	info.Dir = s.isDir(name)
	return info, true
}

// contentDigest returns the hex sha256 a content-named file must have:
// files are "sha256-HEX", directories (stored as their tar stream) "dir-HEX".
func contentDigest(name string) (string, bool) {
	if h, ok := strings.CutPrefix(name, "sha256-"); ok {
		return h, true
	}
	return strings.CutPrefix(name, proto.DirPrefix)
}

// checkReport checks, before the loop sees a worker's message, the outputs
// of each successful attempt it reports: uploads staged with the size the
// worker reports, inline content matching its size and digest. An attempt
// whose outputs fail the check is reported as failed, with the reason, so
// that the core decides on what the store really holds; the loop then only
// moves checked files into place (commit, writeInline).
func (s *store) checkReport(msg *pb.WorkerMessage) {
	switch x := msg.Msg.(type) {
	case *pb.WorkerMessage_Batch:
		for _, inner := range x.Batch.Msgs {
			s.checkReport(inner)
		}
	case *pb.WorkerMessage_Done:
		d := x.Done
		o := d.GetOutcome()
		if o.GetKind() != pb.ResultKind_RESULT_KIND_SUCCESS {
			return
		}
		if err := s.checkOutputs(d); err != nil {
			o.Kind, o.Message = pb.ResultKind_RESULT_KIND_FAILED, err.Error()
		}
	}
}

// checkOutputs checks what a successful attempt left for the store.
func (s *store) checkOutputs(d *pb.AttemptDone) error {
	o := d.GetOutcome()
	for _, f := range o.GetOutputs() {
		switch {
		case f.Content != nil:
			if int64(len(f.Content)) != f.Size {
				return fmt.Errorf("output %s: %d inline bytes, worker reported %d", f.Name, len(f.Content), f.Size)
			}
			sum := sha256.Sum256(f.Content)
			if f.Digest != "" && f.Digest != "sha256:"+hex.EncodeToString(sum[:]) {
				return fmt.Errorf("output %s: inline content does not match digest %s", f.Name, f.Digest)
			}
		case f.Uploaded:
			if err := s.checkStaged(f, d.TaskId, d.Attempt); err != nil {
				return err
			}
			if _, ok := s.syncOnCheck.Load(f.Name); ok {
				if err := syncFile(s.stagedPath(d.TaskId, d.Attempt, f.Name)); err != nil {
					return fmt.Errorf("output %s of task %d: sync for its checkpoint: %w", f.Name, d.TaskId, err)
				}
			}
		}
	}
	if f := o.GetResultFile(); f != nil { // a call's large result, for the client to GET
		if err := proto.CheckCacheName(f.Name); err != nil {
			return fmt.Errorf("result file: %w", err)
		}
		return s.checkStaged(f, d.TaskId, d.Attempt)
	}
	return nil
}

// checkStaged checks that an attempt uploaded f, with its size.
func (s *store) checkStaged(f *pb.FileInfo, task uint64, attempt uint32) error {
	fi, err := os.Stat(s.stagedPath(task, attempt, f.Name))
	if err != nil {
		return fmt.Errorf("output %s of task %d attempt %d was not uploaded", f.Name, task, attempt)
	}
	if fi.Size() != f.Size && !f.Dir { // a directory's tar stream is larger than its files
		return fmt.Errorf("output %s of task %d: uploaded %d bytes, worker reported %d", f.Name, task, fi.Size(), f.Size)
	}
	return nil
}

// commit moves a staged output, checked by checkReport, into files/.
func (s *store) commit(f *pb.FileInfo, task uint64, attempt uint32) error {
	staged := s.stagedPath(task, attempt, f.Name)
	if err := os.Rename(staged, s.path(f.Name)); err != nil {
		return fmt.Errorf("commit output %s: %w", f.Name, err)
	}
	if f.Dir {
		s.markDir(f.Name)
	}
	os.Remove(filepath.Dir(staged))
	return nil
}

// commitTo moves a staged output, checked by checkReport, into dir
// (the checkpoint directory), synced.
func (s *store) commitTo(f *pb.FileInfo, task uint64, attempt uint32, dir string) error {
	staged := s.stagedPath(task, attempt, f.Name)
	if err := moveDurable(staged, filepath.Join(dir, f.Name)); err != nil {
		return fmt.Errorf("checkpoint output %s: %w", f.Name, err)
	}
	if f.Dir {
		s.markDir(f.Name)
	}
	os.Remove(filepath.Dir(staged))
	return nil
}

// writeInline stores an output that arrived inside the worker's report,
// checked by checkReport.
func (s *store) writeInline(f *pb.FileInfo) error {
	s.mu.Lock()
	old, had := s.small[f.Name]
	fits := s.smallBytes-len(old)+len(f.Content) <= smallLimit
	if fits {
		s.small[f.Name] = f.Content
		s.smallBytes += len(f.Content) - len(old)
	} else if had {
		delete(s.small, f.Name)
		s.smallBytes -= len(old)
	}
	s.mu.Unlock()
	if fits {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "inline-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(f.Content)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store output %s: %w", f.Name, err)
	}
	return os.Rename(tmp.Name(), s.path(f.Name))
}

// discardStaged drops what an attempt staged: the core did not accept it.
// remove deletes a file from the store. One left behind (an error) is
// harmless: the store goes with the manager.
func (s *store) remove(name string) { os.Remove(s.path(name)) }

func (s *store) discardStaged(task uint64, attempt uint32) {
	os.RemoveAll(filepath.Dir(s.stagedPath(task, attempt, "x")))
}

// serveFiles answers GET/HEAD /files/NAME and PUT /files/NAME[?task=T&attempt=A].
func (m *Manager) serveFiles(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/files/")
	if err := proto.CheckCacheName(name); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if b, ok := m.store.smallFile(name); ok {
			w.Header().Set("Content-Type", "application/octet-stream")
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
			return
		}
		f, err := os.Open(m.store.find(name))
		if err != nil {
			http.Error(w, fmt.Sprintf("file %s is not at the manager", name), http.StatusNotFound)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if m.store.isDir(name) {
			w.Header().Set(proto.DirHeader, "1")
		}
		http.ServeContent(w, r, "", fi.ModTime(), f)
	case http.MethodPut:
		if err := m.store.upload(name, r); err != nil {
			m.log.Warn("refused an upload", "file", name, "peer", r.RemoteAddr, "err", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.URL.Query().Get("task") == "" {
			m.send(r.Context(), evStored{name: name}) // wakes a FetchFile waiting for it
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

var errDigest = errors.New("content does not match its sha256 cache name")

func (s *store) upload(name string, r *http.Request) error {
	dest := s.path(name)
	if task := r.URL.Query().Get("task"); task != "" {
		t, err1 := strconv.ParseUint(task, 10, 64)
		a, err2 := strconv.ParseUint(r.URL.Query().Get("attempt"), 10, 32)
		if err1 != nil || err2 != nil {
			return errors.New("bad task or attempt")
		}
		dest = s.stagedPath(t, uint32(a), name)
		if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
			return err
		}
	}
	tmp, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "up-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	var h hash.Hash
	want, checked := contentDigest(name)
	var w io.Writer = tmp
	if checked {
		h = sha256.New()
		w = io.MultiWriter(tmp, h)
	}
	_, err = io.Copy(w, http.MaxBytesReader(nil, r.Body, maxUpload))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("upload %s: %w", name, err)
	}
	if checked && hex.EncodeToString(h.Sum(nil)) != want {
		return fmt.Errorf("upload %s: %w", name, errDigest)
	}
	return os.Rename(tmp.Name(), dest)
}
