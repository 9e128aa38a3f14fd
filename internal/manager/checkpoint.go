package manager

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"trellis/internal/core"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// Checkpoints (docs/recovery.md, "Keeping outputs"). The manager writes
// them: a worker need not see the checkpoint directory, which may be
// local to the manager or on a shared file system.
//   - Checkpoint{Sync}: the worker uploads the output with its report (as
//     an output for the client); the loop moves it from the store's
//     staging into the checkpoint directory, synced, before the core hears
//     that the task is done.
//   - Checkpoint{Async}, and the copies the commit barrier asks for: the
//     core's Checkpoint action; the checkpointer pulls the file from the
//     worker's file server (as a peer would) into the directory, synced,
//     and tells the loop, which journals JournalCheckpointCommitted and
//     then tells the core (CheckpointCommitted).
// Without --checkpoint-dir, the barrier's copies go to the store (which
// survives a restart with --state); Checkpoint keeps are refused.

// evCheckpointed: the checkpointer's pull of a file ended.
type evCheckpointed struct {
	name   string
	worker core.WorkerID
	size   int64
	digest string
	dir    bool
	err    error
}

// ckptJob is one pull: the file name from the worker's file server url.
type ckptJob struct {
	name   string
	url    string
	worker core.WorkerID
}

// ckptParallel bounds the pulls in progress at once. Each pull is one
// HTTP download from one worker's file server into the checkpoint
// directory, synced: a few at once keep a slow worker (or a large file)
// from holding back every other checkpoint, and so every effectful
// consumer the commit barrier holds, while a bound keeps the manager's
// disk and network from being swamped by a wave of asynchronous
// checkpoints. Pulls beyond the bound wait in the queue, with no
// goroutine of their own.
const ckptParallel = 4

// checkpointer pulls files into the checkpoint directory, up to
// ckptParallel at once, starting them in the order the loop asks.
type checkpointer struct {
	dir    string // where checkpoints go
	client *http.Client
	// hold: a test hook (TRELLIS_TEST_CHECKPOINT_HOLD=FILE): each pull
	// waits while FILE exists, so that process tests can kill a worker
	// between a task's end and its checkpoint's commit.
	hold string

	mu      sync.Mutex // guards queue, running, nextRun
	queue   []ckptJob
	running map[int]ckptRun // the pulls in progress, by a number of their own
	nextRun int
	wake    chan struct{} // one slot: the queue gained a job
}

// ckptRun is a pull in progress: its worker, and what ends it.
type ckptRun struct {
	worker core.WorkerID
	cancel context.CancelFunc
}

func newCheckpointer(dir string, peerCA []byte) *checkpointer {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if peerCA != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(peerCA)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &checkpointer{dir: dir, client: &http.Client{Transport: tr}, wake: make(chan struct{}, 1),
		running: map[int]ckptRun{}, hold: os.Getenv("TRELLIS_TEST_CHECKPOINT_HOLD")}
}

// add queues a pull; it never blocks the loop.
func (c *checkpointer) add(j ckptJob) {
	c.mu.Lock()
	c.queue = append(c.queue, j)
	c.mu.Unlock()
	c.signal()
}

// signal wakes one idle puller, if none is awake already.
func (c *checkpointer) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// cancelWorker drops the pulls from worker w, which is gone: those in
// progress end (and report their failure), the queued ones are dropped.
func (c *checkpointer) cancelWorker(w core.WorkerID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queue = slices.DeleteFunc(c.queue, func(j ckptJob) bool { return j.worker == w })
	for _, r := range c.running {
		if r.worker == w {
			r.cancel()
		}
	}
}

// run pulls what is queued, ckptParallel pullers at once, and reports
// each pull to the loop through send. It exits when ctx ends, once every
// puller has.
func (c *checkpointer) run(ctx context.Context, send func(context.Context, any) error) {
	var wg sync.WaitGroup
	for range ckptParallel {
		wg.Add(1)
		go func() { // exits when ctx ends, or when send fails (the loop is gone)
			defer wg.Done()
			c.puller(ctx, send)
		}()
	}
	wg.Wait()
}

