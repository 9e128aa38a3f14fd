package runner

import (
	"bytes"
	"testing"
	"time"

	"trellis"
	"trellis/internal/workflow"
)

// The summary line says how many tasks ran again to recreate lost files and
// how many attempts waited for cache space, when any did.
func TestWriteSummaryCounts(t *testing.T) {
	wf := &workflow.Workflow{Name: "chain", Tasks: []workflow.Task{{Name: "a", Line: 3}}}
	for _, tc := range []struct {
		rerun, back int
		want        string
	}{
		{0, 0, "workflow chain succeeded: 1 tasks, 1 succeeded, 0 failed, 0 skipped, in 2s\n"},
		{16, 2, "workflow chain succeeded: 1 tasks, 1 succeeded, 0 failed, 0 skipped, in 2s; 16 tasks re-run to recreate lost files; 2 attempts waited for cache space\n"},
	} {
		s := &Summary{Tasks: 1, Succeeded: 1, Elapsed: 2 * time.Second, Results: []*trellis.Result{{Kind: trellis.Success}},
			Rerun: tc.rerun, HandedBack: tc.back}
		var out bytes.Buffer
		WriteSummary(&out, wf, s)
		if got := out.String(); got != tc.want {
			t.Errorf("WriteSummary(rerun %d, handed back %d) = %q, want %q", tc.rerun, tc.back, got, tc.want)
		}
	}
}
