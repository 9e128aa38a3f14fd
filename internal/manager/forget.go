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
// dispatches, and their end. A replay must still give the tasks submitted
// after them the same IDs, so each forgotten submit leaves a Forgotten
// record of the IDs it gave out (merged with its neighbours while no kept
// submit stands between them). A session is forgotten only when the
// records prove how many IDs each of its submits gave out: the tasks its
// submits name are as many as its tasks that ended (an end names its
// session), so no submit of it was refused or repeated; and no reconcile
// names one of its tasks.

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
	submitted int             // tasks its submits name
	ended     map[uint64]bool // tasks whose end names it
	endedAt   int             // index of its last SessionEnded; -1 while it lives
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
// of the kinds it decodes; the others empty) and the submits' shapes.
func toForget(decoded []*pb.JournalRecord, shapes map[int]submitInfo, reconciled map[uint64]bool) forgetting {
	f := forgetting{sessions: make(map[string]bool), tasks: make(map[uint64]bool)}
	sessions := make(map[string]*sessionRecords)
	get := func(name string) *sessionRecords {
		s := sessions[name]
		if s == nil {
			s = &sessionRecords{ended: make(map[uint64]bool), endedAt: -1}
			sessions[name] = s
		}
		return s
	}
	for i, r := range decoded {
		switch x := r.Rec.(type) {
		case *pb.JournalRecord_Done:
			if x.Done.Session != "" {
				get(x.Done.Session).ended[x.Done.TaskId] = true
			}
		case *pb.JournalRecord_SessionEnded:
			get(x.SessionEnded.Session).endedAt = i
		default:
			if sh, ok := shapes[i]; ok {
				get(sh.session).submitted += sh.tasks
			}
		}
	}
	var ended []string
	for name, s := range sessions {
		if s.endedAt >= 0 && name != "" {
			ended = append(ended, name)
		}
	}
	if len(ended) <= foldKeepEnded {
		return f
	}
	slices.SortFunc(ended, func(a, b string) int { return sessions[a].endedAt - sessions[b].endedAt })
	for _, name := range ended[:len(ended)-foldKeepEnded] {
		s := sessions[name]
		if s.submitted != len(s.ended) || slices.ContainsFunc(mapKeys(s.ended), func(id uint64) bool { return reconciled[id] }) {
			continue // the records do not prove what its submits gave out
		}
		f.sessions[name] = true
		for id := range s.ended {
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

func mapKeys[K comparable, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// forgottenRecord encodes a Forgotten record of n task IDs.
func forgottenRecord(n uint64, session string) ([]byte, error) {
	b, err := goproto.Marshal(&pb.JournalRecord{Rec: &pb.JournalRecord_Forgotten{Forgotten: &pb.JournalForgotten{Tasks: n, Session: session}}})
	if err != nil {
		return nil, fmt.Errorf("forgotten record: %w", err)
	}
	return b, nil
}
