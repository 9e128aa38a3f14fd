package coretest

import (
	"fmt"
	"strings"
	"testing"

	"trellis/internal/core"
)

// fatalTB is a testing.TB whose Fatalf panics with its message (caught by
// failure), so that a test can see the model fail.
type fatalTB struct{ testing.TB }

type fatal string

func (fatalTB) Helper()                           {}
func (fatalTB) Fatalf(format string, args ...any) { panic(fatal(fmt.Sprintf(format, args...))) }

// failure returns the message of the model's failure in f, or "" if none.
func failure(f func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			m, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			msg = string(m)
		}
	}()
	f()
	return ""
}

// TestModelStarted: the model accepts one Started for an attempt
// dispatched ahead, and fails on a second one, or on one for an attempt
// dispatched to start at once.
func TestModelStarted(t *testing.T) {
	cases := []struct {
		name  string
		ahead bool
		n     int    // Started actions applied
		want  string // in the failure of the last; "" for none
	}{
		{"one for a held task", true, 1, ""},
		{"a second for a held task", true, 2, "again"},
		{"one for a task not held", false, 1, "not dispatched ahead"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &sim{tb: fatalTB{t}, cfg: Config{Ahead: 2}, workers: make(map[core.WorkerID]*simWorker), stuck: make(map[*simTask]bool)}
			w := &simWorker{id: 1, total: core.Resources{MilliCores: 1000, MemoryMB: 1000}, running: make(map[core.TaskID]*simTask), ahead: true}
			if tc.ahead {
				w.used = w.total // a task the model does not list runs there: no room
			}
			s.workers[w.id] = w
			s.live = append(s.live, w)
			s.tasks = []*simTask{{spec: core.Task{ID: 1, Resources: core.Resources{MilliCores: 1000}}, submitted: true, runPos: -1}}
			s.next = 1
			d := core.Dispatch{Task: 1, Attempt: 1, Worker: w.id, Ahead: tc.ahead}
			if got := failure(func() { s.apply(d) }); got != "" {
				t.Fatalf("Dispatch %+v: the model failed: %s", d, got)
			}
			var got string
			for range tc.n {
				got = failure(func() { s.apply(core.Started{Task: 1, Attempt: 1, Worker: w.id}) })
				if got != "" {
					break
				}
			}
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("after %d Started the model says %q; want a failure saying %q (none if empty)", tc.n, got, tc.want)
			}
		})
	}
}
