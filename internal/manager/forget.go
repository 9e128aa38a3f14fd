package manager

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
	goproto "google.golang.org/protobuf/proto"

	"trellis/internal/manager/clients"
	pb "trellis/internal/proto/trellisv1"
)

// Forgetting old sessions (docs/recovery.md, "Snapshots"): a snapshot
// would otherwise keep every submit and every end of every task the
// manager ever ran. As the manager remembers only the last
// clients.MaxEnded ended sessions, the fold forgets the records of the
// sessions that ended before those: their submits, their tasks' ends and
// dispatches, their direct calls' ends, and their end. A replay must still give the tasks submitted
// after them the same IDs, so each forgotten submit leaves a Forgotten
// record of the IDs it gave out (merged with its neighbours while no kept
// submit stands between them). A session is forgotten only when the
// records prove how many IDs each of its submits gave out: its end lists
// its tasks (JournalSessionEnded.tasks), every one of them ended, and its
// submits name as many tasks, so no submit of it was refused or repeated;
// and no reconcile names one of its tasks.

// foldKeepEnded is how many of the last ended sessions a snapshot keeps
// the records of. A variable for tests.
var foldKeepEnded = clients.MaxEnded

// forgetting is what the fold forgets: the sessions, and their task IDs.
type forgetting struct {
	sessions map[string]bool
	tasks    map[uint64]bool
}

// sessionRecords is what the fold learns of one session from the records.
type sessionRecords struct {
	submitted int      // tasks its submits name
	tasks     []uint64 // its tasks, as its end lists them
	endedAt   int      // index of its last SessionEnded; -1 while it lives
}

// submitShape reads the session and the number of tasks of a Submitted
// record without decoding its tasks.
func submitShape(b []byte) (session string, tasks int, err error) {
	_, _, n := protowire.ConsumeTag(b)
	if n < 0 {
		return "", 0, protowire.ParseError(n)
	}
	req, m := protowire.ConsumeBytes(b[n:])
	if m < 0 {
		return "", 0, protowire.ParseError(m)
	}
	for len(req) > 0 {
		num, typ, n := protowire.ConsumeTag(req)
		if n < 0 {
			return "", 0, protowire.ParseError(n)
		}
		req = req[n:]
		v := protowire.ConsumeFieldValue(num, typ, req)
		if v < 0 {
			return "", 0, protowire.ParseError(v)
		}
		switch {
		case num == 1 && typ == protowire.BytesType:
			s, _ := protowire.ConsumeBytes(req)
			session = string(s)
		case num == 3:
			tasks++
		}
		req = req[v:]
	}
	return session, tasks, nil
}

// toForget decides what the fold forgets from the decoded records (those
// of the kinds it decodes; the others empty), the submits' shapes, the
// tasks that ended and those reconciled.
func toForget(decoded []*pb.JournalRecord, shapes map[int]submitInfo, ended map[uint64]int, reconciled map[uint64]bool) forgetting {
	f := forgetting{sessions: make(map[string]bool), tasks: make(map[uint64]bool)}
	sessions := make(map[string]*sessionRecords)
	get := func(name string) *sessionRecords {
		s := sessions[name]
		if s == nil {
			s = &sessionRecords{endedAt: -1}
			sessions[name] = s
		}
		return s
	}
	for i, r := range decoded {
		if e := r.GetSessionEnded(); e != nil {
			s := get(e.Session)
			s.endedAt, s.tasks = i, e.Tasks
		} else if sh, ok := shapes[i]; ok {
			get(sh.session).submitted += sh.tasks
		}
	}
	var old []string
	for name, s := range sessions {
		if s.endedAt >= 0 && name != "" {
			old = append(old, name)
		}
	}
	if len(old) <= foldKeepEnded {
		return f
	}
	slices.SortFunc(old, func(a, b string) int { return sessions[a].endedAt - sessions[b].endedAt })
	for _, name := range old[:len(old)-foldKeepEnded] {
		s := sessions[name]
		// A session that submitted nothing (its direct calls alone, say)
		// gave out no IDs: its end lists none, and it is forgotten.
		if s.submitted != len(s.tasks) || slices.ContainsFunc(s.tasks, func(id uint64) bool {
			_, done := ended[id]
			return !done || reconciled[id]
		}) {
			continue // the records do not prove what its submits gave out
		}
		f.sessions[name] = true
		for _, id := range s.tasks {
			f.tasks[id] = true
		}
	}
	return f
}

// submitInfo is a Submitted record's session and number of tasks.
type submitInfo struct {
	session string
	tasks   int
}

// forgottenRecord encodes a Forgotten record of n task IDs.
func forgottenRecord(n uint64, session string) ([]byte, error) {
	b, err := goproto.Marshal(&pb.JournalRecord{Rec: &pb.JournalRecord_Forgotten{Forgotten: &pb.JournalForgotten{Tasks: n, Session: session}}})
	if err != nil {
		return nil, fmt.Errorf("forgotten record: %w", err)
	}
	return b, nil
}