// puller takes queued jobs one at a time, pulls each and reports it.
func (c *checkpointer) puller(ctx context.Context, send func(context.Context, any) error) {
	for {
		j, id, pctx, ok := c.take(ctx)
		if !ok {
			select {
			case <-c.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		ev := c.pull(pctx, j)
		c.mu.Lock()
		c.running[id].cancel()
		delete(c.running, id)
		c.mu.Unlock()
		if send(ctx, ev) != nil {
			return
		}
	}
}

// take starts the first queued job, if there is one: it counts as in
// progress, with a context that cancelWorker ends. When more jobs wait, it
// wakes another puller.
func (c *checkpointer) take(ctx context.Context) (ckptJob, int, context.Context, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		return ckptJob{}, 0, nil, false
	}
	j := c.queue[0]
	c.queue = c.queue[1:]
	pctx, cancel := context.WithTimeout(ctx, pullLimit)
	c.nextRun++
	c.running[c.nextRun] = ckptRun{worker: j.worker, cancel: cancel}
	if len(c.queue) > 0 {
		c.signal()
	}
	return j, c.nextRun, pctx, true
}

// pullLimit bounds one pull.
const pullLimit = 30 * time.Minute

// pull copies j's file into the directory, synced, under its name.
func (c *checkpointer) pull(ctx context.Context, j ckptJob) evCheckpointed {
	ev := evCheckpointed{name: j.name, worker: j.worker}
	if c.hold != "" {
		if ev.err = holdWhile(ctx, c.hold); ev.err != nil {
			return ev
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		ev.err = err
		return ev
	}
	resp, err := c.client.Do(req)
	if err != nil {
		ev.err = fmt.Errorf("checkpoint %s: fetch from its worker: %w", j.name, err)
		return ev
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		ev.err = fmt.Errorf("checkpoint %s: its worker answered %s: %s", j.name, resp.Status, msg)
		return ev
	}
	ev.dir = resp.Header.Get(proto.DirHeader) == "1"
	h := sha256.New()
	ev.size, ev.err = writeDurable(filepath.Join(c.dir, j.name), io.TeeReader(resp.Body, h))
	ev.digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return ev
}

// holdWhile waits while the file at path exists, or until ctx ends.
func holdWhile(ctx context.Context, path string) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// writeDurable writes r to path through a temporary file, synced, renamed
// into place, and the directory synced: once it returns nil, the file
// survives a crash of the machine.
func writeDurable(path string, r io.Reader) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ckpt-")
	if err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, r)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		return n, fmt.Errorf("checkpoint %s: %w", filepath.Base(path), err)
	}
	return n, nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// moveDurable moves the file at src to dst, synced: renamed when both are
// on one file system, copied otherwise.
func moveDurable(src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	if err := os.Rename(src, dst); err == nil {
		return syncDir(filepath.Dir(dst))
	}
	if _, err := writeDurable(dst, f); err != nil {
		return err
	}
	return os.Remove(src)
}

// checkpointDir is where checkpoints go: --checkpoint-dir, or the store.
func (m *Manager) checkpointDir() string {
	if m.cfg.CheckpointDir != "" {
		return m.cfg.CheckpointDir
	}
	return filepath.Join(m.store.root, "files")
}

// resolveKeep settles a task's keep as the manager applies it: the
// default is lineage for a deterministic task, else an asynchronous
// checkpoint where there is a checkpoint directory, else lineage.
func (m *Manager) resolveKeep(t *pb.TaskSpec) pb.Keep {
	if t.Keep != pb.Keep_KEEP_DEFAULT {
		return t.Keep
	}
	if t.Deterministic || m.cfg.CheckpointDir == "" || t.Call != nil {
		return pb.Keep_KEEP_LINEAGE
	}
	return pb.Keep_KEEP_CHECKPOINT_ASYNC
}

// checkKeep refuses a checkpoint keep that this manager cannot honour.
func (m *Manager) checkKeep(t *pb.TaskSpec) error {
	switch t.Keep {
	case pb.Keep_KEEP_CHECKPOINT_SYNC, pb.Keep_KEEP_CHECKPOINT_ASYNC:
		if m.cfg.CheckpointDir == "" {
			return fmt.Errorf("task %q: keep checkpoint needs a manager started with --checkpoint-dir DIR: start it with one, or keep the task's outputs by lineage or replicas", t.Name)
		}
		if t.Call != nil {
			return fmt.Errorf("task %q: keep checkpoint is for command tasks; a call's outputs are kept by lineage or replicas", t.Name)
		}
	}
	return nil
}

