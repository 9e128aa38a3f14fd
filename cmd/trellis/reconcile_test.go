package main

import (
	"bytes"
	"strings"
	"testing"

	"trellis"
)

// TestPrintUnknown: trellis status lists the tasks in unknown with their
// attempt and why, and says what to run; nothing when there are none.
func TestPrintUnknown(t *testing.T) {
	var out bytes.Buffer
	printUnknown(&out, nil)
	if out.Len() != 0 {
		t.Errorf("no task in unknown: printed %q; want nothing", out.String())
	}
	printUnknown(&out, []trellis.UnknownTask{{Task: 7, Name: "pay", Attempt: 1, Why: "attempt 1: worker lost: gone"}})
	text := out.String()
	for _, want := range []string{"1 task in unknown", "trellis reconcile ADDR TASK --done, --failed or --rerun", "7", "pay", "attempt 1: worker lost: gone"} {
		if !strings.Contains(text, want) {
			t.Errorf("printUnknown:\n%s\nlacks %q", text, want)
		}
	}
}
