package coretest

import (
	"strings"
	"testing"

	"trellis/internal/core"
)

// TestModelProbe: a probe task that ends InputMissing must give the reason
// of its file's first FileLost, unless it is the failure a fake worker
// reports at random, retried until the retries ran out (seed 205 of
// TestSimulationData levels and sessions: "fetch failed (after 5
// attempts)" for a file never lost).
func TestModelProbe(t *testing.T) {
	cases := []struct {
		name string
		kind core.Kind
		msg  string
		lost []string // the FileLost reasons of the file the probe reads
		want string   // in the model's failure; "" for none
	}{
		{"recreated", core.Success, "", nil, ""},
		{"lost, with the reason", core.InputMissing, "no copy left", []string{"no copy left"}, ""},
		{"lost, with another reason", core.InputMissing, "fetch from peer: peer gone (after 4 tries)", []string{"no copy left"}, "FileLost reasons"},
		{"missing, never lost", core.InputMissing, "fetch from peer: peer gone (after 4 tries)", nil, "FileLost reasons"},
		{"the worker's random failure", core.InputMissing, workerFetchFailed, nil, ""},
		{"the worker's random failure, retries spent", core.InputMissing, workerFetchFailed + " (after 5 attempts)", nil, ""},
		{"a failed command", core.Failed, "exit", nil, ""},
		{"no valid kind", core.Kind(0), "", nil, "ended kind(0)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &sim{tb: fatalTB{t}}
			s.d.decl = map[core.FileID]*dataFile{
				1: {kind: core.Produced, lost: tc.lost},
				2: {kind: core.Derived, from: 1},
			}
			for _, f := range []core.FileID{1, 2} { // the file itself, and one unpacked from it
				p := &simTask{spec: core.Task{ID: 9, Inputs: []core.FileID{f}}, done: true, doneKind: tc.kind, doneMsg: tc.msg}
				got := failure(func() { s.checkProbe(p) })
				if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
					t.Errorf("probe of file %d ended %s %q, FileLost %q: the model says %q; want a failure saying %q (none if empty)", f, tc.kind, tc.msg, tc.lost, got, tc.want)
				}
			}
		})
	}
}