// coreKeep is a resolved keep as the core's.
func coreKeep(k pb.Keep) core.Keep {
	switch k {
	case pb.Keep_KEEP_REPLICATE:
		return core.KeepReplicate
	case pb.Keep_KEEP_CHECKPOINT_SYNC:
		return core.KeepCheckpointSync
	case pb.Keep_KEEP_CHECKPOINT_ASYNC:
		return core.KeepCheckpointAsync
	}
	return core.KeepLineage
}

// checkpoint carries out the core's Checkpoint: a pull of the file from
// the worker that holds it.
func (s *state) checkpoint(a core.Checkpoint) {
	name := s.data.names[a.File]
	sess := s.sessions[a.Worker]
	if sess == nil || sess.fileServer == "" {
		s.step(core.CheckpointFailed{File: a.File, Worker: a.Worker, Why: "its worker is gone or serves no files"})
		return
	}
	token := proto.PeerToken(s.m.cfg.Secret, name, time.Now().Add(tokenLifetime))
	s.m.ckpt.add(ckptJob{name: name, worker: a.Worker,
		url: fmt.Sprintf("%s://%s/cache/%s?token=%s", s.m.peerScheme(), sess.fileServer, name, url.QueryEscape(token))})
}

// barred tells a task's client why it waits: the commit barrier.
func (s *state) barred(a core.Barred) {
	rec := s.tasks[a.Task]
	if rec == nil {
		return
	}
	name, path := s.data.names[a.File], s.data.names[a.File]
	for _, in := range rec.spec.Inputs {
		if in.Name == name {
			path = in.Path
		}
	}
	s.notify(rec, &pb.TaskEvent{TaskId: uint64(a.Task), State: pb.TaskState_TASK_STATE_WAITING,
		Note: fmt.Sprintf("waits for its input %s to be checkpointed: it has effects, and a nondeterministic task wrote that input (the commit barrier)", path)})
}

// checkpointed: a pull ended. A durable copy is journaled, and counts
// (the core hears of it) once its record is on disk.
func (s *state) checkpointed(ev evCheckpointed) {
	id, ok := s.fileIDs[ev.name]
	if !ok {
		return
	}
	if ev.err != nil {
		s.m.log.Warn("checkpoint failed; asking again", "file", ev.name, "err", ev.err)
		s.step(core.CheckpointFailed{File: id, Worker: ev.worker, Why: ev.err.Error()})
		return
	}
	if ev.dir {
		s.m.store.markDir(ev.name)
	}
	s.data.toManager += ev.size // bytes the manager received, as uploads are
	rec := &pb.JournalCheckpointCommitted{Name: ev.name, Size: ev.size, Digest: ev.digest, Dir: ev.dir}
	seq := s.record(&pb.JournalRecord{Rec: &pb.JournalRecord_CheckpointCommitted{CheckpointCommitted: rec}})
	s.hold(seq, func() { s.checkpointCommitted(rec, ev.worker) })
}

// checkpointCommitted tells the core of a durable checkpoint (live, or
// replayed from the journal).
func (s *state) checkpointCommitted(rec *pb.JournalCheckpointCommitted, w core.WorkerID) {
	if rec.Dir {
		s.m.store.markDir(rec.Name)
	}
	s.fileInfo[rec.Name] = &pb.FileInfo{Name: rec.Name, Size: rec.Size, Digest: rec.Digest, Dir: rec.Dir}
	s.step(core.CheckpointCommitted{File: s.fileID(rec.Name), Worker: w, Size: rec.Size, Inline: s.inlinable(rec.Name, rec.Size, rec.Dir)})
}

// checkCheckpointDir makes dir if needed and checks that files can be
// written there.
func checkCheckpointDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("manager: --checkpoint-dir %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".probe-")
	if err != nil {
		return fmt.Errorf("manager: --checkpoint-dir %s: cannot write there: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// syncCheckpoint reports whether name is an output of task that goes to
// the checkpoint directory with its report (Keep checkpoint sync).
func (s *state) syncCheckpoint(task uint64, name string) bool {
	rec := s.tasks[core.TaskID(task)]
	if rec == nil || rec.spec.Keep != pb.Keep_KEEP_CHECKPOINT_SYNC || s.m.cfg.CheckpointDir == "" {
		return false
	}
	d := s.data.decls[name]
	return d != nil && d.Kind == pb.FileKind_FILE_KIND_TEMP
}
