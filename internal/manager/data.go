package manager

import (
	"fmt"
	"net"
	"net/url"
	"time"

	"trellis/internal/core"
	"trellis/internal/manager/clients"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// tokenLifetime bounds how long a peer token lets a worker fetch a file.
const tokenLifetime = 15 * time.Minute

// dataState is the loop's bookkeeping of files beyond the core's: how they
// were declared (what the messages to workers need), and bytes uploaded.
type dataState struct {
	decls     map[string]*pb.FileDecl // by cache name
	names     map[core.FileID]string  // the inverse of fileIDs
	toManager int64                   // outputs uploaded
	waiters   map[string][]chan error // FetchFile calls waiting for a file to reach the store
}

func newDataState() dataState {
	return dataState{decls: make(map[string]*pb.FileDecl), names: make(map[core.FileID]string),
		waiters: make(map[string][]chan error)}
}

// declare records a submit's file declarations and tells the core, with
// each file's level and the session that declares it (the core unlinks
// workflow-level files when their sessions end). stored says which
// archives to unpack are at the store.
func (s *state) declare(session string, decls []*pb.FileDecl, stored storedFiles) {
	var specs []core.FileSpec
	for _, d := range decls {
		if prev := s.data.decls[d.Name]; prev != nil && prev.Kind == d.Kind {
			specs = append(specs, core.FileSpec{ID: s.fileID(d.Name)}) // Kind 0: this session declares it too
			continue
		}
		s.data.decls[d.Name] = d
		spec := core.FileSpec{ID: s.fileID(d.Name), Replicas: int32(d.Replicas), Size: d.Size, Level: coreLevel(d.Level)}
		switch d.Kind {
		case pb.FileKind_FILE_KIND_URL:
			spec.Kind = core.Origin
		case pb.FileKind_FILE_KIND_TEMP:
			spec.Kind = core.Produced
			if d.Level == pb.CacheLevel_CACHE_LEVEL_UNSPECIFIED { // pruned, the default (#18)
				spec.Level, spec.Depth = core.LevelTask, int32(min(d.PruneDepth, core.MaxDepth))
			}
		case pb.FileKind_FILE_KIND_OUTPUT:
			spec.Kind, spec.Upload = core.Produced, true
		case pb.FileKind_FILE_KIND_UNPACK:
			spec.Kind, spec.From = core.Derived, s.fileID(d.UnpackFrom)
			if !s.declared(d.UnpackFrom) && !s.producedFile(d.UnpackFrom) {
				if up, ok := s.atManager(d.UnpackFrom, stored); ok { // an uploaded archive: staged before it is unpacked
					specs = append(specs, up)
				}
			}
		default:
			spec = core.FileSpec{ID: spec.ID, Level: spec.Level} // at the manager: atManager tells the core its kind and size
		}
		specs = append(specs, spec)
	}
	if len(specs) > 0 {
		s.step(core.FilesDeclared{Session: session, Files: specs})
	}
}

// atManager tells the core of a file at the manager's store that tasks
// read (External): its size, and whether it is small enough to travel
// inline. It reports false if the store lacks it (stored is what the
// handler found there).
func (s *state) atManager(name string, stored storedFiles) (core.FileSpec, bool) {
	info, ok := stored[name]
	if !ok {
		return core.FileSpec{}, false
	}
	s.fileInfo[name] = info
	return core.FileSpec{ID: s.fileID(name), Kind: core.External, Size: info.Size, Inline: s.inlinable(name, info.Size, info.Dir)}, true
}

// inlinable reports whether a file at the manager travels inside the Run
// messages of its readers: it is small, not a directory, and not one the
// client wants kept in workers' caches (worker or forever level).
func (s *state) inlinable(name string, size int64, dir bool) bool {
	if dir || size > proto.MaxInlineBytes {
		return false
	}
	d := s.data.decls[name]
	return d == nil || d.Level < pb.CacheLevel_CACHE_LEVEL_WORKER
}

// declared reports whether name is a file the core stages (so it need not
// be at the manager when a task is submitted).
func (s *state) declared(name string) bool {
	d := s.data.decls[name]
	return d != nil && d.Kind != pb.FileKind_FILE_KIND_MANAGER
}

// fetchMessage turns the core's Fetch into the message for the worker.
func (s *state) fetchMessage(a core.Fetch) *pb.ManagerMessage {
	name := s.data.names[a.File]
	d := s.data.decls[name]
	msg := &pb.Fetch{Id: a.Transfer, Name: name, Size: -1, Source: &pb.Source{}}
	if d != nil {
		msg.Level, msg.Dir = d.Level, d.Dir
	}
	if info := s.fileInfo[name]; info != nil {
		msg.Size, msg.Digest, msg.Dir = info.Size, info.Digest, info.Dir
	}
	src := msg.Source
	switch a.Source.Kind {
	case core.FromManager:
		src.Kind, src.Url = pb.Source_KIND_MANAGER, "/files/"+name // the worker prefixes its manager's address
	case core.FromPeer:
		src.Kind, src.Peer = pb.Source_KIND_PEER, uint64(a.Source.Peer)
		if peer := s.sessions[a.Source.Peer]; peer != nil {
			token := proto.PeerToken(s.m.cfg.Secret, name, time.Now().Add(tokenLifetime))
			src.Url = fmt.Sprintf("%s://%s/cache/%s?token=%s", s.m.peerScheme(), peer.fileServer, name, url.QueryEscape(token))
		}
	case core.FromOrigin:
		src.Kind = pb.Source_KIND_URL
		if d != nil {
			src.Url = d.Url
		}
	case core.FromDerive:
		src.Kind, src.From = pb.Source_KIND_UNPACK, s.data.names[a.Source.From]
		if d != nil {
			src.Format = d.UnpackFormat
		}
	case core.FromCache:
		src.Kind = pb.Source_KIND_CACHE
	}
	return &pb.ManagerMessage{Msg: &pb.ManagerMessage_Fetch{Fetch: msg}}
}

// fetchDone turns a worker's report of a fetch into the core's event.
func (s *state) fetchDone(f *pb.FetchDone) {
	if f.Ok && s.fileInfo[f.Name] == nil {
		s.fileInfo[f.Name] = &pb.FileInfo{Name: f.Name, Size: f.Size, Digest: f.Digest, Dir: f.Dir}
	}
	s.transferEndTxn(f.Id, f.Ok, f.Size, f.Error)
	s.step(core.TransferDone{Transfer: f.Id, OK: f.Ok, SourceFault: f.SourceFault, CacheFull: f.CacheFull, Size: f.Size, Why: f.Error})
}

// fileServerAddr is where a worker serves its cache: the address it
// announced, with the host it connected from when it announced none.
func fileServerAddr(announced, connAddr string) string {
	host, port, err := net.SplitHostPort(announced)
	if err != nil || port == "" || port == "0" {
		return ""
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if h, _, err := net.SplitHostPort(connAddr); err == nil {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

// endSession cancels the unfinished tasks of a client session that ended
// (client, which clients.Table.End or Expire returned; nil if it has none),
// tells the core (it unlinks the workflow-level files only ended sessions
// declared), and removes from the store the large call results that only
// this session fetches.
func (s *state) endSession(session string, client *clients.Session) {
	if client != nil {
		s.cancelSession(client)
	}
	s.step(core.SessionEnded{Session: session})
	for name, sessions := range s.results {
		if sessions[session] {
			if delete(sessions, session); len(sessions) == 0 {
				delete(s.results, name)
				s.m.store.remove(name)
			}
		}
	}
}

// unlink tells a worker to delete files from its cache.
func (s *state) unlink(a core.Unlink) {
	s.sendTo(a.Worker, &pb.ManagerMessage{Msg: &pb.ManagerMessage_Unlink{Unlink: &pb.Unlink{Names: s.namesOf(a.Files)}}})
}

// releaseFiles tells a worker it may evict files when it needs room (see
// core.Release).
func (s *state) releaseFiles(a core.Release) {
	s.sendTo(a.Worker, &pb.ManagerMessage{Msg: &pb.ManagerMessage_Release{Release: &pb.Release{Names: s.namesOf(a.Files)}}})
}

// namesOf returns the cache names of files.
func (s *state) namesOf(files []core.FileID) []string {
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = s.data.names[f]
	}
	return names
}

// fetchToStore asks a worker holding name to upload it to the store; reply
// gets nil when it is there, or an error.
func (s *state) fetchToStore(name string, reply chan error) {
	id, known := s.fileIDs[name]
	if !known {
		reply <- fmt.Errorf("file %s is unknown to this manager", name)
		return
	}
	for _, w := range s.core.Replicas(id) {
		if sess := s.sessions[w]; sess != nil {
			s.data.waiters[name] = append(s.data.waiters[name], reply)
			s.enqueue(sess, &pb.ManagerMessage{Msg: &pb.ManagerMessage_Upload{Upload: &pb.Upload{Name: name}}})
			return
		}
	}
	if d := s.data.decls[name]; d != nil && d.Kind == pb.FileKind_FILE_KIND_TEMP && d.Level == pb.CacheLevel_CACHE_LEVEL_UNSPECIFIED {
		reply <- fmt.Errorf("file %s: no connected worker holds it: a temp file is pruned once no task reads it; declare it with Keep (keep: true) to fetch it", name)
		return
	}
	reply <- fmt.Errorf("file %s: no connected worker holds it", name)
}

// uploaded wakes FetchFile calls waiting for name.
func (s *state) uploaded(name string, err error) {
	for _, reply := range s.data.waiters[name] {
		reply <- err
	}
	delete(s.data.waiters, name)
}
