package proto

import (
	"strings"

	pb "trellis/internal/proto/trellisv1"
)

// ResultLabel names a result kind for people and metrics: "success",
// "timed_out"; a kind the schema does not name gets its number.
func ResultLabel(k pb.ResultKind) string {
	if l, ok := resultLabels[k]; ok {
		return l // every task's end asks: no enum name built by reflection, no new string
	}
	return strings.ToLower(strings.TrimPrefix(k.String(), "RESULT_KIND_"))
}

// resultLabels holds ResultLabel of every kind the schema names.
var resultLabels = func() map[pb.ResultKind]string {
	m := make(map[pb.ResultKind]string, len(pb.ResultKind_name))
	for v, name := range pb.ResultKind_name {
		m[pb.ResultKind(v)] = strings.ToLower(strings.TrimPrefix(name, "RESULT_KIND_"))
	}
	return m
}()
