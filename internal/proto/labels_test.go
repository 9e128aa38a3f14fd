package proto

import (
	"strings"
	"testing"

	pb "trellis/internal/proto/trellisv1"
)

// TestResultLabel: the table gives every kind the label built from its
// enum name, and a kind the schema does not name still gets one.
func TestResultLabel(t *testing.T) {
	for v := range pb.ResultKind_name {
		k := pb.ResultKind(v)
		if got, want := ResultLabel(k), strings.ToLower(strings.TrimPrefix(k.String(), "RESULT_KIND_")); got != want {
			t.Errorf("ResultLabel(%v) = %q, want %q", k, got, want)
		}
	}
	if got := ResultLabel(pb.ResultKind_RESULT_KIND_SUCCESS); got != "success" {
		t.Errorf("ResultLabel(SUCCESS) = %q, want success", got)
	}
	if got := ResultLabel(pb.ResultKind(999)); got != "999" {
		t.Errorf("ResultLabel(999) = %q, want 999", got)
	}
}
